"""The browser's side of the login pipeline: read the request's facts and cookies into a
LoginContext, and turn the pipeline's Answer into an HTTP response.

Every route that moves a login (authorize, login and sign-up forms, passwordless codes,
consent, MFA, /continue) ends with `LoginFlow.respond`, so cookies and answers are set
the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bastion.login.pipeline import Answer, LoginContext, advance, authentication, begin_login, session_satisfies
from bastion.login.sso import BROWSER_COOKIE, SESSION_COOKIE, browser_id, current_sso_session, set_cookie
from bastion.login.transaction import AuthorizationRequest, LoginDenial, LoginResult
from bastion.services import Services
from bastion.storage import users as user_store
from bastion.tenant.tenant_settings import tenant_settings
from bastion.web import client_ip, request_hostname

__all__ = ["LoginFlow", "Responder", "REMEMBER_COOKIE"]

REMEMBER_COOKIE = "bastion_mfa"
BROWSER_COOKIE_AGE = 400 * 86400

Responder = Callable[[Services, AuthorizationRequest, "LoginResult | LoginDenial"], Awaitable[Response]]


class LoginFlow:
    def __init__(self, services: Services, responders: Mapping[str, Responder]):
        self.services = services
        self.responders = responders

    @staticmethod
    def context(request: Request, *, browser: str | None = None) -> LoginContext:
        return LoginContext(
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            hostname=request_hostname(request),
            browser=browser or request.cookies.get(BROWSER_COOKIE),
            remembered=request.cookies.get(REMEMBER_COOKIE),
            session_cookie=request.cookies.get(SESSION_COOKIE),
        )

    async def start(
        self, request: Request, authorization: AuthorizationRequest, *, passive_failure: Callable[[], Awaitable[Response]]
    ) -> Response:
        """A validated request (OIDC /authorize, SAML /samlp): answered from a live SSO session
        that satisfies it, else `passive_failure()` when it may not show a page (prompt=none,
        IsPassive), else the login page."""
        browser, new_browser = browser_id(request)
        sso = await current_sso_session(self.services, request)
        if sso is not None and session_satisfies(authorization, sso):
            async with self.services.database.reader() as session:
                user = await user_store.get_user(session, user_id=sso.user_id)
            if user is not None and not user.blocked:
                authenticated = await authentication(self.services, user=user, methods=list(sso.methods), sso=sso)
                transaction = await begin_login(self.services, authorization, browser=browser, authenticated=authenticated)
                answer = await advance(self.services, transaction, context=self.context(request, browser=browser))
                return self._with_browser(await self.respond(answer), browser, new_browser)
        if "none" in authorization.prompt:
            return await passive_failure()
        transaction = await begin_login(self.services, authorization, browser=browser)
        response = RedirectResponse(f"/u/login?{urlencode({'state': transaction.id})}", status_code=302)
        return self._with_browser(response, browser, new_browser)

    def _with_browser(self, response: Response, browser: str, new_browser: bool) -> Response:
        if new_browser:
            set_cookie(response, self.services, BROWSER_COOKIE, browser, max_age=BROWSER_COOKIE_AGE)
        return response

    async def respond(self, answer: Answer) -> Response:
        """A redirect to the next step, or the protocol's answer; a new SSO session's cookie with it."""
        if answer.redirect is not None:
            response: Response = RedirectResponse(answer.redirect, status_code=302, headers={"Cache-Control": "no-store"})
        else:
            assert answer.outcome is not None
            response = await self.responders[answer.request.protocol](self.services, answer.request, answer.outcome)
        if answer.session_cookie:  # a non-persistent session's cookie ends with the browser (session_cookie.mode)
            settings = await tenant_settings(self.services)
            max_age = settings.session_lifetime if settings.persistent_sessions else None
            set_cookie(response, self.services, SESSION_COOKIE, answer.session_cookie, max_age=max_age)
        return response
