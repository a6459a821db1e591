"""Delivering a passwordless code or link: email through Bastion's SMTP server (mail.py),
SMS through a provider (a Twilio-compatible Messages API by default).

    SmsProvider      the interface: `await provider.send(to=..., body=...)`, DeliveryFailed on failure
    TwilioSms        POST {sms_provider_url}/2010-04-01/Accounts/{sid}/Messages.json, basic auth (sid, token),
                     form fields To, From (or MessagingServiceSid), Body

The sms connection's options are Auth0's: `twilio_sid`, `twilio_token`, `from` or
`messaging_service_sid`, and `template` (`@@password@@` or `{{ code }}` stands for the code).
The email connection's `options.email.subject` replaces the default subject (`{{ application.name }}`
stands for the application's name); the code is never in a subject line.

A code is a credential: it is never written to a log. Without BASTION_SMTP_HOST the
mailer would log the message, so a passwordless email is refused instead (DeliveryFailed).
"""

from __future__ import annotations

import logging
import smtplib
from typing import Protocol

import httpx

from bastion.emails.account import render_email
from bastion.services import Services
from bastion.storage.records import Connection

__all__ = ["DeliveryFailed", "SmsProvider", "TwilioSms", "sms_provider", "send_email_code", "send_email_link", "send_sms_code"]

log = logging.getLogger("bastion.passwordless")

DEFAULT_SMS_TEMPLATE = "Your verification code is: @@password@@"
SMS_TIMEOUT = 10.0


class DeliveryFailed(Exception):
    """The message could not be handed to the email server or the SMS provider."""


class SmsProvider(Protocol):
    async def send(self, *, to: str, body: str) -> None: ...


class TwilioSms:
    """Twilio's Messages API (and any provider speaking it)."""

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str | None = None,
        messaging_service_sid: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = (account_sid, auth_token)
        self._sender = sender
        self._service = messaging_service_sid
        self._transport = transport

    async def send(self, *, to: str, body: str) -> None:
        form = {"To": to, "Body": body}
        if self._service:
            form["MessagingServiceSid"] = self._service
        else:
            form["From"] = self._sender or ""
        try:
            async with httpx.AsyncClient(timeout=SMS_TIMEOUT, transport=self._transport) as http:
                response = await http.post(self._url, data=form, auth=self._auth)
        except httpx.HTTPError as error:
            log.warning("the SMS provider could not be reached: %s", type(error).__name__)
            raise DeliveryFailed("The SMS provider could not be reached") from None
        if response.is_success:
            return
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        message = problem.get("message") if isinstance(problem, dict) else None
        code = problem.get("code") if isinstance(problem, dict) else None
        log.warning("the SMS provider refused a message: HTTP %s, code %s", response.status_code, code)
        raise DeliveryFailed(f"{message or f'HTTP {response.status_code}'} (Code: {code if code is not None else response.status_code})")


def sms_provider(services: Services, connection: Connection) -> SmsProvider:
    """The connection's provider. Raises DeliveryFailed when its options are incomplete."""
    options = connection.options
    sid, token = options.get("twilio_sid"), options.get("twilio_token")
    sender, service = options.get("from"), options.get("messaging_service_sid")
    if not sid or not token or not (sender or service):
        raise DeliveryFailed("The sms connection needs twilio_sid, twilio_token and from (or messaging_service_sid)")
    return TwilioSms(
        base_url=services.settings.sms_provider_url, account_sid=str(sid), auth_token=str(token),
        sender=str(sender) if sender else None, messaging_service_sid=str(service) if service else None,
    )


async def send_sms_code(services: Services, connection: Connection, *, to: str, code: str) -> None:
    template = connection.options.get("template") or DEFAULT_SMS_TEMPLATE
    body = str(template).replace("@@password@@", code).replace("{{ code }}", code).replace("{{code}}", code)
    await sms_provider(services, connection).send(to=to, body=body)


async def send_email_code(services: Services, connection: Connection, *, to: str, code: str, client_name: str, lifetime: int) -> None:
    await _send_email(services, connection, "passwordless_code", to=to, client_name=client_name, code=code, lifetime=lifetime)


async def send_email_link(services: Services, connection: Connection, *, to: str, link: str, client_name: str, lifetime: int) -> None:
    await _send_email(services, connection, "passwordless_link", to=to, client_name=client_name, url=link, lifetime=lifetime)


async def _send_email(services: Services, connection: Connection, template: str, *, to: str, client_name: str, lifetime: int,
                      **values: str) -> None:
    """Sent now, not through the outbox: a code that arrives late is useless, and the person waiting
    for it is told at once that it could not be sent (they can ask again)."""
    if not services.settings.smtp_host:
        log.warning("BASTION_SMTP_HOST is not set: the passwordless email was not sent (a code is never logged)")
        raise DeliveryFailed("Email delivery is not configured")
    email = await render_email(services, template, user={"email": to}, application={"name": client_name},
                               lifetime=_minutes(lifetime), **values)
    subject = email.subject
    email_options = connection.options.get("email")
    if isinstance(email_options, dict) and isinstance(email_options.get("subject"), str) and email_options["subject"].strip():
        subject = email_options["subject"].strip().replace("{{ application.name }}", client_name)
    try:
        await services.mailer.send(to=to, subject=subject, text=email.text, html=email.html)
    except (smtplib.SMTPException, OSError) as error:
        log.warning("the SMTP server refused a passwordless email: %s", type(error).__name__)
        raise DeliveryFailed("The email could not be sent") from None


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
