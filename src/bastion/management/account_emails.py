"""Auth0's endpoints for account emails and their links, and Bastion's view of the outbox.

    POST /jobs/verification-email        queue the verification email (a job: its id is the outbox entry's);
                                         400 while the verify_email template is disabled
    GET  /jobs/{id}                      the job's status: pending, completed or failed
    POST /tickets/email-verification     a verification link, not sent: {"ticket": url}
    POST /tickets/password-change        a password reset link, not sent: {"ticket": url}
    GET  /deliveries                     Bastion: the outbox (emails, rules' queued requests), newest first
    GET  /deliveries/{id}                Bastion: one entry and what became of it
    POST /deliveries/{id}/retry          Bastion: another round of attempts for a failed entry
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.emails.account import RESET_PURPOSE, VERIFY_PURPOSE, issue_ticket, send_account_email, template_enabled
from bastion.emails.pages import password_fingerprint
from bastion.errors import ManagementError
from bastion.events import EventType, record_event
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.outbox import delivery_json
from bastion.security.handles import new_id
from bastion.services import Services
from bastion.storage import connections as connection_store
from bastion.storage import deliveries as delivery_store
from bastion.storage import users as user_store
from bastion.storage.records import Delivery, User
from bastion.web import client_ip

router = APIRouter()

_NO_USER = ManagementError(404, "The user does not exist.", "inexistent_user")
_JOB_STATUS = {"pending": "pending", "sending": "pending", "sent": "completed", "logged": "completed", "failed": "failed"}
MAX_TICKET_TTL = 30 * 86400


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identity(_Body):
    user_id: str
    provider: str


class VerificationEmailJob(_Body):
    user_id: str = Field(min_length=1)
    client_id: str | None = None
    identity: Identity | None = None
    organization_id: str | None = None


class EmailVerificationTicket(_Body):
    user_id: str = Field(min_length=1)
    result_url: str | None = None
    client_id: str | None = None
    ttl_sec: int | None = Field(None, ge=0, le=MAX_TICKET_TTL)
    includeEmailInRedirect: bool = False
    identity: Identity | None = None
    organization_id: str | None = None


class PasswordTicketIdentity(Identity):
    """Auth0's ChangePasswordTicketIdentity: which of the user's database identities (its own, or
    a linked secondary's) the new password is for."""

    connection_id: str | None = None


class PasswordChangeTicket(_Body):
    user_id: str | None = None
    email: str | None = None
    connection_id: str | None = None
    identity: PasswordTicketIdentity | None = None
    result_url: str | None = None
    client_id: str | None = None
    ttl_sec: int | None = Field(None, ge=0, le=MAX_TICKET_TTL)
    mark_email_as_verified: bool = False
    includeEmailInRedirect: bool = False
    organization_id: str | None = None


def job_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "type": "verification_email",
        "status": _JOB_STATUS[delivery.state],
        "created_at": delivery_json(delivery)["created_at"],
    }


async def _user_with_email(session, user_id: str) -> User:
    user = await user_store.get_user(session, user_id=user_id)
    if user is None or user.linked_to is not None:
        raise _NO_USER
    if not user.email:
        raise ManagementError(400, "The user does not have an email address.", "invalid_body")
    return user


async def refuse_disabled_template(services: Services, template: str) -> None:
    """An explicit request for an email (the verification job, `verify_email: true`) whose template
    the operator disabled. Auth0 sends nothing then ("You must have the Status toggle enabled");
    Bastion says so instead of answering as if it had queued the email, so the caller knows
    nothing will arrive. (The emails Bastion sends by itself skip a disabled template silently.)"""
    if not await template_enabled(services, template):
        raise ManagementError(400, f"The {template} email template is disabled: no email would be sent. Enable it with "
                              f"PATCH /api/v2/email-templates/{template} {{\"enabled\": true}}.", "email_template_disabled")


