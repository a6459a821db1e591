"""BASTION_SMTP_TLS, _CA_FILE, _USERNAME and _PASSWORD against a real SMTP server (aiosmtpd) that
requires STARTTLS, speaks TLS from the first byte, or requires AUTH: a message goes encrypted and
authenticated as the settings say, and a server that cannot prove who it is gets nothing."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.mail import Mailer

from certificates import ca_and_server_certificate
from conftest import test_settings
from smtp_server import SmtpServer
from test_outbox import eventually, one_delivery

CREDENTIALS = ("bastion", "smtp-password-7f3a")

# aiosmtpd warns when AUTH is not tied to STARTTLS, which is what implicit TLS needs (smtp_server.py).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    return ca_and_server_certificate(tmp_path, "smtp")


@pytest.fixture
def serve(certificates) -> Iterator:
    servers: list[SmtpServer] = []

    def start(tls: str = "none", credentials: tuple[str, str] | None = None) -> SmtpServer:
        _, cert, key = certificates
        servers.append(SmtpServer(tls=tls, certificate=(cert, key), credentials=credentials).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def mailer(server: SmtpServer, tmp_path: Path, **smtp) -> Mailer:
    settings = test_settings("sqlite+aiosqlite://", tmp_path, smtp_host="127.0.0.1", smtp_port=server.port, **smtp)
    return Mailer(settings)


async def send(mailer: Mailer) -> bool:
    return await mailer.send(to="alice@example.com", subject="Hello", text="Hello Alice", html="<p>Hello Alice</p>")


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_tls_and_auth_deliver_encrypted_and_authenticated(serve, certificates, tmp_path, tls):
    server = serve(tls, credentials=CREDENTIALS)
    ca, _, _ = certificates
    sender = mailer(server, tmp_path, smtp_tls=tls, smtp_ca_file=ca, smtp_username=CREDENTIALS[0],
                    smtp_password=CREDENTIALS[1])
    assert await send(sender) is True
    assert await send(sender) is True  # the verifying context is built once and serves every delivery
    [first, second] = await server.wait_for(2)
    assert first["Subject"] == "Hello" and first.get_body(("html",)).get_content().strip() == "<p>Hello Alice</p>"
    assert server.sessions == [{"tls": True, "login": "bastion"}] * 2


async def test_without_tls_the_message_goes_in_clear(serve, tmp_path):
    server = serve("none")
    assert await send(mailer(server, tmp_path)) is True
    await server.wait_for(1)
    assert server.sessions == [{"tls": False, "login": None}]


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_a_certificate_no_trusted_ca_signed_gets_nothing(serve, tmp_path, tls):
    server = serve(tls, credentials=CREDENTIALS)
    # No BASTION_SMTP_CA_FILE: the system's CAs do not know the test CA, so the password is never sent.
    sender = mailer(server, tmp_path, smtp_tls=tls, smtp_username=CREDENTIALS[0], smtp_password=CREDENTIALS[1])
    with pytest.raises(ssl.SSLCertVerificationError):
        await send(sender)
    assert server.messages == []


async def test_starttls_is_required_when_configured(serve, tmp_path, certificates):
    server = serve("none")  # offers no STARTTLS: Bastion must not fall back to sending in clear
    with pytest.raises(smtplib.SMTPNotSupportedError):
        await send(mailer(server, tmp_path, smtp_tls="starttls", smtp_ca_file=certificates[0]))
    assert server.messages == []


async def test_a_wrong_password_is_refused(serve, certificates, tmp_path):
    server = serve("starttls", credentials=CREDENTIALS)
    sender = mailer(server, tmp_path, smtp_tls="starttls", smtp_ca_file=certificates[0], smtp_username="bastion",
                    smtp_password="not-the-password")
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        await send(sender)
    assert refused.value.smtp_code == 535 and server.messages == []


async def test_the_outbox_keeps_an_email_the_server_could_not_prove_itself_for(bastion_with, serve, certificates):
    server = serve("starttls")
    retries = {"outbox_retry_base": 0.05, "outbox_retry_max": 0.2}
    async with bastion_with(background=True, smtp_host="127.0.0.1", smtp_port=server.port, smtp_tls="starttls",
                            **retries) as app:  # no CA file: the test CA is unknown
        async with app.services.database.transaction() as session:
            await app.services.outbox.email(session, to="ops@example.com", subject="Kept", text="x", source="test")

        async def refused_twice() -> bool:
            delivery = await one_delivery(app)
            return delivery.attempts >= 2 and delivery.state == "pending"

        await eventually(refused_twice)
        assert "SSLCertVerificationError" in (await one_delivery(app)).last_error and server.messages == []

    async with bastion_with(background=True, smtp_host="127.0.0.1", smtp_port=server.port, smtp_tls="starttls",
                            smtp_ca_file=certificates[0], **retries) as app:
        async with app.services.database.transaction() as session:
            await app.services.outbox.email(session, to="ops@example.com", subject="Sent", text="x", source="test")
        [message] = await server.wait_for(1)
        assert message["Subject"] == "Sent" and server.sessions == [{"tls": True, "login": None}]


def test_a_ca_file_that_does_not_exist_stops_the_server_at_start(tmp_path):
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="smtp_ca_file"):
        test_settings("sqlite+aiosqlite://", tmp_path, smtp_ca_file=tmp_path / "missing-ca.pem")


def test_the_command_line_names_a_wrong_setting_without_a_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bastion.cli import main

    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("BASTION_SMTP_CA_FILE", str(tmp_path / "missing-ca.pem"))
    monkeypatch.setenv("BASTION_SMTP_TLS", "ssl")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "BASTION_SMTP_CA_FILE: Path does not point to a file" in result.output
    assert "BASTION_SMTP_TLS: Input should be 'none', 'starttls' or 'tls'" in result.output
