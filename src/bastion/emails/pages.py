"""The pages that emailed links open.

    GET /u/email-verification?ticket=     sets `email_verified` (Auth0's verification link), then
                                          sends the browser to the ticket's result_url with
                                          `success` and `message`, or shows the outcome
    GET|POST /u/reset-password?ticket=    choose a new password (Auth0's change-password ticket)

Both links are single use (emails/account.py). A verification link also stops working when
the user's address changes; a reset link when the password changes by other means.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.emails.account import RESET_PURPOSE, VERIFY_PURPOSE, find_ticket, send_automatic_email, use_ticket
from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.pages import Pages
from bastion.services import Services
from bastion.storage import login_attempts
from bastion.storage import users as user_store
from bastion.storage.records import OneTimeCode, User
from bastion.tenant.users import WeakPassword, apply_user_patch
from bastion.web import client_ip, read_form

__all__ = ["EmailLinkPages", "password_fingerprint"]

VERIFIED_MESSAGE = "Your email was verified. You can continue using the application."
ALREADY_VERIFIED_MESSAGE = "This account is already verified."
EXPIRED_MESSAGE = "This link is invalid, expired or was already used. Ask for a new one."


def password_fingerprint(user: User) -> str:
    """Binds a reset link to the password it replaces: once that changes, the link is dead."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:24]


def _with_query(url: str, values: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(values)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class EmailLinkPages:
    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.pages = pages

    def routes(self) -> list[Route]:
        return [
            Route("/u/email-verification", self.verify_email, methods=["GET"]),
            Route("/u/reset-password", self.reset_password, methods=["GET", "POST"]),
        ]

    # -- email verification ------------------------------------------------

    async def verify_email(self, request: Request) -> Response:
        ticket = request.query_params.get("ticket")
        async with self.services.database.transaction() as session:
            row = await use_ticket(session, VERIFY_PURPOSE, ticket)
            user = await user_store.get_user(session, user_id=str(row.data.get("user_id"))) if row else None
            if row is None or user is None or (user.email or "").lower() != (row.recipient or "").lower():
                await record_event(session, EventType.FAILED_VERIFICATION_EMAIL, description=EXPIRED_MESSAGE,
                                   user_id=user.user_id if user else None, ip=client_ip(request))
                outcome = None
            else:
                outcome = await self._mark_verified(session, user, row, request)
        if outcome is None:
            # Auth0 sends the browser back with success=false only when it can tell where it came from;
            # an unusable ticket names no result_url we could trust.
            raise PageError("Link expired", EXPIRED_MESSAGE)
        message, result_url, email = outcome
        if result_url:
            values = {"success": "true", "message": message, **({"email": email} if email else {})}
            return RedirectResponse(_with_query(result_url, values), status_code=302)
        return self.pages.render("message.html", title="Email verified", message=message)

    async def _mark_verified(self, session, user: User, row: OneTimeCode, request: Request) -> tuple[str, str | None, str | None]:
        """(message, result_url, the email for the redirect when the ticket asked to include it)."""
        result_url = row.data.get("result_url")
        email = user.email if row.data.get("include_email") else None
        if user.email_verified:
            return ALREADY_VERIFIED_MESSAGE, result_url, email
        await user_store.update_user(session, user_id=user.user_id, changes={"email_verified": True})
        await record_event(session, EventType.SUCCESS_VERIFICATION_EMAIL, description="Email verified",
                           user_id=user.user_id, user_name=user.email, client_id=row.client_id, ip=client_ip(request))
        connection = await self.services.tenant.connection(user.identities[0].connection) if user.identities else None
        if connection is not None and connection.options.get("welcome_email"):
            await send_automatic_email(self.services, session, "welcome_email", user=user, client_id=row.client_id)
        return VERIFIED_MESSAGE, result_url, email

    # -- password reset ----------------------------------------------------

    async def _reset_ticket(self, session, ticket: str | None, *, use: bool) -> tuple[OneTimeCode, User]:
        row = await (use_ticket if use else find_ticket)(session, RESET_PURPOSE, ticket)
        user = await user_store.get_user(session, user_id=str(row.data.get("user_id"))) if row else None
        if row is None or user is None or row.data.get("pw") != password_fingerprint(user):
            raise PageError("Link expired", "This password reset link is invalid, expired or was already used. Ask for a new one.")
        return row, user

    async def reset_password(self, request: Request) -> Response:
        if request.method == "GET":
            ticket = request.query_params.get("ticket")
            async with self.services.database.reader() as session:
                _row, user = await self._reset_ticket(session, ticket, use=False)
            return self.pages.render("reset_password.html", ticket=ticket, email=user.email)
        form = await read_form(request)
        ticket = form.get("ticket")
        password, confirm = form.get("password", ""), form.get("confirm", "")
        if password != confirm:
            async with self.services.database.reader() as session:
                _row, user = await self._reset_ticket(session, ticket, use=False)
            return self.pages.render("reset_password.html", status=400, ticket=ticket, email=user.email,
                                     error="The two passwords are not the same.")
        try:
            async with self.services.database.transaction() as session:
                row, user = await self._reset_ticket(session, ticket, use=True)
                patch: dict = {"password": password}
                # The ticket vouches for the address it was made for: after an email change it no
                # longer proves the new one.
                if row.data.get("mark_email_as_verified") and _same_address(row.recipient, user.email):
                    patch["email_verified"] = True
                await apply_user_patch(session, user=user, patch=patch)
                await login_attempts.clear_user_blocks(session, user_id=user.user_id)
                await record_event(
                    session, EventType.SUCCESS_CHANGE_PASSWORD, description="Password changed",
                    user_id=user.user_id, user_name=user.email, client_id=row.client_id, ip=client_ip(request),
                )
        except WeakPassword as problem:  # the transaction rolled back: the ticket still works
            async with self.services.database.reader() as session:
                _row, user = await self._reset_ticket(session, ticket, use=False)
            return self.pages.render("reset_password.html", status=400, ticket=ticket, email=user.email, error=str(problem))
        result_url = row.data.get("result_url")
        if result_url:
            values = {"success": "true", **({"email": user.email} if row.data.get("include_email") and user.email else {})}
            return RedirectResponse(_with_query(result_url, values), status_code=302)
        return self.pages.render("message.html", title="Password changed", message="Your password was changed. You can now log in with it.")


def _same_address(ticket_recipient: str | None, email: str | None) -> bool:
    return bool(ticket_recipient and email and ticket_recipient.lower() == email.lower())
