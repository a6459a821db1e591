"""Account emails through the outbox, asserted on what a real SMTP server (aiosmtpd) received:
verification on signup and its single-use link, the welcome email after it, Auth0's
verification job and tickets, the reset email, the operator's templates, and the enrolment
notice; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from conftest import PASSWORD, Bastion, form_field

LINK = re.compile(r"https://bastion\.test(/u/(?:email-verification|reset-password)\?ticket=[\w.%-]+)")
pytestmark = pytest.mark.postgres


@pytest.fixture
async def app(bastion_with, database_url, smtp_server):
    async with bastion_with(database_url=database_url, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                            outbox_retry_base=0.05, outbox_retry_max=0.2) as bastion:
        yield bastion


async def set_connection_options(app: Bastion, **options) -> None:
    [connection] = (await app.management("GET", "/connections", params={"name": DEFAULT_CONNECTION})).json()
    response = await app.management("PATCH", f"/connections/{connection['id']}", json={"options": {**connection["options"], **options}})
    assert response.status_code == 200, response.text
    app.services.tenant.invalidate()


def link_in(message) -> str:
    text = message.get_body(("plain",)).get_content()
    match = LINK.search(text)
    assert match, text
    html = message.get_body(("html",)).get_content()
    assert match.group(0).replace("&", "&amp;") in html  # the HTML part carries the same link
    return match.group(1)


async def signup(app: Bastion, client: dict, email: str = "bob@example.com") -> dict:
    response = await app.http.post("/dbconnections/signup", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


async def user_of(app: Bastion, user_id: str) -> dict:
    response = await app.management("GET", f"/users/{user_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_signup_sends_a_verification_link_that_verifies_once_then_the_welcome_email(app, smtp_server):
    await set_connection_options(app, verify_email=True, welcome_email=True)
    client = await app.create_client(name="Shop")
    body = await signup(app, client)
    user_id = f"auth0|{body['_id']}"
    [message] = await smtp_server.wait_for(1)
    assert smtp_server.recipients == [["bob@example.com"]]
    assert message["Subject"] == "Verify your email address for Shop"
    assert message["From"] == app.settings.smtp_from
    link = link_in(message)
    assert not (await user_of(app, user_id))["email_verified"]

    page = await app.http.get(link)
    assert page.status_code == 200 and "Your email was verified" in page.text
    assert (await user_of(app, user_id))["email_verified"] is True
    [_, welcome] = await smtp_server.wait_for(2)
    assert welcome["Subject"] == "Welcome to Shop" and "bob@example.com" in welcome.get_body(("plain",)).get_content()

    again = await app.http.get(link)
    assert again.status_code == 400 and "Link expired" in again.text
    types = [e["type"] for e in (await app.management("GET", f"/users/{user_id}/logs")).json()]
    assert "sv" in types and "ss" in types


async def test_signup_sends_nothing_unless_the_connection_asks(app, smtp_server):
    client = await app.create_client()
    await signup(app, client)
    async with app.services.database.reader() as session:
        from bastion.storage import deliveries

        assert (await deliveries.list_deliveries(session, page=0, per_page=10)).total == 0
    assert smtp_server.messages == []


async def test_a_verification_link_dies_when_the_address_changes(app, smtp_server):
    client = await app.create_client()
    await set_connection_options(app, verify_email=True)
    body = await signup(app, client)
    link = link_in((await smtp_server.wait_for(1))[0])
    patched = await app.management("PATCH", f"/users/auth0|{body['_id']}", json={"email": "robert@example.com"})
    assert patched.status_code == 200, patched.text
    assert (await app.http.get(link)).status_code == 400
    assert (await user_of(app, f"auth0|{body['_id']}"))["email_verified"] is False


async def test_verification_job_is_a_queued_email_whose_status_can_be_read(app, smtp_server):
    client = await app.create_client(name="Portal")
    alice = await app.create_user()
    job = await app.management("POST", "/jobs/verification-email", json={"user_id": alice["user_id"], "client_id": client["client_id"]})
    assert job.status_code == 201, job.text
    assert job.json()["type"] == "verification_email" and job.json()["id"].startswith("job_")
    [message] = await smtp_server.wait_for(1)
    assert message["Subject"] == "Verify your email address for Portal"
    assert message["Message-ID"] == f"<{job.json()['id']}@bastion>"
    status = (await app.management("GET", f"/jobs/{job.json()['id']}")).json()
    assert status == {**job.json(), "status": "completed"}

    assert (await app.management("POST", "/jobs/verification-email", json={"user_id": "auth0|nobody"})).status_code == 404
    assert (await app.management("POST", "/jobs/verification-email", json={})).status_code == 400
    assert (await app.management("GET", "/jobs/job_unknown")).status_code == 404


async def test_email_verification_ticket_redirects_to_the_result_url(app, smtp_server):
    alice = await app.create_user()
    response = await app.management("POST", "/tickets/email-verification", json={
        "user_id": alice["user_id"], "result_url": "https://app.test/verified?from=mail", "includeEmailInRedirect": True})
    assert response.status_code == 201, response.text
    ticket = response.json()["ticket"]
    assert ticket.startswith("https://bastion.test/u/email-verification?ticket=")
    followed = await app.http.get(ticket.removeprefix("https://bastion.test"))
    assert followed.status_code == 302
    target = urlsplit(followed.headers["location"])
    assert (target.netloc, target.path) == ("app.test", "/verified")
    assert parse_qs(target.query) == {"from": ["mail"], "success": ["true"], "email": ["alice@example.com"],
                                      "message": ["Your email was verified. You can continue using the application."]}
    assert (await user_of(app, alice["user_id"]))["email_verified"] is True
    assert smtp_server.messages == []  # a ticket is a link for the caller to send, not an email

    refused = await app.management("POST", "/tickets/email-verification", json={"user_id": alice["user_id"], "result_url": "javascript:x"})
    assert refused.status_code == 400


async def test_password_change_ticket_sets_the_password_once_and_can_verify_the_email(app):
    client = await app.create_client()
    alice = await app.create_user()
    response = await app.management("POST", "/tickets/password-change", json={
        "user_id": alice["user_id"], "result_url": "https://app.test/done", "mark_email_as_verified": True, "ttl_sec": 600})
    assert response.status_code == 201, response.text
    path = response.json()["ticket"].removeprefix("https://bastion.test")
    page = await app.http.get(path)
    assert page.status_code == 200
    ticket = form_field(page.text, "ticket")
    changed = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": "New-Horse-42", "confirm": "New-Horse-42"})
    assert changed.status_code == 302 and changed.headers["location"] == "https://app.test/done?success=true"
    assert (await user_of(app, alice["user_id"]))["email_verified"] is True
    tokens = await app.http.post("/oauth/token", data={
        "grant_type": "password", "username": "alice@example.com", "password": "New-Horse-42",
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert tokens.status_code == 200, tokens.text
    assert (await app.http.get(path)).status_code == 400

    by_email = await app.management("POST", "/tickets/password-change", json={"email": "alice@example.com", "connection_id": "con_nope"})
    assert by_email.status_code == 404


async def test_change_password_request_email_uses_the_reset_template(app, smtp_server):
    client = await app.create_client()
    await app.create_user()
    response = await app.http.post("/dbconnections/change_password", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
    assert response.status_code == 200
    [message] = await smtp_server.wait_for(1)
    assert message["Subject"] == "Reset your password"
    assert link_in(message).startswith("/u/reset-password?ticket=")


async def test_the_operator_templates_replace_bastions(bastion_with, smtp_server, tmp_path):
    folder = tmp_path / "email-templates"
    folder.mkdir()
    (folder / "reset_email.txt").write_text("Subject: {{ friendly_name }}: new password for {{ user.email }}\n\nGo to {{ url }}\n")
    (folder / "reset_email.html").write_text('{% extends "bastion/reset_email.html" %}')
    async with bastion_with(smtp_host="127.0.0.1", smtp_port=smtp_server.port, email_templates_dir=folder) as app:
        await app.management("PATCH", "/tenants/settings", json={"friendly_name": "Acme"})
        client = await app.create_client()
        await app.create_user()
        await app.http.post("/dbconnections/change_password", json={
            "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
        [message] = await smtp_server.wait_for(1)
    assert message["Subject"] == "Acme: new password for alice@example.com"
    assert message.get_body(("plain",)).get_content().startswith("Go to https://bastion.test/u/reset-password?ticket=")
    assert "Choose a new password" in message.get_body(("html",)).get_content()  # Bastion's HTML, extended


async def test_a_failing_operator_template_falls_back_to_bastions_in_the_sandbox(bastion_with, smtp_server, tmp_path, caplog):
    folder = tmp_path / "email-templates"
    folder.mkdir()
    (folder / "reset_email.txt").write_text("Subject: x\n\n{{ user.__class__.__mro__ }}\n")
    async with bastion_with(smtp_host="127.0.0.1", smtp_port=smtp_server.port, email_templates_dir=folder) as app:
        client = await app.create_client()
        await app.create_user()
        response = await app.http.post("/dbconnections/change_password", json={
            "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
        [message] = await smtp_server.wait_for(1)
    assert response.status_code == 200
    assert message["Subject"] == "Reset your password" and "mro" not in message.as_string()
    assert "the operator's email template 'reset_email' failed" in caplog.text


async def test_email_templates_api_in_auth0_shapes(app):
    body = {"template": "reset_email", "body": "<p>Reset {{ user.email }}: <a href=\"{{ url }}\">here</a></p>",
            "from": "Acme <help@acme.test>", "subject": "Acme password for {{ user.email }}", "syntax": "liquid",
            "resultUrl": "https://app.test/after-reset", "urlLifetimeInSeconds": 3600, "enabled": True}
    created = await app.management("POST", "/email-templates", json=body)
    assert created.status_code == 201, created.text
    assert created.json() == {**body, "includeEmailInRedirect": False}
    assert (await app.management("POST", "/email-templates", json=body)).status_code == 409
    assert (await app.management("GET", "/email-templates/reset_email")).json() == created.json()
    assert (await app.management("GET", "/email-templates/welcome_email")).status_code == 404
    assert (await app.management("GET", "/email-templates/no_such_template")).status_code == 400
    patched = await app.management("PATCH", "/email-templates/reset_email", json={"subject": "New password"})
    assert patched.status_code == 200 and patched.json() == {**created.json(), "subject": "New password"}
    assert (await app.management("PATCH", "/email-templates/welcome_email", json={"enabled": False})).status_code == 404
    put = await app.management("PUT", "/email-templates/welcome_email", json={"body": "<p>Hi</p>", "subject": "Hi"})
    assert put.status_code == 200 and put.json()["enabled"] is True and put.json()["syntax"] == "liquid"
    assert (await app.management("POST", "/email-templates", json={**body, "template": "verify_email", "resultUrl": "ftp://x"})).status_code == 400


async def test_a_stored_template_shapes_the_email_and_its_link(app, smtp_server):
    client = await app.create_client()
    await app.create_user()
    await app.management("PUT", "/email-templates/reset_email", json={
        "body": "<p>Reset {{ user.email }}: <a href=\"{{ url }}\">here</a>{% if application.name %} for {{ application.name }}{% endif %}</p>",
        "from": "Acme <help@acme.test>", "subject": "Acme password for {{ user.email }}",
        "resultUrl": "https://app.test/after-reset", "urlLifetimeInSeconds": 600})
    await app.http.post("/dbconnections/change_password", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
    [message] = await smtp_server.wait_for(1)
    assert message["Subject"] == "Acme password for alice@example.com" and message["From"] == "Acme <help@acme.test>"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Reset alice@example.com: here (https://bastion.test/u/reset-password?ticket=") and "for Test App" in text
    page = await app.http.get(link_in(message))
    ticket = form_field(page.text, "ticket")
    done = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": "New-Horse-42", "confirm": "New-Horse-42"})
    assert done.status_code == 302 and done.headers["location"] == "https://app.test/after-reset?success=true"


async def test_a_disabled_template_stops_the_automatic_email_only(app, smtp_server):
    await set_connection_options(app, verify_email=True)
    await app.management("PUT", "/email-templates/verify_email", json={"body": "<p>{{ url }}</p>", "subject": "Verify", "enabled": False})
    client = await app.create_client()
    body = await signup(app, client)
    job = await app.management("POST", "/jobs/verification-email", json={"user_id": f"auth0|{body['_id']}"})
    assert job.status_code == 201
    [message] = await smtp_server.wait_for(1)  # the job's: an explicit request still sends
    await asyncio.sleep(0.2)
    assert len(smtp_server.messages) == 1 and message["Subject"] == "Verify"
