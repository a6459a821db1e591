"""The two passwordless steps every edge shares (API, universal-login pages, token grant):

    send_passwordless     issue a code or link secret, deliver it, log `cls` (email) or `cs` (SMS);
                          a delivery failure logs `fn`
    redeem_passwordless   verify the code, then find or create the user; a wrong code logs the
                          edge's failure event (`f` on the pages, `fepotpft` at /oauth/token);
                          a first login logs `ss`

Log events name the recipient and the connection, never the code or the link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bastion.events import EventType, record_event
from bastion.login.pipeline import LoginContext
from bastion.passwordless.accounts import SignupDisabled, find_or_create_user
from bastion.passwordless.codes import CodeRejected, IssuedCode, Send, TooManyCodes, issue_code, verify_code
from bastion.passwordless.senders import DeliveryFailed, send_email_code, send_email_link, send_sms_code
from bastion.services import Services
from bastion.storage.records import Client, Connection, User

__all__ = [
    "CODE_LINK_SENT",
    "CODE_SENT",
    "FAILED_NOTIFICATION",
    "FAILED_OTP_EXCHANGE",
    "Redeemed",
    "send_passwordless",
    "redeem_passwordless",
    "wrong_code_message",
    "CodeRejected",
    "DeliveryFailed",
    "SignupDisabled",
    "TooManyCodes",
]

# Auth0's log event type codes for passwordless logins.
CODE_LINK_SENT = "cls"  # Code/Link Sent: passwordless login code/link has been sent (email)
CODE_SENT = "cs"  # Code Sent: passwordless login code has been sent (SMS)
FAILED_NOTIFICATION = "fn"  # Failed Sending Notification
FAILED_OTP_EXCHANGE = "fepotpft"  # Failed exchange of Passwordless OTP for Access Token


@dataclass(frozen=True)
class Redeemed:
    user: User
    created: bool


def wrong_code_message(strategy: str) -> str:
    """Auth0's message for a wrong, expired or used code."""
    return "Wrong email or verification code." if strategy == "email" else "Wrong phone number or verification code."


async def send_passwordless(
    services: Services,
    *,
    connection: Connection,
    client: Client,
    recipient: str,
    send: Send,
    context: LoginContext,
    link: Callable[[IssuedCode], str] | None = None,
    transaction_id: str | None = None,
) -> IssuedCode:
    """Issue and deliver a code (or, with `link`, the URL `link(issued)` builds). Raises TooManyCodes, DeliveryFailed."""
    issued = await issue_code(
        services, connection=connection.name, recipient=recipient, client_id=client.client_id, send=send,
        transaction_id=transaction_id,
    )
    lifetime = services.settings.passwordless_code_lifetime
    try:
        if connection.strategy == "sms":
            await send_sms_code(services, connection, to=recipient, code=issued.secret)
        elif send == "link":
            assert link is not None
            await send_email_link(services, connection, to=recipient, link=link(issued), client_name=client.name, lifetime=lifetime)
        else:
            await send_email_code(services, connection, to=recipient, code=issued.secret, client_name=client.name, lifetime=lifetime)
    except DeliveryFailed as failure:
        await _event(services, FAILED_NOTIFICATION, str(failure), connection, client, recipient, context, send=send)
        raise
    kind = "link" if send == "link" else "code"
    await _event(
        services, CODE_SENT if connection.strategy == "sms" else CODE_LINK_SENT,
        f"Passwordless login {kind} has been sent", connection, client, recipient, context, send=send,
    )
    return issued


async def redeem_passwordless(
    services: Services,
    *,
    connection: Connection,
    client: Client,
    recipient: str,
    code: str,
    send: Send,
    context: LoginContext,
    failure_event: str,
    transaction_id: str | None = None,
) -> Redeemed:
    """The user the code logs in (created on a first login). Raises CodeRejected, SignupDisabled."""
    try:
        await verify_code(
            services, connection=connection.name, recipient=recipient, code=code, client_id=client.client_id,
            send=send, transaction_id=transaction_id,
        )
    except CodeRejected as rejected:
        description = wrong_code_message(connection.strategy)
        if rejected.reason == "exhausted":
            description = "You've reached the maximum number of attempts. Please try to login again."
        await _event(services, failure_event, description, connection, client, recipient, context, send=send, reason=rejected.reason)
        raise
    try:
        user, created = await find_or_create_user(services, connection, recipient)
    except SignupDisabled:
        await _event(services, EventType.FAILED_SIGNUP, "Public signup is disabled", connection, client, recipient, context, send=send)
        raise
    if created:
        await _event(services, EventType.SUCCESS_SIGNUP, "Successful signup", connection, client, recipient, context, user=user, send=send)
    return Redeemed(user=user, created=created)


async def _event(
    services: Services, type: str, description: str, connection: Connection, client: Client, recipient: str,
    context: LoginContext, *, user: User | None = None, **details: str,
) -> None:
    async with services.database.transaction() as session:
        await record_event(
            session, type, description=description, client_id=client.client_id, client_name=client.name,
            connection=connection.name, user_id=user.user_id if user else None, user_name=recipient,
            ip=context.ip, user_agent=context.user_agent,
            details={"strategy": connection.strategy, **details},
        )
