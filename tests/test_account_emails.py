"""Account emails through the outbox, asserted on what a real SMTP server (aiosmtpd) received:
verification on signup (API and page) and its single-use, expiring link, the welcome email
after it, Auth0's verification job and tickets, `verify_email` on creating and changing a user,
the reset email, the operator's templates (stored ones escape what they insert), and what
happens without an SMTP server; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from bastion.mail import Mailer, SmtpNotConfigured
from bastion.storage import deliveries as delivery_store
from bastion.storage import email_templates as email_template_store
from bastion.storage import one_time_codes as code_store
from bastion.storage import users as user_store
from bastion.storage.tables import OneTimeCodeRow
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from conftest import PASSWORD, Bastion, form_field, query_of, test_settings

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


async def queued_emails(app: Bastion, user_id: str | None = None) -> list:
    """The outbox entries (for one user). An email is queued in the transaction of the request that
    sends it, so once the response is in, an empty list means none will ever arrive."""
    async with app.services.database.reader() as session:
        return (await delivery_store.list_deliveries(session, page=0, per_page=50, kind="email", user_id=user_id)).items


def ticket_id(link: str) -> str:
    return query_of(link)["ticket"].partition(".")[0]


async def expire(app: Bastion, link: str) -> None:
    """The link's ticket expired a second ago: its expiry moved back in the database, not waited for."""
    async with app.services.database.transaction() as session:
        moved = await session.execute(update(OneTimeCodeRow).where(OneTimeCodeRow.id == ticket_id(link))
                                      .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        assert moved.rowcount == 1


async def connection_id(app: Bastion) -> str:
    [connection] = (await app.management("GET", "/connections", params={"name": DEFAULT_CONNECTION})).json()
    return connection["id"]


async def password_grant(app: Bastion, client: dict, username: str, password: str) -> int:
    response = await app.http.post("/oauth/token", data={
        "grant_type": "password", "username": username, "password": password,
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    return response.status_code


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


async def test_a_reset_ticket_does_not_verify_an_address_it_was_not_made_for(app):
    alice = await app.create_user()
    response = await app.management("POST", "/tickets/password-change", json={
        "user_id": alice["user_id"], "mark_email_as_verified": True, "ttl_sec": 600})
    path = response.json()["ticket"].removeprefix("https://bastion.test")
    changed = await app.management("PATCH", f"/users/{alice['user_id']}", json={"email": "alice.new@example.com",
                                                                                "verify_email": False})
    assert changed.status_code == 200 and changed.json()["email_verified"] is False
    ticket = form_field((await app.http.get(path)).text, "ticket")
    done = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": "New-Horse-42", "confirm": "New-Horse-42"})
    assert done.status_code == 200 and "Password changed" in done.text  # the password does change
    user = await user_of(app, alice["user_id"])
    assert user["email"] == "alice.new@example.com" and user["email_verified"] is False


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


async def test_a_template_that_does_not_compile_is_refused_and_one_stored_before_falls_back(app, smtp_server, caplog):
    client = await app.create_client()
    await app.create_user()
    liquid_only = "{% assign greeting = 'Hi' %}<p>{{ greeting }} <a href=\"{{ url }}\">reset</a></p>"
    for method, path, body in [("POST", "/email-templates", {"template": "reset_email", "body": liquid_only}),
                               ("PUT", "/email-templates/reset_email", {"body": "<p>ok</p>", "subject": "{% if %}"})]:
        refused = await app.management(method, path, json=body)
        assert refused.status_code == 400 and refused.json()["errorCode"] == "invalid_body", refused.text
        assert "does not compile" in refused.json()["message"]
    assert (await app.management("GET", "/email-templates/reset_email")).status_code == 404  # nothing was stored

    # One stored before templates were checked (or refused by the sandbox when rendered): Bastion's own is sent.
    async with app.services.database.transaction() as session:
        await email_template_store.put_email_template(session, template="reset_email", values={
            "body": liquid_only, "subject": "Custom", "enabled": True, "syntax": "liquid", "include_email_in_redirect": False})
    app.services.tenant.invalidate()
    response = await app.http.post("/dbconnections/change_password", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
    assert response.status_code == 200
    [message] = await smtp_server.wait_for(1)
    assert message["Subject"] == "Reset your password" and "/u/reset-password?ticket=" in link_in(message)
    assert "the stored email template 'reset_email' failed" in caplog.text


def assert_template_disabled(response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == "email_template_disabled" and body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert "verify_email email template is disabled" in body["message"]


async def test_a_disabled_verification_template_sends_nothing_and_an_explicit_request_is_refused(app, smtp_server):
    """Auth0: the verification email is sent only while its template's Status is on. What Bastion
    sends by itself is skipped; an explicit request answers 400 and changes nothing, so the
    caller is not told an email is on its way when none will come."""
    await set_connection_options(app, verify_email=True)
    await app.management("PUT", "/email-templates/verify_email", json={"body": "<p>{{ url }}</p>", "subject": "Verify", "enabled": False})
    client = await app.create_client()
    bob_id = f"auth0|{(await signup(app, client))['_id']}"  # the signup's own email: skipped

    assert_template_disabled(await app.management("POST", "/jobs/verification-email", json={"user_id": bob_id}))
    assert_template_disabled(await app.management("POST", "/users", json={
        "connection": DEFAULT_CONNECTION, "email": "carol@example.com", "password": PASSWORD, "verify_email": True}))
    assert (await app.management("GET", "/users-by-email", params={"email": "carol@example.com"})).json() == []
    assert_template_disabled(await app.management("PATCH", f"/users/{bob_id}", json={"email": "robert@example.com", "verify_email": True}))
    assert (await user_of(app, bob_id))["email"] == "bob@example.com"
    left_out = await app.management("POST", "/users", json={"connection": DEFAULT_CONNECTION, "email": "dave@example.com", "password": PASSWORD})
    assert left_out.status_code == 201  # the connection's choice: skipped like the signup's
    assert await queued_emails(app) == []  # nothing queued, so nothing can arrive later

    await app.management("PATCH", "/email-templates/verify_email", json={"enabled": True})
    job = await app.management("POST", "/jobs/verification-email", json={"user_id": bob_id})
    assert job.status_code == 201, job.text
    [message] = await smtp_server.wait_for(1)
    assert message["Subject"] == "Verify" and message["Message-ID"] == f"<{job.json()['id']}@bastion>"


# -- links expire ----------------------------------------------------------------------


async def test_an_expired_verification_link_shows_link_expired_and_verifies_nothing(app, smtp_server):
    await set_connection_options(app, verify_email=True)
    client = await app.create_client()
    user_id = f"auth0|{(await signup(app, client))['_id']}"
    link = link_in((await smtp_server.wait_for(1))[0])
    await expire(app, link)

    page = await app.http.get(link)
    assert page.status_code == 400 and "Link expired" in page.text
    assert (await user_of(app, user_id))["email_verified"] is False
    assert "fv" in [e["type"] for e in (await app.management("GET", "/logs")).json()]


async def test_an_expired_reset_link_shows_link_expired_and_keeps_the_password(app, smtp_server):
    client = await app.create_client()
    await app.create_user()
    response = await app.http.post("/dbconnections/change_password", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
    assert response.status_code == 200
    link = link_in((await smtp_server.wait_for(1))[0])
    ticket = form_field((await app.http.get(link)).text, "ticket")  # the form was opened while the link worked
    await expire(app, link)

    page = await app.http.get(link)
    assert page.status_code == 400 and "Link expired" in page.text
    posted = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": "New-Horse-42", "confirm": "New-Horse-42"})
    assert posted.status_code == 400 and "Link expired" in posted.text
    assert await password_grant(app, client, "alice@example.com", PASSWORD) == 200
    assert await password_grant(app, client, "alice@example.com", "New-Horse-42") == 403


# -- password change tickets (Auth0's POST /api/v2/tickets/password-change) --------------


async def test_a_password_change_ticket_lasts_auth0s_five_days_by_default(app):
    alice = await app.create_user()
    before = datetime.now(timezone.utc)
    response = await app.management("POST", "/tickets/password-change", json={"user_id": alice["user_id"]})
    after = datetime.now(timezone.utc)
    assert response.status_code == 201, response.text
    async with app.services.database.reader() as session:
        row = await code_store.get_code(session, id=ticket_id(response.json()["ticket"]))
    five_days = timedelta(seconds=432000)
    assert before + five_days - timedelta(seconds=1) <= row.expires_at <= after + five_days + timedelta(seconds=1)


async def test_a_password_change_ticket_by_email_and_connection_id_resets_the_password(app):
    client = await app.create_client()
    await app.create_user()
    response = await app.management("POST", "/tickets/password-change", json={
        "email": "Alice@Example.com", "connection_id": await connection_id(app)})
    assert response.status_code == 201, response.text
    page = await app.http.get(response.json()["ticket"].removeprefix("https://bastion.test"))
    assert page.status_code == 200 and "alice@example.com" in page.text
    done = await app.http.post("/u/reset-password", data={
        "ticket": form_field(page.text, "ticket"), "password": "New-Horse-42", "confirm": "New-Horse-42"})
    assert done.status_code == 200 and "Password changed" in done.text
    assert await password_grant(app, client, "alice@example.com", "New-Horse-42") == 200
    assert await password_grant(app, client, "alice@example.com", PASSWORD) == 403

    nobody = await app.management("POST", "/tickets/password-change", json={
        "email": "nobody@example.com", "connection_id": await connection_id(app)})
    assert nobody.status_code == 404 and nobody.json()["errorCode"] == "inexistent_user"


async def test_a_password_change_ticket_refuses_what_auth0_documents_as_exclusive(app):
    client = await app.create_client()
    alice = await app.create_user()
    con = await connection_id(app)
    refused = [
        ({"email": "alice@example.com", "connection_id": con}, "'email' and 'connection_id' cannot be used with 'user_id'"),
        ({"connection_id": con}, "'email' and 'connection_id' cannot be used with 'user_id'"),
        ({"result_url": "https://app.test/done", "client_id": client["client_id"]}, "'result_url' cannot be used with 'client_id' or 'organization_id'"),
        ({"result_url": "https://app.test/done", "organization_id": "org_1"}, "'result_url' cannot be used with 'client_id' or 'organization_id'"),
    ]
    for extra, message in refused:
        response = await app.management("POST", "/tickets/password-change", json={"user_id": alice["user_id"], **extra})
        assert response.status_code == 400, (extra, response.text)
        assert response.json() == {"statusCode": 400, "error": "Bad Request", "errorCode": "invalid_body",
                                   "message": f"Payload validation error: {message}."}
    identity_alone = await app.management("POST", "/tickets/password-change", json={
        "email": "alice@example.com", "connection_id": con, "identity": {"user_id": alice["user_id"], "provider": "auth0"}})
    assert identity_alone.status_code == 400 and "'identity' requires 'user_id'" in identity_alone.json()["message"]
    async with app.services.database.reader() as session:
        assert await code_store.latest_live_code(session, purpose="password-change", connection=None, recipient="alice@example.com") is None
    allowed = await app.management("POST", "/tickets/password-change", json={"user_id": alice["user_id"], "client_id": client["client_id"]})
    assert allowed.status_code == 201, allowed.text


async def test_a_password_change_ticket_for_an_identity_resets_that_identitys_password(app):
    alice = await app.create_user()
    bob = await app.create_user(email="bob@example.com")
    linked = await app.management("POST", f"/users/{alice['user_id']}/identities",
                                  json={"provider": "auth0", "user_id": bob["user_id"], "force": True})
    assert linked.status_code == 201, linked.text
    con = await connection_id(app)

    async def hashes() -> tuple[str, str]:
        async with app.services.database.reader() as session:
            return tuple([(await user_store.get_user(session, user_id=u["user_id"])).password_hash for u in (alice, bob)])

    before = await hashes()
    response = await app.management("POST", "/tickets/password-change", json={
        "user_id": alice["user_id"], "identity": {"user_id": bob["user_id"].removeprefix("auth0|"), "provider": "auth0", "connection_id": con}})
    assert response.status_code == 201, response.text
    page = await app.http.get(response.json()["ticket"].removeprefix("https://bastion.test"))
    assert page.status_code == 200 and "bob@example.com" in page.text  # the secondary's password, not alice's
    done = await app.http.post("/u/reset-password", data={
        "ticket": form_field(page.text, "ticket"), "password": "New-Horse-42", "confirm": "New-Horse-42"})
    assert done.status_code == 200, done.text
    after = await hashes()
    assert after[0] == before[0] and after[1] != before[1]

    own = await app.management("POST", "/tickets/password-change", json={
        "user_id": alice["user_id"], "identity": {"user_id": alice["user_id"], "provider": "auth0"}})
    assert own.status_code == 201, own.text
    unknown = await app.management("POST", "/tickets/password-change", json={
        "user_id": alice["user_id"], "identity": {"user_id": "nobody", "provider": "auth0"}})
    assert unknown.status_code == 404 and unknown.json()["errorCode"] == "inexistent_identity"
    social = await app.management("POST", "/tickets/password-change", json={
        "user_id": alice["user_id"], "identity": {"user_id": "1234", "provider": "google-oauth2"}})
    assert social.status_code == 400 and social.json()["errorCode"] == "invalid_body"


# -- verify_email on POST and PATCH /api/v2/users, and the signup page -------------------


async def test_post_users_verify_email_true_false_or_left_out(app, smtp_server):
    await set_connection_options(app, verify_email=True)
    users = {}
    for name, fields in (("bob", {"verify_email": True}), ("carol", {"verify_email": False}), ("dave", {}),
                         ("erin", {"email_verified": True})):
        users[name] = await app.create_user(email=f"{name}@example.com", **fields)
    await smtp_server.wait_for(2)
    assert sorted(smtp_server.recipients) == [["bob@example.com"], ["dave@example.com"]]
    assert await queued_emails(app, users["carol"]["user_id"]) == [] and await queued_emails(app, users["erin"]["user_id"]) == []

    await set_connection_options(app, verify_email=False)
    frank = await app.create_user(email="frank@example.com")
    assert await queued_emails(app, frank["user_id"]) == []  # left out: the connection's option, now off
    grace = await app.create_user(email="grace@example.com", verify_email=True)
    await smtp_server.wait_for(3)
    assert smtp_server.recipients[-1] == ["grace@example.com"]
    assert len(await queued_emails(app, grace["user_id"])) == 1


async def test_the_signup_page_sends_the_verification_email(app, smtp_server):
    await set_connection_options(app, verify_email=True)
    client = await app.create_client(name="Shop")
    state = query_of((await app.authorize(client)).headers["location"])["state"]
    page = await app.http.get("/u/signup", params={"state": state})
    assert page.status_code == 200, page.text
    done = await app.http.post("/u/signup", data={
        "state": state, "csrf_token": form_field(page.text, "csrf_token"), "email": "carol@example.com", "password": PASSWORD})
    assert done.status_code == 302, done.text
    [message] = await smtp_server.wait_for(1)
    assert smtp_server.recipients == [["carol@example.com"]] and message["Subject"] == "Verify your email address for Shop"
    verified = await app.http.get(link_in(message))
    assert verified.status_code == 200 and "Your email was verified" in verified.text


async def test_a_new_address_is_unverified_and_verify_email_sends_to_it(app, smtp_server):
    alice = await app.create_user(email_verified=True)
    path = f"/users/{alice['user_id']}"

    async def patch(**fields) -> dict:
        response = await app.management("PATCH", path, json=fields)
        assert response.status_code == 200, response.text
        return response.json()

    assert (await patch(email="Alice@Example.COM"))["email_verified"] is True  # the same address
    assert (await patch(email="alice@new.example"))["email_verified"] is False
    assert (await patch(email="alice@given.example", email_verified=True))["email_verified"] is True
    assert await queued_emails(app, alice["user_id"]) == []  # verify_email left out, the connection's option off

    assert (await patch(email="alice@third.example", verify_email=True))["email_verified"] is False
    [message] = await smtp_server.wait_for(1)
    assert smtp_server.recipients == [["alice@third.example"]]
    assert (await app.http.get(link_in(message))).status_code == 200
    assert (await user_of(app, alice["user_id"]))["email_verified"] is True

    await set_connection_options(app, verify_email=True)
    assert (await patch(email="alice@fourth.example", verify_email=False))["email_verified"] is False
    assert len(await queued_emails(app, alice["user_id"])) == 1  # still only the one above
    await patch(email="alice@fifth.example")  # left out: the connection's option, now on
    await smtp_server.wait_for(2)
    assert smtp_server.recipients[-1] == ["alice@fifth.example"]

    shop = await app.create_client(name="Shop")  # Auth0's client_id: the application the email names
    await patch(email="alice@sixth.example", verify_email=True, client_id=shop["client_id"])
    messages = await smtp_server.wait_for(3)
    assert messages[-1]["Subject"] == "Verify your email address for Shop"
    unknown = await app.management("PATCH", path, json={"email": "alice@seventh.example", "client_id": "nope"})
    assert unknown.status_code == 400 and "client_id" in unknown.json()["message"]
    assert (await user_of(app, alice["user_id"]))["email"] == "alice@sixth.example"  # refused: nothing changed


# -- stored templates escape what they insert ------------------------------------------


async def test_a_stored_template_escapes_the_name_typed_at_signup(app, smtp_server):
    await set_connection_options(app, verify_email=True)
    await app.management("PUT", "/email-templates/verify_email", json={
        "body": '<p>Hello {{ user.name }}, <a href="{{ url }}">verify</a></p>', "subject": "Verify your address"})
    client = await app.create_client()
    name = '<a href="https://evil.example">click</a>'
    response = await app.http.post("/dbconnections/signup", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "mallory@example.com",
        "password": PASSWORD, "name": name})
    assert response.status_code == 200, response.text
    [message] = await smtp_server.wait_for(1)
    html = message.get_body(("html",)).get_content()
    assert "Hello &lt;a href=&#34;https://evil.example&#34;&gt;click&lt;/a&gt;," in html
    assert "evil.example\"" not in html and html.count("<a ") == 1  # only the template's own link is markup
    text = message.get_body(("plain",)).get_content()
    assert text.startswith(f"Hello {name}, verify (https://bastion.test/u/email-verification?ticket=")  # the text part reads plain
    assert link_in(message).startswith("/u/email-verification?ticket=")


# -- without an SMTP server ------------------------------------------------------------------


EMAIL = {"to": "alice@example.com", "subject": "Reset your password",
         "text": "Open https://bastion.test/u/reset-password?ticket=tkt_1.the-secret-part\n"}


async def test_without_smtp_development_logs_the_email(sqlite_url, tmp_path, caplog):
    mailer = Mailer(test_settings(sqlite_url, tmp_path))
    with caplog.at_level(logging.WARNING, logger="bastion.mail"):
        assert await mailer.send(**EMAIL) is False
    assert "the-secret-part" in caplog.text  # the demo reads its links there


async def test_without_smtp_production_logs_no_body_and_raises_what_the_outbox_retries(sqlite_url, tmp_path, caplog):
    mailer = Mailer(test_settings(sqlite_url, tmp_path, environment="production"))
    with caplog.at_level(logging.DEBUG), pytest.raises(SmtpNotConfigured) as raised:
        await mailer.send(**EMAIL)
    assert isinstance(raised.value, smtplib.SMTPException)
    assert "alice@example.com" in caplog.text and "Reset your password" in caplog.text
    assert "the-secret-part" not in caplog.text and "ticket=" not in caplog.text


async def test_without_smtp_in_production_the_outbox_keeps_the_email_for_later(bastion_with, caplog):
    async with bastion_with(environment="production") as app:
        client = await app.create_client()
        await app.create_user()
        with caplog.at_level(logging.DEBUG):
            response = await app.http.post("/dbconnections/change_password", json={
                "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
            assert response.status_code == 200
            deadline = asyncio.get_running_loop().time() + 10
            while not (delivery := (await queued_emails(app))[0]).last_error:  # bounded poll: the first attempt is a task
                assert asyncio.get_running_loop().time() < deadline, delivery
                await asyncio.sleep(0.02)
    assert delivery.state == "pending" and delivery.attempts == 1  # retried later (BASTION_OUTBOX_RETRY_BASE)
    assert delivery.last_error == "the SMTP server could not be reached (SmtpNotConfigured)"
    assert "reset-password?ticket=" not in caplog.text
