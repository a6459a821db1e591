"""Universal login pages: /u/login, /u/signup, /u/consent, and /continue (back from a rule's redirect).

/u/login offers what is enabled for the application: the password form (its database
connection), passwordless links, and a "Continue with ..." button per upstream OpenID Connect
connection (login/upstream_routes.py). `/authorize?connection=<name>` skips the page for a
passwordless or upstream connection, as Auth0 does.

Each page works on one login transaction (`state` in the URL), only in the browser
that started it (binding cookie), and every POST carries a CSRF token bound to both.
/continue carries no CSRF token: its signed, single-use `state` plays that part.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.login.credentials import LoginFailure, authenticate_password
from bastion.login.federation import (
    ConnectionUnavailable,
    display_name,
    enabled_upstream_connections,
    upstream_connection,
)
from bastion.login.flow import LoginFlow
from bastion.login.forms import TransactionPages
from bastion.login.pipeline import (
    accept_consent,
    advance,
    authenticate,
    consent_scopes,
    decline_consent,
    open_continue_state,
    resume_from_redirect,
)
from bastion.login.sso import BROWSER_COOKIE
from bastion.login.transaction import AuthorizationRequest, LoginState
from bastion.login.upstream_routes import start_path
from bastion.pages import Pages
from bastion.passwordless.channels import STRATEGIES as PASSWORDLESS_STRATEGIES
from bastion.passwordless.channels import enabled_passwordless_connections
from bastion.services import Services
from bastion.storage.records import Connection, LoginTransactionRecord, User
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from bastion.emails.account import send_signup_emails
from bastion.tenant.users import UserConflict, WeakPassword, create_database_user, is_valid_email
from bastion.web import clean_params, client_ip, read_params

__all__ = ["LoginRoutes"]


class LoginRoutes(TransactionPages):
    def __init__(self, services: Services, pages: Pages, flow: LoginFlow):
        super().__init__(services, pages)
        self.flow = flow

    def routes(self) -> list[Route]:
        return [
            Route("/u/login", self.login, methods=["GET", "POST"]),
            Route("/u/signup", self.signup, methods=["GET", "POST"]),
            Route("/u/consent", self.consent, methods=["GET", "POST"]),
            Route("/continue", self.continue_login, methods=["GET", "POST"]),
        ]

    async def _connection(self, transaction: LoginTransactionRecord) -> Connection:
        request = AuthorizationRequest.from_json(transaction.request)
        name = request.connection or DEFAULT_CONNECTION
        connection = await self.services.tenant.connection(name)
        if connection is None or connection.strategy != "auth0" or transaction.client_id not in connection.enabled_clients:
            raise PageError("Login unavailable", f"The connection {name} is not enabled for this application.")
        return connection

    async def _client_name(self, transaction: LoginTransactionRecord) -> str:
        client = await self.services.tenant.client(transaction.client_id)
        return client.name if client else "the application"

    # -- /u/login -------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.transaction(request, request.query_params.get("state"))
            requested = AuthorizationRequest.from_json(transaction.request).connection
            if requested in PASSWORDLESS_STRATEGIES:  # /authorize?connection=email|sms: straight to the code page
                return RedirectResponse(f"/u/passwordless?{urlencode({'state': transaction.id, 'connection': requested})}", status_code=302)
            if requested and await self._is_upstream(transaction, requested):  # straight to the upstream provider
                return RedirectResponse(start_path(transaction.id, requested), status_code=302)
            hint = AuthorizationRequest.from_json(transaction.request).login_hint
            return await self._login_page(request, transaction, username=hint)
        form, transaction = await self.form(request)
        connection = await self._connection(transaction)
        username, password = form.get("username", "").strip(), form.get("password", "")
        if not username or not password:
            return await self._login_page(
                request, transaction, status=400, username=username,
                error="Enter your email address or username, and your password.",
            )
        try:
            user = await authenticate_password(
                self.services, connection=connection.name, login=username, password=password,
                ip=client_ip(request), client_id=transaction.client_id, user_agent=request.headers.get("user-agent"),
            )
        except LoginFailure as failure:
            return await self._login_page(
                request, transaction, status=400 if failure.code == "wrong_credentials" else 429,
                username=username, error=failure.message,
            )
        return await self._finish(request, transaction, user, connection=connection.name)

    async def _is_upstream(self, transaction: LoginTransactionRecord, name: str) -> bool:
        try:
            await upstream_connection(self.services, name, client_id=transaction.client_id)
        except ConnectionUnavailable:
            return False
        return True

    async def _login_page(
        self, request: Request, transaction: LoginTransactionRecord, *, status: int = 200, username: str | None = None,
        error: str | None = None,
    ) -> Response:
        """The login page: the password form when the database connection is enabled for the
        application, a link per passwordless connection, a button per upstream provider."""
        try:
            connection: Connection | None = await self._connection(transaction)
        except PageError:
            connection = None
        passwordless = await enabled_passwordless_connections(self.services, transaction.client_id)
        upstream = [
            (start_path(transaction.id, c.name), display_name(c))
            for c in await enabled_upstream_connections(self.services, transaction.client_id)
        ]
        if connection is None and not passwordless and not upstream:
            await self._connection(transaction)  # raises the page that says which connection is missing
        return self.page(
            "login.html", request, transaction, status=status, client_name=await self._client_name(transaction),
            password_login=connection is not None,
            signup_allowed=connection is not None and not connection.options.get("disable_signup"),
            username=username, error=error, passwordless=passwordless, upstream=upstream, **await self.branding(),
        )

    # -- /u/signup ------------------------------------------------------------

    async def signup(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.transaction(request, request.query_params.get("state"))
            connection = await self._connection(transaction)
            if connection.options.get("disable_signup"):
                return RedirectResponse(f"/u/login?{urlencode({'state': transaction.id})}", status_code=302)
            return self.page(
                "signup.html", request, transaction, client_name=await self._client_name(transaction), **await self.branding()
            )
        form, transaction = await self.form(request)
        connection = await self._connection(transaction)
        if connection.options.get("disable_signup"):
            raise PageError("Sign-up is disabled", "This application does not accept new sign-ups.", 403)
        email, password = form.get("email", "").strip(), form.get("password", "")
        error = None
        if not is_valid_email(email):
            error = "Enter a valid email address."
        else:
            try:
                async with self.services.database.transaction() as session:
                    user = await create_database_user(session, connection=connection.name, email=email, password=password)
                    await record_event(
                        session, EventType.SUCCESS_SIGNUP, description="Successful signup", user_id=user.user_id,
                        user_name=email, client_id=transaction.client_id, connection=connection.name, ip=client_ip(request),
                    )
                    await send_signup_emails(self.services, session, connection=connection, user=user, client_id=transaction.client_id)
            except (WeakPassword, UserConflict) as problem:
                error = str(problem) if isinstance(problem, WeakPassword) else "Something went wrong, please try again later."
                if isinstance(problem, UserConflict):
                    error = "An account with this email address already exists. Log in instead."
        if error:
            return self.page(
                "signup.html", request, transaction, status=400, client_name=await self._client_name(transaction),
                email=email, error=error, **await self.branding(),
            )
        return await self._finish(request, transaction, user, connection=connection.name)

    # -- consent -------------------------------------------------------------

    async def consent(self, request: Request) -> Response:
        """The consent screen of a third-party application: accept (remembered) or decline."""
        if request.method == "GET":
            transaction = await self.transaction(request, request.query_params.get("state"), LoginState.AWAITING_CONSENT)
            login_request = AuthorizationRequest.from_json(transaction.request)
            api = await self.services.tenant.resource_server(login_request.audience) if login_request.audience else None
            descriptions = {s.get("value"): s.get("description") for s in (api.scopes if api else []) if isinstance(s, dict)}
            scopes = [(scope, descriptions.get(scope) or _SCOPE_DESCRIPTIONS.get(scope, "")) for scope in consent_scopes(login_request, api)]
            return self.page(
                "consent.html", request, transaction, client_name=await self._client_name(transaction), scopes=scopes,
                api_name=api.name if api else None,
            )
        form, transaction = await self.form(request, LoginState.AWAITING_CONSENT)
        context = self.flow.context(request)
        if form.get("action") == "accept":
            answer = await accept_consent(self.services, transaction, context=context)
        else:
            answer = await decline_consent(self.services, transaction, context=context)
        return await self.flow.respond(answer)

    # -- /continue: back from a rule's redirect ---------------------------------

    async def continue_login(self, request: Request) -> Response:
        """Auth0's /continue: the external page sends the browser back with the `state` it got;
        every rule runs again with protocol `redirect-callback`, seeing `query` and `body`."""
        query = clean_params(request.query_params.multi_items())
        body = await read_params(request) if request.method == "POST" else {}
        state = query.get("state") or body.get("state")
        transaction = await open_continue_state(self.services, state, browser=request.cookies.get(BROWSER_COOKIE))
        answer = await resume_from_redirect(self.services, transaction, query=query, body=body, context=self.flow.context(request))
        return await self.flow.respond(answer)

    # -- the end of a successful authentication -------------------------------

    async def _finish(self, request: Request, transaction: LoginTransactionRecord, user: User, *, connection: str) -> Response:
        """Credentials are good: the login goes on (consent, rules, MFA, redirect) from here."""
        transaction = await authenticate(self.services, transaction, user=user, methods=["pwd"], connection=connection)
        return await self.flow.respond(await advance(self.services, transaction, context=self.flow.context(request)))


_SCOPE_DESCRIPTIONS = {
    "openid": "Confirm your identity",
    "profile": "Read your name, nickname and picture",
    "email": "Read your email address",
    "address": "Read your address",
    "phone": "Read your phone number",
    "offline_access": "Stay signed in (refresh tokens)",
}
