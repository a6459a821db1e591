"""The browser's round trip to an upstream OpenID Connect provider (connections `oidc`, `waad`).

    GET  /u/login/upstream?state=&connection=   (the login page's "Continue with ...", and
                                                 /authorize?connection=<name> through /u/login)
         -> the provider's authorization endpoint: code flow, PKCE S256, state, nonce
    GET|POST /login/callback?state=&code=       (Auth0's path; register {issuer}/login/callback
                                                 at the provider)
         -> code exchanged, ID token verified, UserInfo read, the user found or created,
            then the login goes on exactly as after a password (consent, rules, MFA, redirect)

The `state` sent to the provider is a random 256-bit handle; a one_time_codes row (its digest)
holds the login transaction, the connection, the OIDC nonce and the PKCE verifier (sealed).
It is spent by the first callback (a compare-and-set), works only in the browser that started
the login (resume_login checks the binding cookie), and only while that login awaits its
credentials. A forged, replayed or expired state gets a page and nothing else.

When the provider answers with an error (`error=access_denied`: the person cancelled), or its
answer cannot be verified, the login fails and the application receives `access_denied` with
its own `state`; the details are in the server log and the tenant log (event `f`), never in a
page. A provider that cannot even be reached before the redirect gets a page saying so.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.login.federated_accounts import AccountConflict, sign_in_upstream_account
from bastion.login.federation import (
    ConnectionUnavailable,
    UpstreamSettings,
    account_from_claims,
    display_name,
    upstream_connection,
    upstream_params,
    upstream_settings,
)
from bastion.login.flow import LoginFlow
from bastion.login.forms import TransactionPages
from bastion.login.pipeline import Answer, advance, authenticate
from bastion.login.transaction import AuthorizationRequest, LoginDenial, LoginState
from bastion.login.upstream import RelyingParty, UpstreamError, new_pkce_pair
from bastion.pages import Pages
from bastion.security.handles import digest, new_handle
from bastion.security.sealing import SealingError
from bastion.services import Services
from bastion.storage import login_transactions, one_time_codes
from bastion.storage.records import LoginTransactionRecord
from bastion.web import clean_params, client_ip, read_params

__all__ = ["UpstreamLoginRoutes", "CALLBACK_PATH", "start_path"]

log = logging.getLogger("bastion.login.upstream")

CALLBACK_PATH = "/login/callback"
STATE_PURPOSE = "upstream-state"
VERIFIER_PURPOSE = "upstream-pkce-verifier"
STATE_LIFETIME = timedelta(minutes=15)
_MAX_DESCRIPTION = 200


def start_path(transaction_id: str, connection: str) -> str:
    """Where the login page's button (and /authorize?connection=) sends the browser."""
    return f"/u/login/upstream?{urlencode({'state': transaction_id, 'connection': connection})}"


