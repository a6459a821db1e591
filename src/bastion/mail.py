"""Sending one email through the configured SMTP server (BASTION_SMTP_*).

    Mailer.message(...)   builds the message: text, optional HTML alternative, a Message-ID
    Mailer.send(...)      hands it to the SMTP server now (raises smtplib.SMTPException or OSError)

Most email goes through the outbox (outbox.py), which retries what could not be sent.
Passwordless codes are sent directly: a code that arrives late is useless, so the person
asking is told at once instead.

Without BASTION_SMTP_HOST, in development, `send` writes the message to the server log
instead and returns False: the demo and a fresh installation read their links there. In
production it never does: a verification or reset link in an email is a credential, and
server logs are read by more people, and kept longer, than a mailbox. It logs only the
recipient and the subject and raises SmtpNotConfigured (an smtplib.SMTPException), which the
outbox treats as an SMTP server it could not reach: the entry stays queued and is retried
(BASTION_OUTBOX_MAX_ATTEMPTS), so the email goes out if BASTION_SMTP_HOST is set in time, and
can be retried by hand after that (`bastion outbox retry`).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import anyio.to_thread

from bastion.settings import Settings

__all__ = ["Mailer", "SmtpNotConfigured"]

log = logging.getLogger("bastion.mail")

SMTP_TIMEOUT = 10


class SmtpNotConfigured(smtplib.SMTPException):
    """Production without BASTION_SMTP_HOST: nothing was sent, and nothing of the body logged.
    An SMTPException so that whoever sends treats it as a server it could not reach (and retries)."""


class Mailer:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._context: ssl.SSLContext | None = None

    @property
    def configured(self) -> bool:
        return bool(self._settings.smtp_host)

    def message(
        self, *, to: str, subject: str, text: str, html: str | None = None, sender: str | None = None,
        message_id: str | None = None,
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = sender or self._settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        # A stable Message-ID (the outbox entry's) lets a receiving server drop a duplicate if an
        # attempt is repeated after the server accepted it but before Bastion could record that.
        message["Message-ID"] = f"<{message_id}@bastion>" if message_id else make_msgid(domain="bastion")
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
        return message

    async def send(self, *, to: str, subject: str, text: str, html: str | None = None, sender: str | None = None,
                   message_id: str | None = None) -> bool:
        """Send now; True when the SMTP server accepted it, False when it was only logged (no server,
        in development). Raises smtplib.SMTPException (SmtpNotConfigured without a server in
        production) or OSError."""
        message = self.message(to=to, subject=subject, text=text, html=html, sender=sender, message_id=message_id)
        if not self.configured:
            if self._settings.environment == "production":
                log.error("BASTION_SMTP_HOST is not set; an email to %s (%r) was not sent (in production its body is never logged)",
                          to, subject)
                raise SmtpNotConfigured("BASTION_SMTP_HOST is not set")
            log.warning("BASTION_SMTP_HOST is not set; this email was not sent:\nTo: %s\nSubject: %s\n\n%s", to, subject, text)
            return False
        await anyio.to_thread.run_sync(self._deliver, message)
        return True

    def _verifying_context(self) -> ssl.SSLContext:
        """Verifies the server's certificate and name, against BASTION_SMTP_CA_FILE when set, else
        the system's CAs; built once (loading the system's CAs costs milliseconds)."""
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self._settings.smtp_ca_file)
        return self._context

    def _deliver(self, message: EmailMessage) -> None:
        s = self._settings
        context = self._verifying_context() if s.smtp_tls != "none" else None
        smtp_class = smtplib.SMTP_SSL if s.smtp_tls == "tls" else smtplib.SMTP
        kwargs = {"context": context} if s.smtp_tls == "tls" else {}
        with smtp_class(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT, **kwargs) as smtp:
            if s.smtp_tls == "starttls":
                smtp.starttls(context=context)
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            smtp.send_message(message)
