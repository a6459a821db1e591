"""The outbox: emails and rules' queued HTTP requests, kept in the database until delivered.

    outbox.email(session, to=..., subject=..., text=..., html=..., source=...)     -> Delivery
    outbox.http_request(session, method=..., url=..., headers=..., json=..., ...)  -> Delivery

Both insert an entry in the caller's transaction, so an email is never promised for a change
that rolled back, nor lost for one that committed. When that transaction commits, this
process's outbox poller is woken and makes the first attempt at once; an attempt that fails
(SMTP server down or refusing, a vendor answering 5xx or 429, a timeout) is retried with
exponential backoff (BASTION_OUTBOX_RETRY_BASE doubling up to BASTION_OUTBOX_RETRY_MAX) until
BASTION_OUTBOX_MAX_ATTEMPTS, then the entry is `failed` and stays visible
(GET /api/v2/deliveries, `bastion outbox list`); an operator can retry it.

Payloads (addresses, bodies, headers that carry vendor keys) are sealed at rest; the
`summary` (recipient and subject; method and URL without its query) is what lists show.

Sent once: an entry is attempted by one process at a time (a compare-and-set lease), and
marked sent in the statement that follows the SMTP server's acceptance. A process that dies
between the two leaves the lease to expire, and the entry is sent again: the only window
for a duplicate, which the stable Message-ID (`<entry id@bastion>`) lets mail servers drop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import smtplib
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.events import EventType, record_event
from bastion.mail import Mailer
from bastion.security.destinations import DestinationRefused, check_url, display_url
from bastion.security.handles import new_id
from bastion.security.sealing import Sealer, SealingError
from bastion.settings import Settings
from bastion.storage import deliveries as store
from bastion.storage.database import Database
from bastion.storage.records import Delivery

__all__ = ["Outbox", "OUTBOX_JOB", "delivery_json"]

log = logging.getLogger("bastion.outbox")

OUTBOX_JOB = "outbox"
_PAYLOAD_PURPOSE = "outbox-payload"
MAX_IN_FLIGHT = 32  # attempts one process makes at once
_RETRY_STATUSES = {408, 425, 429}


class _Refused(Exception):
    """This attempt failed; `permanent` ones are not retried."""

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.status = status
        self.permanent = permanent


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """What the Management API and the execution records show of an entry (never its payload)."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None

    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "source": delivery.source,
        "state": delivery.state,
        **delivery.summary,
        "user_id": delivery.user_id,
        "rules_execution_id": delivery.rules_execution_id,
        "attempts": delivery.attempts,
        "max_attempts": delivery.max_attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
        "completed_at": iso(delivery.completed_at),
    }


