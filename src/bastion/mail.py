"""Sending email through the configured SMTP server (BASTION_SMTP_*).

Without BASTION_SMTP_HOST (development), the message is written to the server log
instead, so a developer can follow the link. The persisted outbox with retries
comes with the email integrations.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

import anyio.to_thread

from bastion.settings import Settings

__all__ = ["Mailer"]

log = logging.getLogger("bastion.mail")


class Mailer:
    def __init__(self, settings: Settings):
        self._settings = settings

    async def send(self, *, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self._settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        if not self._settings.smtp_host:
            log.warning("BASTION_SMTP_HOST is not set; this email was not sent:\nTo: %s\nSubject: %s\n\n%s", to, subject, text)
            return
        await anyio.to_thread.run_sync(self._deliver, message)

    def _deliver(self, message: EmailMessage) -> None:
        s = self._settings
        context = ssl.create_default_context()
        smtp_class = smtplib.SMTP_SSL if s.smtp_tls == "tls" else smtplib.SMTP
        kwargs = {"context": context} if s.smtp_tls == "tls" else {}
        with smtp_class(s.smtp_host, s.smtp_port, timeout=10, **kwargs) as smtp:
            if s.smtp_tls == "starttls":
                smtp.starttls(context=context)
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            smtp.send_message(message)