def _result_url(url: str | None) -> str | None:
    if url is not None and not url.startswith(("https://", "http://")):
        raise ManagementError(400, "Payload validation error: 'Object didn't pass validation for format absolute-uri-or-empty: "
                              f"{url}' on property result_url.", "invalid_body")
    return url or None


# -- jobs --------------------------------------------------------------------


@router.post("/jobs/verification-email", status_code=201)
async def post_verification_email_job(request: Request, body: VerificationEmailJob, caller: Caller = Depends(require("update:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        user = await _user_with_email(session, body.user_id)
        if body.client_id and await services.tenant.client(body.client_id) is None:
            raise ManagementError(404, "The client does not exist.", "inexistent_client")
        await refuse_disabled_template(services, "verify_email")
        delivery = await send_account_email(services, session, "verify_email", user=user, client_id=body.client_id,
                                            source="verification_job", delivery_id=new_id("job_", 20))
        await record_event(session, EventType.SUCCESS_VERIFICATION_EMAIL_REQUEST, description="Verification email queued",
                           user_id=user.user_id, user_name=user.email, client_id=body.client_id, ip=client_ip(request))
        await audit(session, caller, "Send a verification email", request, user_id=user.user_id, job_id=delivery.id)
    return job_json(delivery)


@router.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str, caller: Caller = Depends(require("create:users", "read:users"))):
    services = services_of(request)
    async with services.database.reader() as session:
        delivery = await delivery_store.get_delivery(session, id=job_id)
    if delivery is None or not job_id.startswith("job_"):
        raise ManagementError(404, "The job does not exist.", "inexistent_job")
    return job_json(delivery)


# -- tickets -----------------------------------------------------------------


@router.post("/tickets/email-verification", status_code=201)
async def post_email_verification_ticket(request: Request, body: EmailVerificationTicket,
                                         caller: Caller = Depends(require("create:user_tickets"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        user = await _user_with_email(session, body.user_id)
        ticket = await issue_ticket(
            services, session, VERIFY_PURPOSE, user=user, client_id=body.client_id, result_url=_result_url(body.result_url),
            ttl=body.ttl_sec or services.settings.email_verification_ticket_lifetime, include_email=body.includeEmailInRedirect,
        )
        await audit(session, caller, "Create an email verification ticket", request, user_id=user.user_id)
    return {"ticket": ticket}


@router.post("/tickets/password-change", status_code=201)
async def post_password_change_ticket(request: Request, body: PasswordChangeTicket,
                                      caller: Caller = Depends(require("create:user_tickets"))):
    services = services_of(request)
    _check_password_ticket_fields(body)
    async with services.database.transaction() as session:
        user = await _password_ticket_user(session, body)
        if user.password_hash is None:
            raise ManagementError(400, "The user has no password: only database users can change it.", "invalid_body")
        ticket = await issue_ticket(
            services, session, RESET_PURPOSE, user=user, client_id=body.client_id, result_url=_result_url(body.result_url),
            ttl=body.ttl_sec or services.settings.password_reset_ticket_lifetime,
            pw=password_fingerprint(user), mark_email_as_verified=body.mark_email_as_verified,
            include_email=body.includeEmailInRedirect,
        )
        await audit(session, caller, "Create a password change ticket", request, user_id=user.user_id)
    return {"ticket": ticket}


def _invalid(message: str) -> ManagementError:
    return ManagementError(400, f"Payload validation error: {message}", "invalid_body")


def _check_password_ticket_fields(body: PasswordChangeTicket) -> None:
    """Auth0's documented exclusions: the user is named one way only (`user_id`, or `email` with
    `connection_id`), and `result_url` (classic login) is not used with `client_id` or
    `organization_id` (where the application's login route follows the reset instead)."""
    if body.user_id is not None and (body.email is not None or body.connection_id is not None):
        raise _invalid("'email' and 'connection_id' cannot be used with 'user_id'.")
    if body.result_url is not None and (body.client_id is not None or body.organization_id is not None):
        raise _invalid("'result_url' cannot be used with 'client_id' or 'organization_id'.")
    if body.identity is not None and body.user_id is None:
        raise _invalid("'identity' requires 'user_id'.")


async def _password_ticket_user(session, body: PasswordChangeTicket) -> User:
    """Auth0: `user_id` (with `identity`, one of its database identities), or `email` with `connection_id`."""
    if body.user_id:
        user = await user_store.get_user(session, user_id=body.user_id)
        if user is not None and user.linked_to is None and body.identity is not None:
            return await _identity_user(session, user, body.identity)
    elif body.email and body.connection_id:
        connection = await _connection_name(session, body.connection_id)
        user = await user_store.find_user_by_login(session, connection=connection, login=body.email)
    else:
        raise ManagementError(400, "Payload validation error: 'Missing required property: user_id' (or email and connection_id).",
                              "invalid_body")
    if user is None or user.linked_to is not None:
        raise _NO_USER
    return user


async def _connection_name(session, connection_id: str) -> str:
    connection = await connection_store.get_connection(session, id=connection_id)
    if connection is None:
        raise ManagementError(404, "The connection does not exist.", "inexistent_connection")
    return connection.name


async def _identity_user(session, user: User, identity: PasswordTicketIdentity) -> User:
    """The user holding `identity`'s password: `user` itself for its own identity, the linked
    secondary for one that came with linking (docs/identities.md), whose password is its own."""
    if identity.provider != "auth0":
        raise _invalid("'identity.provider' must be 'auth0': only database identities have a password.")
    connection = await _connection_name(session, identity.connection_id) if identity.connection_id else None
    for held in user.identities:
        if held.provider == "auth0" and identity.user_id in (held.external_id, f"auth0|{held.external_id}") \
                and connection in (None, held.connection):
            holder = await user_store.get_user(session, user_id=held.linked_user_id or user.user_id)
            if holder is not None:
                return holder
    raise ManagementError(404, "The user has no such identity.", "inexistent_identity")


# -- the outbox ----------------------------------------------------------------


@router.get("/deliveries")
async def list_deliveries(
    request: Request, params: PageParams = Depends(page_params),
    state: str | None = Query(None, pattern="^(pending|sending|sent|logged|failed)$"),
    kind: str | None = Query(None, pattern="^(email|http)$"), user_id: str | None = Query(None, max_length=128),
    caller: Caller = Depends(require("read:logs")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await delivery_store.list_deliveries(session, page=params.page, per_page=params.per_page, state=state,
                                                    kind=kind, user_id=user_id)
    return list_body("deliveries", page, [delivery_json(d) for d in page.items], params)


@router.get("/deliveries/{delivery_id}")
async def get_delivery(request: Request, delivery_id: str, caller: Caller = Depends(require("read:logs"))):
    services = services_of(request)
    async with services.database.reader() as session:
        delivery = await delivery_store.get_delivery(session, id=delivery_id)
    if delivery is None:
        raise ManagementError(404, "The delivery does not exist.", "inexistent_delivery")
    return delivery_json(delivery)


@router.post("/deliveries/{delivery_id}/retry")
async def retry_delivery(request: Request, delivery_id: str, caller: Caller = Depends(require("update:logs"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        delivery = await delivery_store.requeue_delivery(session, id=delivery_id, max_attempts=services.settings.outbox_max_attempts)
        if delivery is None:
            if await delivery_store.get_delivery(session, id=delivery_id) is None:
                raise ManagementError(404, "The delivery does not exist.", "inexistent_delivery")
            raise ManagementError(409, "Only a failed delivery can be retried.", "delivery_not_failed")
        await audit(session, caller, "Retry a delivery", request, delivery_id=delivery_id)
    services.background.wake("outbox")
    return delivery_json(delivery)
