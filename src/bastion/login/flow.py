"""The browser's side of the login pipeline: read the request's facts and cookies into a
LoginContext, and turn the pipeline's Answer into an HTTP response.

Every route that moves a login (authorize, login and sign-up forms, passwordless codes,
consent, MFA, /continue) ends with `LoginFlow.respond`, so cookies and answers are set
the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bastion.login.pipeline import Answer, LoginContext
from bastion.login.sso import BROWSER_COOKIE, SESSION_COOKIE, set_cookie
from bastion.login.transaction import AuthorizationRequest, LoginDenial, LoginResult
from bastion.services import Services
from bastion.web import client_ip

__all__ = ["LoginFlow", "Responder", "REMEMBER_COOKIE"]

REMEMBER_COOKIE = "bastion_mfa"

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
            hostname=request.url.hostname or "",
            browser=browser or request.cookies.get(BROWSER_COOKIE),
            remembered=request.cookies.get(REMEMBER_COOKIE),
            session_cookie=request.cookies.get(SESSION_COOKIE),
        )

    async def respond(self, answer: Answer) -> Response:
        """A redirect to the next step, or the protocol's answer; a new SSO session's cookie with it."""
        if answer.redirect is not None:
            response: Response = RedirectResponse(answer.redirect, status_code=302, headers={"Cache-Control": "no-store"})
        else:
            assert answer.outcome is not None
            response = await self.responders[answer.request.protocol](self.services, answer.request, answer.outcome)
        if answer.session_cookie:
            set_cookie(response, self.services, SESSION_COOKIE, answer.session_cookie, max_age=self.services.settings.session_lifetime)
        return response
