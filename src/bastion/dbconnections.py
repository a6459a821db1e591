"""Auth0's database-connection endpoints, and the password reset page they lead to.

    POST /dbconnections/signup            create a user in a database connection
    POST /dbconnections/change_password   email a password-reset link (answers the same for unknown emails)
    GET|POST /u/reset-password?ticket=    the page behind that link
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.pages import Pages
from bastion.security.tickets import InvalidTicket, Tickets
from bastion.services import Services
from bastion.storage import login_attempts
from bastion.storage import users as user_store
from bastion.storage.records import Connection, User
from bastion.tenant.users import UserConflict, WeakPassword, apply_user_patch, create_database_user, is_valid_email
from bastion.web import client_ip, json_response, read_form, read_params

__all__ = ["DbConnectionRoutes"]

_RESET = "password-reset"
CHANGE_PASSWORD_ANSWER = "We've just sent you an email to reset your password."


def _signup_error(status: int, name: str, code: str, description: str, message: str | None = None) -> Response:
    body: dict[str, Any] = {"name": name, "code": code, "description": description, "statusCode": status}
    if message:
        body["message"] = message
    return json_response(body, status)


def _password_fingerprint(user: User) -> str:
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:24]


class DbConnectionRoutes:
    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.pages = pages
        self.mailer = services.mailer
        self.tickets = Tickets(services.settings.secret_key or "")

    def routes(self) -> list[Route]:
        return [
            Route("/dbconnections/signup", self.signup, methods=["POST"]),
            Route("/dbconnections/change_password", self.change_password, methods=["POST"]),
            Route("/u/reset-password", self.reset_password, methods=["GET", "POST"]),
        ]

    async def _database_connection(self, params: dict[str, str]) -> tuple[Connection | None, str | None]:
        client = await self.services.tenant.client(params.get("client_id", ""))
        if client is None:
            return None, "Unknown client_id"
        name = params.get("connection")
        if not name:
            return None, "Missing required parameter: connection"
        connection = await self.services.tenant.connection(name)
        if connection is None or connection.strategy != "auth0":
            return None, "Unknown database connection"
        if client.client_id not in connection.enabled_clients:
            return None, "The connection is not enabled for this client"
        return connection, None

    async def signup(self, request: Request) -> Response:
        params = await read_params(request)
        connection, problem = await self._database_connection(params)
        if connection is None:
            return _signup_error(400, "BadRequestError", "invalid_signup", problem or "Invalid sign up")
        if connection.options.get("disable_signup"):
            return _signup_error(403, "ForbiddenError", "operation_not_allowed", "Public signup is disabled")
        email, password = params.get("email", "").strip(), params.get("password", "")
        if not is_valid_email(email):
            return _signup_error(400, "BadRequestError", "invalid_signup", "Missing or invalid email")
        if len(params.get("username") or "") > 128:
            return _signup_error(400, "BadRequestError", "invalid_signup", "The username is longer than 128 characters")
        metadata: dict = {}
        if params.get("user_metadata"):
            try:
                metadata = json.loads(params["user_metadata"])
            except ValueError:
                return _signup_error(400, "BadRequestError", "invalid_signup", "user_metadata must be an object")
            if not isinstance(metadata, dict):
                return _signup_error(400, "BadRequestError", "invalid_signup", "user_metadata must be an object")
        profile = {k: params[k] for k in ("given_name", "family_name", "name", "nickname", "picture") if params.get(k)}
        try:
            async with self.services.database.transaction() as session:
                user = await create_database_user(
                    session, connection=connection.name, email=email, password=password,
                    username=params.get("username") or None, user_metadata=metadata, profile=profile,
                )
                await record_event(
                    session, EventType.SUCCESS_SIGNUP, description="Successful signup", user_id=user.user_id,
                    user_name=email, client_id=params.get("client_id"), connection=connection.name, ip=client_ip(request),
                )
        except WeakPassword as error:
            return _signup_error(400, "PasswordStrengthError", "invalid_password", str(error), "Password is too weak")
        except UserConflict:
            return _signup_error(400, "BadRequestError", "invalid_signup", "Invalid sign up")
        body = {"_id": user.user_id.split("|", 1)[1], "email": user.email, "email_verified": user.email_verified}
        for key in ("username", "given_name", "family_name", "name", "nickname", "picture"):
            if getattr(user, key) and (key == "username" or key in profile):
                body[key] = getattr(user, key)
        if metadata:
            body["user_metadata"] = metadata
        return json_response(body)

    async def change_password(self, request: Request) -> Response:
        params = await read_params(request)
        connection, problem = await self._database_connection(params)
        if connection is None:
            return json_response({"error": "invalid_request", "error_description": problem}, 400)
        email = params.get("email", "").strip()
        if not email:
            return json_response({"error": "invalid_request", "error_description": "Missing required parameter: email"}, 400)
        async with self.services.database.reader() as session:
            user = await user_store.find_user_by_login(session, connection=connection.name, login=email)
        if user is not None and user.email:
            ticket = self.tickets.issue(
                _RESET, {"sub": user.user_id, "pw": _password_fingerprint(user)},
                ttl=self.services.settings.password_reset_ticket_lifetime,
            )
            link = f"{self.services.settings.issuer}/u/reset-password?{urlencode({'ticket': ticket})}"
            await self.mailer.send(
                to=user.email,
                subject="Reset your password",
                text=f"Someone asked to reset the password of your account.\n\nTo choose a new password, open:\n{link}\n\n"
                "If it was not you, ignore this email: your password stays as it is.",
            )
            async with self.services.database.transaction() as session:
                await record_event(
                    session, EventType.SUCCESS_CHANGE_PASSWORD_REQUEST, description="Change password request",
                    user_id=user.user_id, user_name=email, client_id=params.get("client_id"),
                    connection=connection.name, ip=client_ip(request),
                )
        return PlainTextResponse(CHANGE_PASSWORD_ANSWER)

    async def _ticket_user(self, ticket: str | None) -> User:
        invalid = PageError("Link expired", "This password reset link is invalid, expired or was already used. Ask for a new one.")
        try:
            payload = self.tickets.open(_RESET, ticket)
        except InvalidTicket:
            raise invalid from None
        async with self.services.database.reader() as session:
            user = await user_store.get_user(session, user_id=str(payload.get("sub")))
        if user is None or payload.get("pw") != _password_fingerprint(user):
            raise invalid
        return user

    async def reset_password(self, request: Request) -> Response:
        if request.method == "GET":
            ticket = request.query_params.get("ticket")
            user = await self._ticket_user(ticket)
            return self.pages.render("reset_password.html", ticket=ticket, email=user.email)
        form = await read_form(request)
        ticket = form.get("ticket")
        user = await self._ticket_user(ticket)
        password, confirm = form.get("password", ""), form.get("confirm", "")
        error = None
        if password != confirm:
            error = "The two passwords are not the same."
        else:
            try:
                async with self.services.database.transaction() as session:
                    await apply_user_patch(session, user=user, patch={"password": password})
                    await login_attempts.clear_user_blocks(session, user_id=user.user_id)
                    await record_event(
                        session, EventType.SUCCESS_CHANGE_PASSWORD, description="Password changed",
                        user_id=user.user_id, user_name=user.email, ip=client_ip(request),
                    )
            except WeakPassword as problem:
                error = str(problem)
        if error:
            return self.pages.render("reset_password.html", status=400, ticket=ticket, email=user.email, error=error)
        return self.pages.render("message.html", title="Password changed", message="Your password was changed. You can now log in with it.")
