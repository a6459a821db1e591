"""Universal login pages: /u/login and /u/signup.

Each page works on one login transaction (`state` in the URL), only in the browser
that started it (binding cookie), and every POST carries a CSRF token bound to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.login.credentials import LoginFailure, authenticate_password
from bastion.login.pipeline import LoginContext, Responder, authenticate, complete_login, resume_login
from bastion.login.sso import BROWSER_COOKIE, SESSION_COOKIE, end_sso_session, set_cookie, start_sso_session
from bastion.login.transaction import AuthorizationRequest, LoginState
from bastion.pages import Pages
from bastion.security.csrf import CsrfTokens
from bastion.services import Services
from bastion.storage.records import Connection, LoginTransactionRecord, User
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from bastion.tenant.users import UserConflict, WeakPassword, create_database_user, is_valid_email
from bastion.web import client_ip, read_form

__all__ = ["LoginRoutes"]


class LoginRoutes:
    def __init__(self, services: Services, pages: Pages, responders: Mapping[str, Responder]):
        self.services = services
        self.pages = pages
        self.responders = responders
        self.csrf = CsrfTokens(services.settings.secret_key or "")

    def routes(self) -> list[Route]:
        return [
            Route("/u/login", self.login, methods=["GET", "POST"]),
            Route("/u/signup", self.signup, methods=["GET", "POST"]),
        ]

    async def _transaction(self, request: Request, state: str | None) -> LoginTransactionRecord:
        return await resume_login(
            self.services, state, browser=request.cookies.get(BROWSER_COOKIE), expected=LoginState.AWAITING_LOGIN
        )

    async def _form(self, request: Request) -> tuple[dict[str, str], LoginTransactionRecord]:
        form = await read_form(request)
        transaction = await self._transaction(request, form.get("state") or request.query_params.get("state"))
        if not self.csrf.verify(form.get("csrf_token"), transaction.id, request.cookies.get(BROWSER_COOKIE, "")):
            raise PageError("Invalid request", "This form has expired or was not sent by this site. Go back and try again.", 403)
        return form, transaction

    async def _connection(self, transaction: LoginTransactionRecord) -> Connection:
        request = AuthorizationRequest.from_json(transaction.request)
        name = request.connection or DEFAULT_CONNECTION
        connection = await self.services.tenant.connection(name)
        if connection is None or connection.strategy != "auth0" or transaction.client_id not in connection.enabled_clients:
            raise PageError("Login unavailable", f"The connection {name} is not enabled for this application.")
        return connection

    def _page(self, template: str, request: Request, transaction: LoginTransactionRecord, *, status: int = 200, **context) -> Response:
        return self.pages.render(
            template,
            status=status,
            state=transaction.id,
            csrf_token=self.csrf.issue(transaction.id, request.cookies.get(BROWSER_COOKIE, "")),
            **context,
        )

    async def _client_name(self, transaction: LoginTransactionRecord) -> str:
        client = await self.services.tenant.client(transaction.client_id)
        return client.name if client else "the application"

    # -- /u/login -------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self._transaction(request, request.query_params.get("state"))
            connection = await self._connection(transaction)
            hint = AuthorizationRequest.from_json(transaction.request).login_hint
            return self._page(
                "login.html", request, transaction, client_name=await self._client_name(transaction),
                signup_allowed=not connection.options.get("disable_signup"), username=hint,
            )
        form, transaction = await self._form(request)
        connection = await self._connection(transaction)
        username, password = form.get("username", "").strip(), form.get("password", "")
        if not username or not password:
            return self._page(
                "login.html", request, transaction, status=400, client_name=await self._client_name(transaction),
                signup_allowed=not connection.options.get("disable_signup"), username=username,
                error="Enter your email address or username, and your password.",
            )
        try:
            user = await authenticate_password(
                self.services, connection=connection.name, login=username, password=password,
                ip=client_ip(request), client_id=transaction.client_id, user_agent=request.headers.get("user-agent"),
            )
        except LoginFailure as failure:
            return self._page(
                "login.html", request, transaction, status=400 if failure.code == "wrong_credentials" else 429,
                client_name=await self._client_name(transaction),
                signup_allowed=not connection.options.get("disable_signup"), username=username, error=failure.message,
            )
        return await self._finish(request, transaction, user)

    # -- /u/signup ------------------------------------------------------------

    async def signup(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self._transaction(request, request.query_params.get("state"))
            connection = await self._connection(transaction)
            if connection.options.get("disable_signup"):
                return RedirectResponse(f"/u/login?{urlencode({'state': transaction.id})}", status_code=302)
            return self._page("signup.html", request, transaction, client_name=await self._client_name(transaction))
        form, transaction = await self._form(request)
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
            except (WeakPassword, UserConflict) as problem:
                error = str(problem) if isinstance(problem, WeakPassword) else "Something went wrong, please try again later."
                if isinstance(problem, UserConflict):
                    error = "An account with this email address already exists. Log in instead."
        if error:
            return self._page(
                "signup.html", request, transaction, status=400, client_name=await self._client_name(transaction),
                email=email, error=error,
            )
        return await self._finish(request, transaction, user)

    # -- the end of a successful authentication -------------------------------

    async def _finish(self, request: Request, transaction: LoginTransactionRecord, user: User) -> Response:
        await end_sso_session(self.services, request)
        cookie, sso = await start_sso_session(self.services, user_id=user.user_id, methods=["pwd"])
        transaction = await authenticate(self.services, transaction, user=user, sso=sso)
        login_request, result = await complete_login(
            self.services, transaction, sso=sso,
            context=LoginContext(ip=client_ip(request), user_agent=request.headers.get("user-agent"), hostname=request.url.hostname or ""),
        )
        response = await self.responders[login_request.protocol](self.services, login_request, result)
        set_cookie(response, self.services, SESSION_COOKIE, cookie, max_age=self.services.settings.session_lifetime)
        return response
