"""The log stream poller: a `PollingJob` (background.py) every server process runs.

For each active stream that is due and whose lease is free, and only when the log has moved
past its position: take the lease (compare-and-set), read the next events past its position
(up to a settled horizon: storage/log_streams.py `settled_horizon`), send them (sinks.py), then
in the UPDATE that frees the lease either advance the position (success) or count the failure
and schedule the retry with exponential backoff; a stream failing for longer than
BASTION_LOG_STREAM_SUSPEND_AFTER is suspended. Delivery never runs inside a request: a login
only inserts its log event.

At least once, in log order: the position moves only past what the receiver acknowledged
with a 2xx, so a batch whose answer was lost is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone

import httpx

from bastion.log_streams.categories import type_filter
from bastion.log_streams.config import open_sink, sink_secrets
from bastion.log_streams.sinks import OutgoingRequest, build_requests, requests_per_batch
from bastion.security.sealing import SealingError
from bastion.services import Services
from bastion.storage import log_streams as store
from bastion.storage.records import LogStream

__all__ = ["LogStreamDelivery", "retry_delay", "failing_for"]

log = logging.getLogger("bastion.log_streams")

LEASE_MARGIN = 30.0  # seconds a lease outlasts the longest its delivery may take
SCAN_WINDOW = 1000  # log rows looked at per attempt to find the settled horizon (filtered-out rows included)
RESPONSE_EXCERPT = 200  # characters of a failed answer kept in last_error
_READ_LIMIT = 4096  # bytes of a receiver's answer read at most


def _now() -> datetime:
    return datetime.now(timezone.utc)


def retry_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds before the next attempt after `failures` failures in a row: base, 2 x base, ... up to cap."""
    return min(cap, base * 2 ** min(failures - 1, 62))


def failing_for(failures: int, *, base: float, cap: float) -> float:
    """How long a stream has been failing at its `failures`-th failure in a row: the retry waits
    between its first failure and this one (the time the attempts themselves took is not counted,
    so a stream is suspended at the earliest after BASTION_LOG_STREAM_SUSPEND_AFTER)."""
    total = 0.0
    for attempt in range(1, failures):
        delay = retry_delay(attempt, base=base, cap=cap)
        if delay >= cap:  # the rest are all capped
            return total + cap * (failures - attempt)
        total += delay
    return total


