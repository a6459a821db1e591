"""Auth0's database-connection endpoints.

    POST /dbconnections/signup            create a user in a database connection (and queue the
                                          verification email when the connection's `verify_email`
                                          option is true; the welcome email follows verification
                                          when its `welcome_email` option is true)
    POST /dbconnections/change_password   queue a password-reset email (answers the same for unknown emails);
                                          `client_id` is optional, as in Auth0

The pages the emailed links open are in emails/pages.py.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bastion.emails.account import send_automatic_email, send_signup_emails
from bastion.emails.pages import password_fingerprint
from bastion.events import EventType, record_event
from bastion.services import Services
from bastion.storage import users as user_store
from bastion.storage.records import Connection
from bastion.tenant.users import UserConflict, WeakPassword, create_database_user, is_valid_email
from bastion.web import client_ip, json_response, read_params

__all__ = ["DbConnectionRoutes"]

CHANGE_PASSWORD_ANSWER = "We've just sent you an email to reset your password."


def _signup_error(status: int, name: str, code: str, description: str, message: str | None = None) -> Response:
    body: dict[str, Any] = {"name": name, "code": code, "description": description, "statusCode": status}
    if message:
        body["message"] = message
    return json_response(body, status)


class DbConnectionRoutes:
    def __init__(self, services: Services):
        self.services = services

    def routes(self) -> list[Route]:
        return [
            Route("/dbconnections/signup", self.signup, methods=["POST"]),
            Route("/dbconnections/change_password", self.change_password, methods=["POST"]),
        ]

    async def _database_connection(self, params: dict[str, str], *,
                                   client_required: bool = True) -> tuple[Connection | None, str | None]:
        """The database connection the request names, and the client it must be enabled for. Auth0's
        change_password makes `client_id` optional (`client_required=False`): without one, the
        connection is found by its name alone; a client_id that is given must still be known."""
        client = None
        if client_required or params.get("client_id"):
            client = await self.services.tenant.client(params.get("client_id", ""))
            if client is None:
                return None, "Unknown client_id"
        name = params.get("connection")
        if not name:
            return None, "Missing required parameter: connection"
        connection = await self.services.tenant.connection(name)
        if connection is None or connection.strategy != "auth0":
            return None, "Unknown database connection"
        if client is not None and client.client_id not in connection.enabled_clients:
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
                await send_signup_emails(self.services, session, connection=connection, user=user, client_id=params.get("client_id"))
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
        connection, problem = await self._database_connection(params, client_required=False)
        if connection is None:
            return json_response({"error": "invalid_request", "error_description": problem}, 400)
        email = params.get("email", "").strip()
        if not email:
            return json_response({"error": "invalid_request", "error_description": "Missing required parameter: email"}, 400)
        async with self.services.database.reader() as session:
            user = await user_store.find_user_by_login(session, connection=connection.name, login=email)
        if user is not None and user.email:
            async with self.services.database.transaction() as session:
                await send_automatic_email(
                    self.services, session, "reset_email", user=user, client_id=params.get("client_id") or None,
                    ticket_data={"pw": password_fingerprint(user)},
                )
                await record_event(
                    session, EventType.SUCCESS_CHANGE_PASSWORD_REQUEST, description="Change password request",
                    user_id=user.user_id, user_name=email, client_id=params.get("client_id") or None,
                    connection=connection.name, ip=client_ip(request),
                )
        return PlainTextResponse(CHANGE_PASSWORD_ANSWER)

