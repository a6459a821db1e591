"""A real SMTP server on loopback (aiosmtpd) that keeps what it accepts, for the email tests.

It can be stopped and started again on the same port, to play an SMTP server that is down
for a while; `refuse` makes it answer every message with a temporary failure (451).

`tls="starttls"` makes it require STARTTLS before anything else, `tls="tls"` speaks TLS from
the first byte (both with `certificate=(cert.pem, key.pem)`), and `credentials=(user, password)`
makes it require AUTH (after TLS). `sessions` records, for each accepted message, whether it
came over TLS and who had authenticated.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from pathlib import Path
from typing import Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

__all__ = ["SmtpServer", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    def __init__(self, port: int | None = None, *, tls: Literal["none", "starttls", "tls"] = "none",
                 certificate: tuple[Path, Path] | None = None, credentials: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.sessions: list[dict] = []
        self.refuse = False
        self._tls = tls
        self._certificate = certificate
        self._credentials = credentials
        self._controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self._credentials:
            return AuthResult(success=True, auth_data=data.login.decode())
        return AuthResult(success=False, handled=False)

    def _options(self) -> dict:
        options: dict = {}
        if self._tls != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._certificate)
            options.update({"ssl_context": context} if self._tls == "tls" else
                           {"tls_context": context, "require_starttls": True})
        if self._credentials:
            # aiosmtpd offers AUTH "after TLS" only after STARTTLS; over implicit TLS the whole
            # connection already is TLS, so its check is turned off there.
            options.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=self._tls != "tls")
        return options

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "451 Requested action aborted: try again later"
        self.recipients.append(list(envelope.rcpt_tos))
        over_tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append({"tls": over_tls, "login": session.auth_data if session.authenticated else None})
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def start(self) -> "SmtpServer":
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **self._options())
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
        """Bounded poll until at least `count` messages arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.messages) < count and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.messages) >= count, f"expected {count} message(s), got {len(self.messages)}"
        return self.messages

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m, r in zip(self.messages, self.recipients) if address in r]