class UpstreamLoginRoutes(TransactionPages):
    def __init__(self, services: Services, pages: Pages, flow: LoginFlow):
        super().__init__(services, pages)
        self.flow = flow

    def routes(self) -> list[Route]:
        return [
            Route("/u/login/upstream", self.start, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET", "POST"]),
        ]

    def _party(self, settings: UpstreamSettings) -> RelyingParty:
        return RelyingParty(settings.client_id, settings.client_secret, f"{self.services.settings.issuer}{CALLBACK_PATH}")

    # -- /u/login/upstream: to the provider --------------------------------------------------

    async def start(self, request: Request) -> Response:
        """OIDC Core §3.1.2.1: send the browser to the provider, remembering what the callback checks."""
        transaction = await self.transaction(request, request.query_params.get("state"))
        name = request.query_params.get("connection")
        try:
            connection = await upstream_connection(self.services, name, client_id=transaction.client_id)
        except ConnectionUnavailable:
            raise PageError("Login unavailable", f"The connection {name or ''} is not enabled for this application.") from None
        providers = self.services.upstream
        try:
            settings = upstream_settings(connection, self.services.sealer)
            metadata = await providers.discover(settings.discovery_url, expected_issuer=settings.issuer)
        except (UpstreamError, SealingError) as error:
            log.warning("upstream connection %s unavailable: %s", connection.name, error)
            raise PageError(
                f"{display_name(connection)} is unavailable",
                f"{display_name(connection)} cannot be reached right now. Go back and try again in a moment, or choose another way to log in.",
                502,
            ) from None
        state, nonce = new_handle(32), new_handle(32)
        verifier, challenge = new_pkce_pair()
        now = datetime.now(timezone.utc)
        async with self.services.database.transaction() as session:
            await one_time_codes.insert_code(
                session, id=_state_row(state), purpose=STATE_PURPOSE, connection=connection.name, recipient=None,
                client_id=transaction.client_id, code_digest=digest(state),
                data={
                    "transaction": transaction.id, "nonce": nonce,
                    "verifier": self.services.sealer.seal(verifier, purpose=VERIFIER_PURPOSE),
                },
                expires_at=min(now + STATE_LIFETIME, transaction.expires_at),
            )
        login_request = AuthorizationRequest.from_json(transaction.request)
        url = providers.authorization_url(
            metadata, self._party(settings), scope=settings.scope, state=state, nonce=nonce, code_challenge=challenge,
            extra=upstream_params(settings, login_request.query),
        )
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})

    # -- /login/callback: back from the provider ---------------------------------------------

    async def callback(self, request: Request) -> Response:
        """OIDC Core §3.1.2.5-6 and §3.1.3: spend the state, then the code, then the login goes on."""
        params = clean_params(request.query_params.multi_items())
        if request.method == "POST":
            params = {**params, **await read_params(request)}
        transaction, connection_name, nonce, verifier = await self._spend_state(request, params.get("state"))
        try:
            connection = await upstream_connection(self.services, connection_name, client_id=transaction.client_id)
        except ConnectionUnavailable:
            return await self._deny(request, transaction, connection_name, "The connection is no longer enabled for this application")
        label = display_name(connection)
        if params.get("error"):
            # §3.1.2.6: the provider (or the person, at the provider) refused.
            reason = _printable(params.get("error_description") or params["error"])
            log.info("upstream connection %s answered error=%s: %s", connection.name, _printable(params["error"]), reason)
            return await self._deny(request, transaction, connection.name, reason or f"{label} did not authenticate the user")
        if not params.get("code"):
            return await self._deny(request, transaction, connection.name, f"{label} sent no authorization code")
        providers = self.services.upstream
        try:
            settings = upstream_settings(connection, self.services.sealer)
            metadata = await providers.discover(settings.discovery_url, expected_issuer=settings.issuer)
            party = self._party(settings)
            tokens = await providers.exchange_code(metadata, party, code=params["code"], code_verifier=verifier)
            claims = await providers.verify_id_token(metadata, party, tokens.id_token, nonce=nonce)
            if tokens.access_token and metadata.userinfo_endpoint:
                claims = {**claims, **await providers.fetch_userinfo(metadata, tokens.access_token, subject=claims["sub"])}
            account = account_from_claims(connection, claims)
        except (UpstreamError, SealingError) as error:
            log.warning("upstream login through %s failed (client %s): %s", connection.name, transaction.client_id, error)
            return await self._deny(request, transaction, connection.name, f"The answer from {label} could not be verified")
        try:
            user = await sign_in_upstream_account(self.services, connection, account, access_token=tokens.access_token)
        except AccountConflict:
            return await self._deny(request, transaction, connection.name, "Another user of this connection has the same email address")
        transaction = await authenticate(self.services, transaction, user=user, methods=["federated"], connection=connection.name)
        return await self.flow.respond(await advance(self.services, transaction, context=self.flow.context(request)))

    async def _spend_state(self, request: Request, state: str | None) -> tuple[LoginTransactionRecord, str, str, str]:
        """The login this state belongs to, in this browser, still awaiting its credentials; the state works once."""
        invalid = PageError(
            "Invalid state",
            "This answer from the identity provider is not valid, has expired or was already used. Sign in again from the application.",
        )
        if not state or not 16 <= len(state) <= 512:
            raise invalid
        row_id = _state_row(state)
        async with self.services.database.reader() as session:
            row = await one_time_codes.get_code(session, id=row_id)
        if row is None or row.purpose != STATE_PURPOSE or row.used_at is not None:
            raise invalid
        transaction = await self.transaction(request, row.data.get("transaction"))  # this browser, awaiting login
        async with self.services.database.transaction() as session:
            if not await one_time_codes.consume_code(session, id=row_id):
                raise invalid
        try:
            verifier = self.services.sealer.open(row.data["verifier"], purpose=VERIFIER_PURPOSE).decode()
        except (KeyError, TypeError, SealingError):
            raise invalid from None
        return transaction, str(row.connection), str(row.data.get("nonce")), verifier

    async def _deny(self, request: Request, transaction: LoginTransactionRecord, connection: str | None, description: str) -> Response:
        """awaiting_login -> failed: the application receives access_denied (with its state); the
        tenant log records why."""
        client = await self.services.tenant.client(transaction.client_id)
        async with self.services.database.transaction() as session:
            moved = await login_transactions.advance_login_transaction(
                session, id=transaction.id, expected_state=LoginState.AWAITING_LOGIN.value,
                changes={"state": LoginState.FAILED.value},
            )
            if not moved:
                raise PageError("Login expired", "This login took too long or was already used. Go back to the application and sign in again.")
            await record_event(
                session, EventType.FAILED_LOGIN, description=description, client_id=transaction.client_id,
                client_name=client.name if client else None, connection=connection, ip=client_ip(request),
                user_agent=request.headers.get("user-agent"), details={"methods": ["federated"]},
            )
        login_request = AuthorizationRequest.from_json(transaction.request)
        return await self.flow.respond(Answer(login_request, outcome=LoginDenial("access_denied", description)))


def _state_row(state: str) -> str:
    return digest(f"{STATE_PURPOSE}|{state}")


def _printable(text: str) -> str:
    """A provider's error text, as far as it is safe to pass on: printable, and short."""
    return "".join(c for c in text if c.isprintable())[:_MAX_DESCRIPTION]