class Outbox:
    """Enqueues deliveries and, as the `outbox` poller (background.py), delivers them."""

    name = OUTBOX_JOB

    def __init__(self, *, settings: Settings, database: Database, sealer: Sealer, mailer: Mailer, wake):
        self._settings = settings
        self._database = database
        self._sealer = sealer
        self._mailer = mailer
        self._wake = wake  # () -> None: run the poller now (after the enqueuing transaction commits)
        self._http = httpx.AsyncClient(follow_redirects=False)
        self._in_flight: set[asyncio.Task] = set()

    async def close(self) -> None:
        """Stop: attempts under way are cancelled; their leases expire and another process (or
        this one, restarted) makes them again."""
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        await self._http.aclose()

    # -- enqueueing -------------------------------------------------------

    async def email(
        self, session: AsyncSession, *, to: str, subject: str, text: str, html: str | None = None, sender: str | None = None,
        source: str, template: str | None = None, user_id: str | None = None, rules_execution_id: str | None = None,
        id: str | None = None,
    ) -> Delivery:
        payload = {"to": to, "subject": subject, "text": text, "html": html, "from": sender}
        summary = {"to": to, "subject": subject, **({"template": template} if template else {})}
        return await self._enqueue(session, kind="email", payload=payload, summary=summary, source=source,
                                   user_id=user_id, rules_execution_id=rules_execution_id, id=id or new_id("eml_", 20))

    async def http_request(
        self, session: AsyncSession, *, method: str, url: str, params: Any = None, headers: dict | None = None,
        json_body: Any = None, data: Any = None, timeout: float | None = None, source: str = "rules",
        shown_url: str | None = None, user_id: str | None = None, rules_execution_id: str | None = None,
    ) -> Delivery:
        """`shown_url`: the URL as lists and errors show it (default: without its query); a rule's is
        also cleared of configuration values (rules/redaction.py)."""
        payload = {"method": method, "url": url, "params": params, "headers": headers, "json": json_body, "data": data,
                   "timeout": timeout}
        summary = {"method": method, "url": shown_url or display_url(url)}
        return await self._enqueue(session, kind="http", payload=payload, summary=summary, source=source,
                                   user_id=user_id, rules_execution_id=rules_execution_id, id=new_id("req_", 20))

    async def _enqueue(self, session: AsyncSession, *, kind: str, payload: dict, summary: dict, **values: Any) -> Delivery:
        sealed = self._sealer.seal(json.dumps(payload, separators=(",", ":")), purpose=_PAYLOAD_PURPOSE)
        delivery = await store.insert_delivery(
            session, kind=kind, payload_sealed=sealed, summary=summary, max_attempts=self._settings.outbox_max_attempts, **values
        )
        event.listen(session.sync_session, "after_commit", self._after_commit, once=True)
        return delivery

    def _after_commit(self, _session) -> None:
        self._wake()

    # -- delivering (the poller) ------------------------------------------

    async def run_once(self) -> float:
        """Start an attempt for every entry that is due (up to MAX_IN_FLIGHT at once) and return
        the seconds until the next one falls due. Attempts run as tasks of their own: a vendor
        that hangs holds its own entry, never the others."""
        while len(self._in_flight) < MAX_IN_FLIGHT:
            async with self._database.reader() as session:
                ids = await store.due_delivery_ids(session, limit=MAX_IN_FLIGHT - len(self._in_flight))
            started = 0
            for id in ids:
                async with self._database.transaction() as session:
                    delivery = await store.claim_delivery(session, id=id, lease_seconds=self._settings.outbox_lease)
                if delivery is not None:
                    self._start(delivery)
                    started += 1
            if not started:
                break
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            return self._settings.outbox_poll_interval  # each finishing attempt wakes the poller
        async with self._database.reader() as session:
            due = await store.next_due_at(session)
        if due is None:
            return self._settings.outbox_poll_interval
        return max(0.0, (due - datetime.now(timezone.utc)).total_seconds())

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._attempt(delivery), name=f"bastion:outbox:{delivery.id}")
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        """An attempt ended: the poller looks again (a retry may now be the next thing due)."""
        self._in_flight.discard(task)
        if not task.cancelled():
            self._wake()

    async def drain(self) -> None:
        """Wait for the attempts under way (tests; `close` cancels them instead)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            try:
                payload = json.loads(self._sealer.open(delivery.payload_sealed, purpose=_PAYLOAD_PURPOSE))
            except (SealingError, ValueError):
                raise _Refused("the payload cannot be opened (was the master key changed?)", permanent=True) from None
            if delivery.kind == "email":
                state, status = await self._send_email(delivery, payload)
            else:
                state, status = await self._send_request(payload, shown_url=delivery.summary.get("url", ""))
        except _Refused as refusal:
            await self._failed(delivery, refusal)
            return
        except Exception as error:  # never let one entry stop the others; the entry is retried
            log.exception("delivery %s failed unexpectedly", delivery.id)
            await self._failed(delivery, _Refused(f"unexpected error: {type(error).__name__}"))
            return
        async with self._database.transaction() as session:
            await store.finish_delivery(session, id=delivery.id, state=state, status=status)

    async def _failed(self, delivery: Delivery, refusal: _Refused) -> None:
        message = str(refusal)[:500]
        async with self._database.transaction() as session:
            if refusal.permanent or delivery.attempts >= delivery.max_attempts:
                await store.finish_delivery(session, id=delivery.id, state="failed", status=refusal.status, error=message)
                if delivery.kind == "email":
                    await _log_email_given_up(session, delivery, message)
                log.warning("delivery %s (%s) failed for good after %d attempts: %s", delivery.id, delivery.kind,
                            delivery.attempts, message)
            else:
                at = datetime.now(timezone.utc) + timedelta(seconds=self.backoff(delivery.attempts))
                await store.retry_delivery_later(session, id=delivery.id, at=at, status=refusal.status, error=message)
                log.info("delivery %s (%s) attempt %d failed (%s); next at %s", delivery.id, delivery.kind,
                         delivery.attempts, message, at.isoformat(timespec="seconds"))

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: doubling from the base, capped, with ±20% jitter
        so that entries that failed together do not all come back together."""
        base = min(self._settings.outbox_retry_base * 2 ** max(0, attempts - 1), self._settings.outbox_retry_max)
        return base * random.uniform(0.8, 1.2)

    async def _send_email(self, delivery: Delivery, payload: dict) -> tuple[str, int | None]:
        try:
            sent = await self._mailer.send(
                to=payload["to"], subject=payload["subject"], text=payload["text"], html=payload.get("html"),
                sender=payload.get("from"), message_id=delivery.id,
            )
        except smtplib.SMTPResponseException as error:
            raise _Refused(f"the SMTP server answered {error.smtp_code}", status=error.smtp_code) from None
        except smtplib.SMTPRecipientsRefused:
            raise _Refused("the SMTP server refused the recipient") from None
        except (smtplib.SMTPException, OSError) as error:
            raise _Refused(f"the SMTP server could not be reached ({type(error).__name__})") from None
        return ("sent" if sent else "logged"), None

    async def _send_request(self, payload: dict, *, shown_url: str) -> tuple[str, int | None]:
        method, url = payload["method"], payload["url"]
        try:
            await check_url(self._settings, url)
        except DestinationRefused as refusal:
            raise _Refused(str(refusal), permanent=True) from None
        timeout = min(float(payload.get("timeout") or self._settings.rules_queued_request_timeout),
                      self._settings.rules_queued_request_timeout)
        try:
            response = await self._http.request(
                method, url, params=payload.get("params"), headers=payload.get("headers"), json=payload.get("json"),
                data=payload.get("data"), timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise _Refused(f"{method} {shown_url} failed: {type(error).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return "sent", status
        retry = status >= 500 or status in _RETRY_STATUSES
        raise _Refused(f"{method} {shown_url} answered HTTP {status}", status=status, permanent=not retry)


async def _log_email_given_up(session: AsyncSession, delivery: Delivery, error: str) -> None:
    """An email that will not be sent is a tenant log event (and so reaches log streams): `fv` for
    a verification email, `fn` for any other, as Auth0 logs them."""
    template = delivery.summary.get("template")
    kind = EventType.FAILED_VERIFICATION_EMAIL if template == "verify_email" else EventType.FAILED_NOTIFICATION
    await record_event(
        session, kind, description=f"The {template or delivery.source} email could not be sent: {error}", user_id=delivery.user_id,
        user_name=delivery.summary.get("to"), details={"delivery_id": delivery.id, "attempts": delivery.attempts},
    )
