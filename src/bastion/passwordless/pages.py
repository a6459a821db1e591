"""Universal login with a code or a magic link, for a login transaction in `awaiting_login`.

    GET  /u/passwordless?state=&connection=email|sms   ask for the address or number
    POST /u/passwordless                               send a code (-> the code page) or, by email,
                                                       a link (-> "check your email"); also "send again"
    POST /u/passwordless/verify                        the code: right -> the login goes on (consent, rules,
                                                       MFA, redirect) exactly as after a password
    GET  /u/passwordless/link?state=&connection=email&email=&verification_code=
                                                       the emailed link: works only in the browser that
                                                       asked for it, for that transaction

Codes and links asked for here are bound to the transaction: they do not work at
/oauth/token, in another login, or (links) in another browser. Every POST carries the
CSRF token bound to the transaction and the browser, as on /u/login.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.errors import PageError
from bastion.events import EventType
from bastion.login.flow import LoginFlow
from bastion.login.forms import TransactionPages
from bastion.login.pipeline import advance, authenticate
from bastion.login.transaction import AuthorizationRequest
from bastion.pages import Pages
from bastion.passwordless.channels import ConnectionUnavailable, normalize_recipient, passwordless_connection
from bastion.passwordless.codes import IssuedCode
from bastion.passwordless.login import (
    CodeRejected,
    DeliveryFailed,
    SignupDisabled,
    TooManyCodes,
    redeem_passwordless,
    send_passwordless,
)
from bastion.services import Services
from bastion.storage.records import Client, Connection, LoginTransactionRecord, User
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from bastion.web import clean_params

__all__ = ["PasswordlessPages"]

_REJECTED = {
    "wrong": "That code is not right. Check it and try again.",
    "expired": "This code has expired or was already used. Send a new code.",
    "exhausted": "Too many wrong codes. Send a new code.",
}


class PasswordlessPages(TransactionPages):
    def __init__(self, services: Services, pages: Pages, flow: LoginFlow):
        super().__init__(services, pages)
        self.flow = flow

    def routes(self) -> list[Route]:
        return [
            Route("/u/passwordless", self.start, methods=["GET", "POST"]),
            Route("/u/passwordless/verify", self.verify, methods=["POST"]),
            Route("/u/passwordless/link", self.link, methods=["GET"]),
        ]

    # -- shared ---------------------------------------------------------------------

    async def _connection(self, transaction: LoginTransactionRecord, name: str | None) -> Connection:
        try:
            return await passwordless_connection(self.services, name, client_id=transaction.client_id)
        except ConnectionUnavailable:
            raise PageError("Login unavailable", f"Passwordless login ({name or 'no connection'}) is not enabled for this application.") from None

    async def _client(self, transaction: LoginTransactionRecord) -> Client:
        client = await self.services.tenant.client(transaction.client_id)
        if client is None:
            raise PageError("Unknown application", "No application is registered with this client_id.")
        return client

    async def _password_login(self, transaction: LoginTransactionRecord) -> bool:
        """Whether /u/login can log in to this application (its database connection is enabled)."""
        name = AuthorizationRequest.from_json(transaction.request).connection or DEFAULT_CONNECTION
        connection = await self.services.tenant.connection(name)
        return connection is not None and connection.strategy == "auth0" and transaction.client_id in connection.enabled_clients

    async def _page(
        self, template: str, request: Request, transaction: LoginTransactionRecord, connection: Connection, *, status: int = 200, **context
    ) -> Response:
        client = await self._client(transaction)
        return self.page(
            template, request, transaction, status=status,
            connection=connection.name, client_name=client.name, password_login=await self._password_login(transaction),
            field="email" if connection.strategy == "email" else "phone_number", **context,
        )

    # -- /u/passwordless: ask for the address or number, send the code or link ---------

    async def start(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.transaction(request, request.query_params.get("state"))
            connection = await self._connection(transaction, request.query_params.get("connection"))
            hint = AuthorizationRequest.from_json(transaction.request).login_hint
            return await self._page("passwordless_start.html", request, transaction, connection, recipient=hint)
        form, transaction = await self.form(request)
        connection = await self._connection(transaction, form.get("connection"))
        field = "email" if connection.strategy == "email" else "phone_number"
        send = "link" if form.get("send") == "link" and connection.strategy == "email" else "code"
        typed = form.get(field, "").strip()
        recipient = normalize_recipient(connection.strategy, typed, lenient=True)
        if recipient is None:
            message = "Enter a valid email address." if field == "email" else "Enter your phone number with its country code, such as +14155550100."
            return await self._page("passwordless_start.html", request, transaction, connection, status=400, recipient=typed, error=message)
        client = await self._client(transaction)

        def link(issued: IssuedCode) -> str:
            query = {"state": transaction.id, "connection": connection.name, "email": recipient, "verification_code": issued.secret}
            return f"{self.services.settings.issuer}/u/passwordless/link?{urlencode(query)}"

        try:
            await send_passwordless(
                self.services, connection=connection, client=client, recipient=recipient, send=send,
                context=self.flow.context(request), link=link, transaction_id=transaction.id,
            )
        except TooManyCodes:
            return await self._page(
                "passwordless_start.html", request, transaction, connection, status=429, recipient=typed,
                error="Too many codes were sent to this address. Wait a while and try again.",
            )
        except DeliveryFailed:
            return await self._page(
                "passwordless_start.html", request, transaction, connection, status=502, recipient=typed,
                error="We could not send the message. Try again later.",
            )
        if send == "link":
            return await self._page("passwordless_link_sent.html", request, transaction, connection, recipient=recipient)
        return await self._page("passwordless_verify.html", request, transaction, connection, recipient=recipient)

    # -- /u/passwordless/verify: the code -----------------------------------------------

    async def verify(self, request: Request) -> Response:
        form, transaction = await self.form(request)
        connection = await self._connection(transaction, form.get("connection"))
        recipient = normalize_recipient(connection.strategy, form.get("recipient"))
        if recipient is None:
            raise PageError("Invalid request", "This form is incomplete. Go back and ask for a new code.")
        code = "".join(form.get("code", "").split())
        if not code:
            return await self._page(
                "passwordless_verify.html", request, transaction, connection, status=400, recipient=recipient,
                error="Enter the code we sent you.",
            )
        client = await self._client(transaction)
        try:
            redeemed = await redeem_passwordless(
                self.services, connection=connection, client=client, recipient=recipient, code=code, send="code",
                context=self.flow.context(request), failure_event=EventType.FAILED_LOGIN, transaction_id=transaction.id,
            )
        except CodeRejected as rejected:
            return await self._page(
                "passwordless_verify.html", request, transaction, connection, status=400, recipient=recipient,
                error=_REJECTED[rejected.reason], expired=rejected.reason != "wrong",
            )
        except SignupDisabled:
            return await self._page(
                "passwordless_verify.html", request, transaction, connection, status=403, recipient=recipient,
                error="There is no account for this address, and this application does not accept new sign-ups.",
            )
        return await self._finish(request, transaction, connection, redeemed.user)

    # -- /u/passwordless/link: the emailed link -------------------------------------------

    async def link(self, request: Request) -> Response:
        params = clean_params(request.query_params.multi_items())
        try:
            transaction = await self.transaction(request, params.get("state"))
        except PageError:
            raise PageError(
                "Link not usable here",
                "This link works once, only in the browser where you asked for it, and only until that login expires. "
                "Open it in that browser, or sign in again from the application.",
            ) from None
        connection = await self._connection(transaction, params.get("connection"))
        recipient = normalize_recipient("email", params.get("email"))
        if connection.strategy != "email" or recipient is None or not params.get("verification_code"):
            raise PageError("Invalid link", "This link is incomplete. Ask for a new one.")
        try:
            redeemed = await redeem_passwordless(
                self.services, connection=connection, client=await self._client(transaction), recipient=recipient,
                code=params["verification_code"], send="link", context=self.flow.context(request),
                failure_event=EventType.FAILED_LOGIN, transaction_id=transaction.id,
            )
        except CodeRejected:
            raise PageError("Link expired", "This link has expired or was already used. Ask for a new one.") from None
        except SignupDisabled:
            raise PageError("Sign-up is disabled", "There is no account for this address, and this application does not accept new sign-ups.", 403) from None
        return await self._finish(request, transaction, connection, redeemed.user)

    # -- the end of a successful authentication -----------------------------------------

    async def _finish(self, request: Request, transaction: LoginTransactionRecord, connection: Connection, user: User) -> Response:
        """The code is good: the login goes on from here, as after a password."""
        if user.blocked:
            raise PageError("Account blocked", "user is blocked", 401)
        transaction = await authenticate(self.services, transaction, user=user, methods=[connection.strategy], connection=connection.name)
        return await self.flow.respond(await advance(self.services, transaction, context=self.flow.context(request)))
