"""Auth0's passwordless Authentication API.

    POST /passwordless/start            {client_id, [client_secret], connection: email|sms, email | phone_number,
                                         send: code|link (email; default link), [authParams]}
        email -> {"_id", "email", "email_verified": false}
        sms   -> {"_id", "phone_number", "phone_verified": false, "request_language": null}
    GET  /passwordless/verify_redirect  the emailed magic link (send: link): an /authorize-equivalent login
                                        with the link's authParams, completed by its verification_code

Errors are Auth0's: 400 `bad.client_id`, `bad.connection`, `bad.send`, `bad.email`,
`bad.phone_number`, `bad.authParams`, `sms_provider_error`; 401 `invalid_client` (a
confidential client must send its secret, as Auth0 requires since its 2020 migration);
403 `unauthorized_client` (the client lacks the grant that could use the code);
429 `too_many_requests` (per-recipient limit). The code is then exchanged at /oauth/token
(grant.py). The universal-login pages are in pages.py.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.errors import OAuthError, PageError
from bastion.events import EventType
from bastion.login.flow import BROWSER_COOKIE_AGE, LoginFlow
from bastion.login.pipeline import advance, authenticate, begin_login
from bastion.login.sso import BROWSER_COOKIE, browser_id, set_cookie
from bastion.oidc.authorize import RedirectError, validate_authorization_request
from bastion.oidc.client_auth import authenticate_client
from bastion.oidc.responses import redirect_to_client
from bastion.pages import Pages
from bastion.passwordless.channels import PHONE_PATTERN, ConnectionUnavailable, normalize_recipient, passwordless_connection
from bastion.passwordless.codes import IssuedCode
from bastion.passwordless.grant import PASSWORDLESS_OTP_GRANT
from bastion.passwordless.login import (
    CodeRejected,
    DeliveryFailed,
    SignupDisabled,
    TooManyCodes,
    redeem_passwordless,
    send_passwordless,
    wrong_code_message,
)
from bastion.passwordless.pages import PasswordlessPages
from bastion.services import Services
from bastion.web import clean_params, json_response, read_params

__all__ = ["PasswordlessRoutes"]

# Parameters of the magic link that are Bastion's, not the application's authParams.
_LINK_PARAMETERS = ("verification_code", "connection", "email", "phone_number", "client_id")


def _bad(error: str, description: str, status: int = 400) -> OAuthError:
    return OAuthError(error, description, status)


class PasswordlessRoutes:
    def __init__(self, services: Services, pages: Pages, flow: LoginFlow):
        self.services = services
        self.pages = pages
        self.flow = flow
        self.universal_login = PasswordlessPages(services, pages, flow)

    def routes(self) -> list[Route]:
        return [
            Route("/passwordless/start", self.start, methods=["POST"]),
            Route("/passwordless/verify_redirect", self.verify_redirect, methods=["GET"]),
            *self.universal_login.routes(),
        ]

    # -- POST /passwordless/start ---------------------------------------------------

    async def start(self, request: Request) -> Response:
        params = await read_params(request)
        if not params.get("client_id") and not request.headers.get("authorization"):
            raise _bad("bad.client_id", "Missing required property: client_id")
        if not params.get("connection"):
            raise _bad("bad.connection", "Missing required property: connection")
        caller = await authenticate_client(request, params, self.services.tenant)
        client = caller.client
        try:
            connection = await passwordless_connection(self.services, params["connection"], client_id=client.client_id)
        except ConnectionUnavailable as problem:
            raise _bad("bad.connection", problem.message) from None
        strategy = connection.strategy
        send = params.get("send") or ("link" if strategy == "email" else "code")
        if send not in ("code", "link"):
            raise _bad("bad.send", "Property send must be one of: link, code")
        if strategy == "sms" and send == "link":
            raise _bad("bad.send", "sms connections send codes only (send: code)")
        field = "email" if strategy == "email" else "phone_number"
        if not params.get(field):
            raise _bad(f"bad.{field}", f"Missing required property: {field}")
        recipient = normalize_recipient(strategy, params[field])
        if recipient is None:
            raise _bad(
                f"bad.{field}",
                f"Object didn't pass validation for format email: {params[field]}" if strategy == "email"
                else f"String does not match pattern: {PHONE_PATTERN}",
            )
        auth_params = _auth_params(params.get("authParams"))
        if send == "code" and PASSWORDLESS_OTP_GRANT not in client.grant_types:
            raise OAuthError("unauthorized_client", f"Grant type '{PASSWORDLESS_OTP_GRANT}' not allowed for the client.", 403)
        link_query = await self._link_query(client.client_id, auth_params) if send == "link" else {}

        def link(issued: IssuedCode) -> str:
            query = {**link_query, "verification_code": issued.secret, "connection": connection.name,
                     "client_id": client.client_id, "email": recipient}
            return f"{self.services.settings.issuer}/passwordless/verify_redirect?{urlencode(query)}"

        try:
            issued = await send_passwordless(
                self.services, connection=connection, client=client, recipient=recipient, send=send,
                context=self.flow.context(request), link=link,
            )
        except TooManyCodes:
            raise _bad("too_many_requests", "Too many codes were sent to this recipient. Try again later.", 429) from None
        except DeliveryFailed as failure:
            if strategy == "sms":
                raise _bad("sms_provider_error", str(failure)) from None
            raise _bad("server_error", str(failure), 500) from None
        if strategy == "email":
            return json_response({"_id": issued.id, "email": recipient, "email_verified": False})
        return json_response({"_id": issued.id, "phone_number": recipient, "phone_verified": False, "request_language": None})

    async def _link_query(self, client_id: str, auth_params: dict[str, str]) -> dict[str, str]:
        """The magic link's authorization parameters, checked now as /authorize will check them then."""
        query = {k: v for k, v in auth_params.items() if k not in _LINK_PARAMETERS}
        query.setdefault("response_type", "code")
        try:
            await validate_authorization_request({**query, "client_id": client_id}, self.services.tenant)
        except RedirectError as error:
            raise _bad("bad.authParams", f"error in authParams - {error.description}") from None
        except PageError as error:
            raise _bad("bad.authParams", f"error in authParams - {error.message}") from None
        return query

    # -- GET /passwordless/verify_redirect ------------------------------------------

    async def verify_redirect(self, request: Request) -> Response:
        """The magic link: validate its authParams like /authorize, redeem its code, log the user in."""
        params = clean_params(request.query_params.multi_items())
        code = params.pop("verification_code", "")
        connection_name = params.pop("connection", None)
        email = params.pop("email", None)
        params.pop("phone_number", None)
        params.setdefault("response_type", "code")
        try:
            authorization = await validate_authorization_request(params, self.services.tenant)
        except RedirectError as error:
            return redirect_to_client(
                self.pages, redirect_uri=error.redirect_uri, response_mode=error.response_mode,
                params={"error": error.error, "error_description": error.description, "state": error.state},
            )

        def fail(error: str, description: str) -> Response:
            return redirect_to_client(
                self.pages, redirect_uri=authorization.redirect_uri, response_mode=authorization.response_mode,
                params={"error": error, "error_description": description, "state": authorization.state},
            )

        try:
            connection = await passwordless_connection(self.services, connection_name, client_id=authorization.client_id)
        except ConnectionUnavailable as problem:
            return fail("invalid_request", problem.message)
        if connection.strategy != "email":
            return fail("invalid_request", "Magic links are sent by the email connection only")
        client = await self.services.tenant.client(authorization.client_id)
        assert client is not None
        recipient = normalize_recipient("email", email)
        context = self.flow.context(request)
        if recipient is None or not code:
            return fail("access_denied", wrong_code_message("email"))
        try:
            redeemed = await redeem_passwordless(
                self.services, connection=connection, client=client, recipient=recipient, code=code, send="link",
                context=context, failure_event=EventType.FAILED_LOGIN,
            )
        except CodeRejected as rejected:
            if rejected.reason == "exhausted":
                return fail("access_denied", "You've reached the maximum number of attempts. Please try to login again.")
            return fail("access_denied", "The link has expired or was already used. Ask for a new one.")
        except SignupDisabled:
            return fail("access_denied", "Public signup is disabled for this connection.")
        browser, new_browser = browser_id(request)
        transaction = await begin_login(self.services, authorization, browser=browser)
        transaction = await authenticate(
            self.services, transaction, user=redeemed.user, methods=[connection.strategy], connection=connection.name
        )
        answer = await advance(self.services, transaction, context=self.flow.context(request, browser=browser))
        response = await self.flow.respond(answer)
        if new_browser:
            set_cookie(response, self.services, BROWSER_COOKIE, browser, max_age=BROWSER_COOKIE_AGE)
        return response


def _auth_params(raw: str | None) -> dict[str, str]:
    """`authParams`: a JSON object of strings (numbers and booleans are turned into strings)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _bad("bad.authParams", "error in authParams - invalid type: string (expected object)")
    params: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, (dict, list)):
            raise _bad("bad.authParams", f"error in authParams - {key} must be a string")
        params[str(key)] = ("true" if item else "false") if isinstance(item, bool) else str(item)
    return clean_params(params.items())
