"""The emails about a user's account, and the single-use links they carry.

    send_account_email(services, session, "verify_email", user=..., ...)   -> Delivery (in the outbox)
    issue_ticket(services, session, purpose, user=..., ...)                -> the link's URL
    find_ticket / use_ticket                                               -> the ticket behind a link

Templates (emails/templates.py): `verify_email` (a link that sets `email_verified`),
`welcome_email`, `reset_email` (a link to the password reset page), `enrollment_email`
(a second factor was added). Every email is queued in the caller's transaction.

A ticket is a row of `one_time_codes` (purpose `email-verification` or `password-change`):
the link carries `<row id>.<secret>`, the row keeps only the secret's SHA-256 digest, an
expiry and what the ticket was issued with (result_url, client, ...); using it is a
compare-and-set on `used_at`, so a link works once, on any server process.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.emails.templates import RenderedEmail, lifetime_in_words
from bastion.security.handles import digest, new_handle, new_id, same_digest
from bastion.services import Services
from bastion.storage import one_time_codes as code_store
from bastion.storage.records import Connection, Delivery, OneTimeCode, User
from bastion.tenant.tenant_settings import tenant_settings

__all__ = [
    "VERIFY_PURPOSE", "RESET_PURPOSE", "send_account_email", "issue_ticket", "find_ticket", "use_ticket", "render_email",
    "send_signup_emails", "send_automatic_email", "template_enabled",
]

log = logging.getLogger("bastion.emails")

VERIFY_PURPOSE = "email-verification"
RESET_PURPOSE = "password-change"
_LINK_PATHS = {VERIFY_PURPOSE: "/u/email-verification", RESET_PURPOSE: "/u/reset-password"}
_TEMPLATE_PURPOSE = {"verify_email": VERIFY_PURPOSE, "reset_email": RESET_PURPOSE}


def _user_values(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id, "email": user.email, "name": user.name, "nickname": user.nickname,
        "given_name": user.given_name, "family_name": user.family_name,
        "user_metadata": user.user_metadata, "app_metadata": user.app_metadata,
    }


async def render_email(services: Services, template: str, *, user: User | dict | None = None, client_id: str | None = None,
                       **values: Any) -> RenderedEmail:
    """A template rendered with the tenant's names, the user and the application (`values` may give
    `application` itself, and `user` may be a plain dict, for an email to someone not yet a user)."""
    tenant = await tenant_settings(services)
    stored = await services.tenant.tenant_settings()
    application = None
    if client_id:
        client = await services.tenant.client(client_id)
        if client is not None:
            application = {"name": client.name, "client_id": client.client_id, "clientID": client.client_id}
    context = {
        "friendly_name": tenant.friendly_name, "support_email": stored.get("support_email") or "",
        "support_url": stored.get("support_url") or "", "application": application or {},
        "user": _user_values(user) if isinstance(user, User) else dict(user or {}), **values,
    }
    custom = await services.tenant.email_template(template)
    if custom is not None and custom.body:
        try:
            return services.email_templates.render_string(custom.subject or "", custom.body, **context)
        except Exception:  # stored before it was checked, or refused by the sandbox: the email still goes
            log.exception("the stored email template %r failed; Bastion's own was used", template)
    return services.email_templates.render(template, **context)


async def issue_ticket(
    services: Services, session: AsyncSession, purpose: str, *, user: User, ttl: int, client_id: str | None = None,
    result_url: str | None = None, **data: Any,
) -> str:
    secret = new_handle()
    row = await code_store.insert_code(
        session, id=new_id("tkt_", 20), purpose=purpose, connection=None, recipient=user.email, client_id=client_id,
        code_digest=digest(secret), data={"user_id": user.user_id, "result_url": result_url, **data},
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=ttl),
    )
    return f"{services.settings.issuer}{_LINK_PATHS[purpose]}?{urlencode({'ticket': f'{row.id}.{secret}'})}"


async def find_ticket(session: AsyncSession, purpose: str, ticket: str | None) -> OneTimeCode | None:
    """The live ticket a link carries: None when it is unknown, forged, used or expired."""
    if not ticket or len(ticket) > 200 or "." not in ticket:
        return None
    row_id, _, secret = ticket.partition(".")
    row = await code_store.get_code(session, id=row_id)
    if row is None or row.purpose != purpose or not same_digest(secret, row.code_digest):
        return None
    if row.used_at is not None or row.expires_at <= datetime.now(timezone.utc):
        return None
    return row


async def use_ticket(session: AsyncSession, purpose: str, ticket: str | None) -> OneTimeCode | None:
    """Find the ticket and mark it used, once: None when it was not live (or another request used it first)."""
    row = await find_ticket(session, purpose, ticket)
    if row is None or not await code_store.consume_code(session, id=row.id):
        return None
    return row


async def send_account_email(
    services: Services, session: AsyncSession, template: str, *, user: User, source: str | None = None,
    client_id: str | None = None, result_url: str | None = None, ttl: int | None = None,
    rules_execution_id: str | None = None, delivery_id: str | None = None, ticket_data: dict[str, Any] | None = None,
    **values: Any,
) -> Delivery:
    """Queue one of the account emails to `user` (who must have an email address); the link of
    `verify_email` and `reset_email` is a new ticket carrying `result_url` and `ticket_data`.
    The operator's stored template (/api/v2/email-templates) gives the sender, and the link's
    default result URL and lifetime."""
    if not user.email:
        raise ValueError("the user has no email address")
    custom = await services.tenant.email_template(template)
    purpose = _TEMPLATE_PURPOSE.get(template)
    if purpose is not None:
        settings = services.settings
        ttl = ttl or (custom.url_lifetime_in_seconds if custom else None) or (
            settings.email_verification_ticket_lifetime if purpose == VERIFY_PURPOSE else settings.password_reset_ticket_lifetime)
        result_url = result_url or (custom.result_url if custom else None)
        if custom is not None and custom.include_email_in_redirect:
            ticket_data = {"include_email": True, **(ticket_data or {})}
        values["url"] = await issue_ticket(services, session, purpose, user=user, ttl=ttl, client_id=client_id,
                                           result_url=result_url, **(ticket_data or {}))
        values["lifetime"] = lifetime_in_words(ttl)
    email = await render_email(services, template, user=user, client_id=client_id, **values)
    return await services.outbox.email(
        session, to=user.email, subject=email.subject, text=email.text, html=email.html, source=source or template,
        sender=custom.sender if custom and custom.sender else None,
        template=template, user_id=user.user_id, rules_execution_id=rules_execution_id, id=delivery_id,
    )


async def send_signup_emails(services: Services, session: AsyncSession, *, connection: Connection, user: User,
                             client_id: str | None) -> None:
    """What a database connection sends a new user: the verification email when its `verify_email`
    option is true (the welcome email then follows verification, emails/pages.py), else the
    welcome email at once when its `welcome_email` option is true."""
    if not user.email:
        return
    if not user.email_verified and connection.options.get("verify_email"):
        await send_automatic_email(services, session, "verify_email", user=user, client_id=client_id)
    elif connection.options.get("welcome_email"):
        await send_automatic_email(services, session, "welcome_email", user=user, client_id=client_id)


async def template_enabled(services: Services, template: str) -> bool:
    """False when the operator disabled the template (`enabled: false` in /api/v2/email-templates).
    Bastion's own templates, never stored, are enabled."""
    custom = await services.tenant.email_template(template)
    return custom is None or custom.enabled


async def send_automatic_email(services: Services, session: AsyncSession, template: str, *, user: User,
                               **options: Any) -> Delivery | None:
    """An email Bastion sends by itself (signup, verification, reset, enrolment): not when the
    operator disabled its template. (An explicit request for one, the verification job or
    `verify_email: true`, is refused instead: management/account_emails.py.)"""
    if not await template_enabled(services, template):
        return None
    return await send_account_email(services, session, template, user=user, **options)
