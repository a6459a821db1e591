"""/u/mfa/duo: Duo's Universal Prompt, for a rule's `context.multifactor = {"provider": "duo", ...}`.

    GET /u/mfa/duo?state=                    health check, then a redirect to Duo's prompt
    GET /u/mfa/duo/callback?state=&duo_code= Duo's answer: the code is exchanged for Duo's
                                             signed result; "allow" passes the second factor

Duo's prompt is an OIDC-like redirect flow (Duo Web SDK v4, `duo_universal`): the request to
Duo is a JWT signed (HS512) with the rule's `skey`, and the result comes back as an ID token
signed with it too. The rule gives `ikey` (client id), `skey` (client secret), `host` (API
host) and optionally `username` (default: the user's email, else username, else user id).

- The state sent to Duo is a random handle; a one_time_codes row (its digest) holds the login
  transaction, the Duo username and the OIDC nonce. It is spent once, by the first callback.
- The callback must come back to the browser that started the login (resume_login checks the
  browser binding cookie), and Duo's ID token must name the same user and nonce.
- Fail closed: if Duo is unreachable, misconfigured or its answer cannot be verified, the
  person sees a page saying so and nothing is issued; a Duo denial counts as a failed second
  factor (five end the login with access_denied, as for the other factors).
- TLS to Duo is verified with `BASTION_DUO_CA_FILE` when set, else with the CA bundle that
  duo_universal pins (Duo's own CAs), so a rule cannot point Bastion at an arbitrary host.
- With `allow_remember_browser` (the default) the browser is then remembered for
  `BASTION_MFA_REMEMBER_BROWSER_DAYS` (30): Auth0's "prompt once per 30 days" for Duo.

This is the only module that imports duo_universal. Its calls are blocking (requests, with no
timeout of their own): they run in a worker thread and are abandoned after DUO_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

import duo_universal
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.errors import PageError
from bastion.mfa.pages import MfaPages
from bastion.security.handles import digest, new_handle
from bastion.services import Services
from bastion.storage import one_time_codes
from bastion.storage.records import LoginTransactionRecord, User

__all__ = ["DuoPages", "duo_client", "duo_username"]

log = logging.getLogger("bastion.mfa.duo")

STATE_PURPOSE = "duo-state"
STATE_LIFETIME = timedelta(minutes=15)
DUO_TIMEOUT = 15.0
T = TypeVar("T")


class DuoUnavailable(Exception):
    """Duo cannot be used for this login (configuration, network, or an unverifiable answer)."""


def duo_client(services: Services, mfa: dict[str, Any]) -> duo_universal.Client:
    """The rule's Duo application, answering at {issuer}/u/mfa/duo/callback."""
    ca_file = services.settings.duo_ca_file
    try:
        return duo_universal.Client(
            client_id=mfa.get("ikey", ""), client_secret=mfa.get("skey", ""), host=mfa.get("host", ""),
            redirect_uri=f"{services.settings.issuer}/u/mfa/duo/callback",
            duo_certs=str(ca_file) if ca_file else duo_universal.client.DEFAULT_CA_CERT_PATH,
        )
    except duo_universal.DuoException as error:
        raise DuoUnavailable(f"the rule's Duo settings are not valid: {error}") from None


def duo_username(mfa: dict[str, Any], user: User) -> str:
    """Who Duo is asked about: the rule's `username`, else the user's email, username or id."""
    return mfa.get("username") or user.email or user.username or user.user_id