def _redacted(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return re.sub(r"\s+", " ", text).strip()[:500]


class LogStreamDelivery:
    name = "log-streams"

    def __init__(self, services: Services):
        self.database = services.database
        self.sealer = services.sealer
        self.settings = services.settings
        self.host = services.settings.issuer_host

    async def run_once(self) -> float:
        async with self.database.reader() as session:
            streams = await store.due_log_streams(session, now=_now())
        outcomes = await asyncio.gather(*(self._deliver(stream) for stream in streams), return_exceptions=True)
        more = False
        for stream, outcome in zip(streams, outcomes):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                log.error("log stream %s: delivery failed unexpectedly", stream.id, exc_info=outcome)
            elif outcome:
                more = True
        if more:
            return 0.0
        async with self.database.reader() as session:
            retry = await store.earliest_retry(session, now=_now())
        wait = self.settings.log_stream_poll_interval
        if retry is not None:
            wait = min(wait, max(0.0, (retry - _now()).total_seconds()))
        return wait

    # -- one stream ----------------------------------------------------------------

    async def _deliver(self, listed: LogStream) -> bool:
        """One attempt for one stream; True when more is waiting to be sent at once."""
        async with self.database.reader() as session:
            if not await store.has_events_after(session, position=listed.position):
                return False
        try:
            sink: dict | None = open_sink(self.sealer, listed.sink_sealed)
        except (SealingError, ValueError):
            sink = None
        settings = self.settings
        requests_bound = requests_per_batch(listed.type, sink or {}, settings.log_stream_batch_size)
        budget = settings.log_stream_request_timeout * requests_bound
        now = _now()
        lease_until = now + timedelta(seconds=budget + LEASE_MARGIN)
        async with self.database.transaction() as session:
            stream = await store.claim_log_stream(session, id=listed.id, now=now, lease_until=lease_until)
        if stream is None:
            return False  # another process has it
        try:
            return await self._attempt(stream, sink, lease_until=lease_until, budget=budget)
        except asyncio.CancelledError:
            raise  # the process is stopping: the lease runs out and another process continues
        except Exception:
            async with self.database.transaction() as session:
                await store.release_log_stream(session, id=stream.id, lease_until=lease_until)
            raise

    async def _attempt(self, stream: LogStream, sink: dict | None, *, lease_until: datetime, budget: float) -> bool:
        settings = self.settings
        started = _now()
        async with self.database.reader() as session:
            horizon, more_in_log = await store.settled_horizon(
                session, after=stream.position, scan=max(SCAN_WINDOW, settings.log_stream_batch_size),
                settled_before=started - timedelta(seconds=settings.log_stream_gap_grace),
            )
            events = await store.stream_events(
                session, after=stream.position, through=horizon, selection=type_filter(stream.filters),
                limit=settings.log_stream_batch_size,
            ) if horizon > stream.position else []
        if not events:  # nothing selected up to the horizon: skip past it (or, stopped at a gap, wait)
            skipped = {"position": horizon, "failures": 0, "next_attempt_at": None} if horizon > stream.position else {}
            async with self.database.transaction() as session:
                await store.release_log_stream(session, id=stream.id, lease_until=lease_until, **skipped)
            return more_in_log
        batch_full = len(events) == settings.log_stream_batch_size
        done_through = events[-1].seq if batch_full else horizon

        if sink is None:
            error, sent_through = "The sink configuration cannot be opened: was BASTION_SECRET_KEY changed?", None
        else:
            requests = build_requests(stream.type, sink, events, segment_api_url=settings.segment_api_url, host=self.host)
            try:
                async with asyncio.timeout(budget):
                    error, sent_through = await self._send_all(requests, sink_secrets(sink))
            except TimeoutError:
                error, sent_through = f"Delivery took longer than {budget:g} s", None

        async with self.database.transaction() as session:
            if error is None:
                await store.release_log_stream(
                    session, id=stream.id, lease_until=lease_until, position=done_through, failures=0,
                    last_attempt_at=started, last_success_at=_now(), next_attempt_at=None,
                )
                return batch_full or more_in_log
            failures = stream.failures + 1
            base, cap = settings.log_stream_retry_base, settings.log_stream_retry_cap
            suspend = failing_for(failures, base=base, cap=cap) >= settings.log_stream_suspend_after
            await store.release_log_stream(
                session, id=stream.id, lease_until=lease_until, suspend=suspend,
                position=sent_through if sent_through is not None else stream.position, failures=failures,
                last_error=error, last_attempt_at=started,
                next_attempt_at=_now() + timedelta(seconds=retry_delay(failures, base=base, cap=cap)),
            )
        log.warning("log stream %s (%s): delivery failed (%d in a row%s): %s", stream.id, stream.type, failures,
                    ", suspended" if suspend else "", error)
        return False

    async def _send_all(self, requests: list[OutgoingRequest], secrets: list[str]) -> tuple[str | None, int | None]:
        """Send in order, stopping at the first failure: (error or None, through_seq of the last request acknowledged)."""
        sent_through = None
        timeout = self.settings.log_stream_request_timeout
        async with httpx.AsyncClient(timeout=timeout, verify=requests[0].verify_tls, follow_redirects=False) as client:
            for request in requests:
                error = await self._send(client, request, secrets, timeout=timeout)
                if error is not None:
                    return error, sent_through
                sent_through = request.through_seq
        return None, sent_through

    @staticmethod
    async def _send(client: httpx.AsyncClient, request: OutgoingRequest, secrets: list[str], *, timeout: float) -> str | None:
        """None when the receiver answered 2xx; otherwise what went wrong, without any secret."""
        try:
            async with asyncio.timeout(timeout):
                async with client.stream("POST", request.url, content=request.body, headers=request.headers_to_send()) as response:
                    answer = b""
                    async for chunk in response.aiter_bytes():
                        answer += chunk
                        if len(answer) >= _READ_LIMIT:
                            break
        except (TimeoutError, httpx.TimeoutException):
            return f"The receiver did not answer within {timeout:g} s"
        except httpx.HTTPError as error:
            return _redacted(f"Could not reach the receiver: {type(error).__name__}: {error}", secrets)
        if 200 <= response.status_code < 300:
            return None
        excerpt = answer[:RESPONSE_EXCERPT].decode("utf-8", "replace")
        return _redacted(f"The receiver answered HTTP {response.status_code}: {excerpt}", secrets)