async def _call(function: Callable[..., T], *args: Any) -> T:
    """A blocking duo_universal call in a thread, abandoned after DUO_TIMEOUT seconds."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(function, *args), DUO_TIMEOUT)
    except TimeoutError:
        raise DuoUnavailable(f"Duo did not answer within {DUO_TIMEOUT:.0f} s") from None
    except duo_universal.DuoException as error:
        raise DuoUnavailable(str(error)) from None


class DuoPages:
    def __init__(self, mfa_pages: MfaPages):
        self.mfa = mfa_pages
        self.services = mfa_pages.services

    def routes(self) -> list[Route]:
        return [
            Route("/u/mfa/duo", self.start, methods=["GET"]),
            Route("/u/mfa/duo/callback", self.callback, methods=["GET"]),
        ]

    async def start(self, request: Request) -> Response:
        """Check Duo is up, remember the state, send the browser to Duo's prompt."""
        transaction = await self.mfa.transaction(request, request.query_params.get("state"))
        if self.mfa.provider(transaction) != "duo":
            return RedirectResponse(f"/u/mfa?{urlencode({'state': transaction.id})}", status_code=303)
        mfa = transaction.progress.get("mfa") or {}
        username = duo_username(mfa, await self.mfa.user(transaction))
        state, nonce = new_handle(32), new_handle(32)
        try:
            client = duo_client(self.services, mfa)
            await _call(client.health_check)
            url = client.create_auth_url(username, state, nonce)
        except (DuoUnavailable, duo_universal.DuoException) as error:
            return self._unavailable(request, transaction, error)
        async with self.services.database.transaction() as session:
            await one_time_codes.insert_code(
                session, id=digest(f"{STATE_PURPOSE}|{state}"), purpose=STATE_PURPOSE, connection=None, recipient=None,
                client_id=transaction.client_id, code_digest=digest(state),
                data={"transaction": transaction.id, "username": username, "nonce": nonce},
                expires_at=datetime.now(timezone.utc) + STATE_LIFETIME,
            )
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    async def callback(self, request: Request) -> Response:
        """Duo's answer: spend the state, exchange the code, and pass or count a failure."""
        pending = await self._spend_state(request, request.query_params.get("state"))
        transaction, username, nonce = pending
        code = request.query_params.get("duo_code")
        if not code:
            # Duo sends error=... instead of a code when it stops the prompt itself.
            reason = request.query_params.get("error_description") or request.query_params.get("error") or "no code"
            log.info("duo returned no code for %s: %s", transaction.user_id, reason)
            return await self._denied(request, transaction)
        try:
            client = duo_client(self.services, transaction.progress.get("mfa") or {})
            result = await _call(client.exchange_authorization_code_for_2fa_result, code, username, nonce)
        except DuoUnavailable as error:
            return self._unconfirmed(request, transaction, error)
        auth_result = result.get("auth_result") or {}
        if auth_result.get("result") == "allow" and auth_result.get("status", "allow") == "allow":
            return await self.mfa.passed(request, transaction, factor="duo")
        log.info("duo denied %s: %s", transaction.user_id, auth_result)
        return await self._denied(request, transaction)

    async def _spend_state(self, request: Request, state: str | None) -> tuple[LoginTransactionRecord, str, str]:
        """The transaction a Duo state belongs to, for this browser; the state works once."""
        invalid = PageError("Invalid state", "This Duo answer is not valid, expired or was already used. Sign in again from the application.")
        if not state or not 16 <= len(state) <= 1024:
            raise invalid
        row_id = digest(f"{STATE_PURPOSE}|{state}")
        async with self.services.database.reader() as session:
            row = await one_time_codes.get_code(session, id=row_id)
        if row is None or row.purpose != STATE_PURPOSE:
            raise invalid
        transaction = await self.mfa.transaction(request, row.data.get("transaction"))  # this browser, awaiting MFA
        async with self.services.database.transaction() as session:
            if not await one_time_codes.consume_code(session, id=row_id):
                raise invalid
        return transaction, str(row.data.get("username")), str(row.data.get("nonce"))

    async def _denied(self, request: Request, transaction: LoginTransactionRecord) -> Response:
        outcome = await self.mfa.failed(request, transaction, factor="duo")
        if isinstance(outcome, Response):
            return outcome  # too many failures: the application gets access_denied
        return self.mfa.page(
            "mfa_duo_error.html", request, outcome, status=403, title="Duo did not approve this login",
            message="Your login was not approved in Duo. You can try again.",
        )

    def _unconfirmed(self, request: Request, transaction: LoginTransactionRecord, error: Exception) -> Response:
        """The code could not be exchanged, or Duo's answer did not verify (signature, user, nonce)."""
        log.warning("duo answer not confirmed for %s (client %s): %s", transaction.user_id, transaction.client_id, error)
        return self.mfa.page(
            "mfa_duo_error.html", request, transaction, status=502, title="Duo could not confirm this login",
            message="The answer from Duo could not be verified, so this login cannot continue. You can try again.",
        )

    def _unavailable(self, request: Request, transaction: LoginTransactionRecord, error: Exception) -> Response:
        log.warning("duo unavailable for %s (client %s): %s", transaction.user_id, transaction.client_id, error)
        return self.mfa.page(
            "mfa_duo_error.html", request, transaction, status=503, title="Duo is unavailable",
            message="The second factor could not be checked with Duo right now, so this login cannot continue. Try again in a moment.",
        )
