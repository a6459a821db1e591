"""POST /dbconnections/signup, POST /dbconnections/change_password and the reset page,
with a real SMTP server (aiosmtpd) receiving the reset email."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from smtp_server import SmtpServer

from bastion.app import create_app
from bastion.services import build_services
from bastion.tenant.bootstrap import prepare

from conftest import ISSUER, PASSWORD, Bastion, form_field, test_settings

REALM = "Username-Password-Authentication"
NEW_PASSWORD = "Battery-Staple-42"
ANSWER = "We've just sent you an email to reset your password."
RESET_LINK = re.compile(r"https://bastion\.test/u/reset-password\?ticket=\S+")


# -- harness: the app with its SMTP settings pointing at a local aiosmtpd ----------


@pytest.fixture
def inbox() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()



@pytest.fixture
async def app(database_url: str, tmp_path: Path, inbox: SmtpServer) -> AsyncIterator[Bastion]:
    settings = test_settings(database_url, tmp_path, smtp_host="127.0.0.1", smtp_port=inbox.port)
    services = build_services(settings)
    await prepare(services)
    asgi = create_app(settings, services)
    transport = httpx.ASGITransport(app=asgi, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Bastion(services, http)
    await services.close()


# -- helpers ----------------------------------------------------------------------


async def _signup(app: Bastion, client: dict, **fields) -> httpx.Response:
    body = {"client_id": client["client_id"], "connection": REALM, "email": "bob@example.com", "password": PASSWORD, **fields}
    return await app.http.post("/dbconnections/signup", json=body)


async def _change_password(app: Bastion, client: dict, address: str = "alice@example.com") -> httpx.Response:
    return await app.http.post("/dbconnections/change_password",
                               json={"client_id": client["client_id"], "connection": REALM, "email": address})


async def _password_grant(app: Bastion, client: dict, username: str, password: str) -> httpx.Response:
    return await app.http.post("/oauth/token", data={
        "grant_type": "password", "client_id": client["client_id"], "client_secret": client["client_secret"],
        "username": username, "password": password, "scope": "openid"})


def _reset_path(message) -> str:
    links = RESET_LINK.findall(message.get_body(preferencelist=("plain",)).get_content())
    assert len(links) == 1, links
    parts = urlsplit(links[0])
    return f"{parts.path}?{parts.query}"


async def _reset_link(app: Bastion, inbox: SmtpServer, client: dict) -> str:
    response = await _change_password(app, client)
    assert response.status_code == 200 and response.text == ANSWER
    return _reset_path((await inbox.wait_for(1))[-1])


# -- signup -------------------------------------------------------------------------


async def test_signup_answers_in_auth0_shape(app):
    client = await app.create_client()
    response = await _signup(app, client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"_id", "email", "email_verified"}
    assert body["email"] == "bob@example.com" and body["email_verified"] is False
    user = await app.management("GET", f"/users/auth0|{body['_id']}")
    assert user.status_code == 200 and user.json()["email"] == "bob@example.com"


async def test_signup_then_password_grant_logs_in(app):
    client = await app.create_client()
    signup = await _signup(app, client)
    assert signup.status_code == 200, signup.text
    tokens = await _password_grant(app, client, "bob@example.com", PASSWORD)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["id_token"]
    assert (await _password_grant(app, client, "bob@example.com", "Wrong-Horse-9")).status_code == 403


async def test_signup_form_body_and_metadata(app):
    client = await app.create_client()
    response = await app.http.post("/dbconnections/signup", data={
        "client_id": client["client_id"], "connection": REALM, "email": "carol@example.com", "password": PASSWORD,
        "given_name": "Carol", "user_metadata": '{"plan": "free"}'})
    assert response.status_code == 200, response.text
    assert response.json()["given_name"] == "Carol" and response.json()["user_metadata"] == {"plan": "free"}


async def test_signup_weak_password_is_invalid_password(app):
    client = await app.create_client()
    response = await _signup(app, client, password="password")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_password"
    assert response.json()["name"] == "PasswordStrengthError"
    assert (await app.management("GET", "/users-by-email", params={"email": "bob@example.com"})).json() == []


async def test_signup_duplicate_is_invalid_signup(app):
    client = await app.create_client()
    assert (await _signup(app, client)).status_code == 200
    duplicate = await _signup(app, client)
    assert duplicate.status_code == 400 and duplicate.json()["code"] == "invalid_signup"
    other_case = await _signup(app, client, email="Bob@Example.COM")
    assert other_case.status_code == 400 and other_case.json()["code"] == "invalid_signup"


async def test_signup_connection_not_enabled_for_the_client(app):
    created = await app.management("POST", "/clients", json={"name": "No Connection", "app_type": "regular_web"})
    assert created.status_code == 201, created.text
    response = await _signup(app, created.json())
    assert response.status_code == 400 and response.json()["code"] == "invalid_signup"
    assert (await app.management("GET", "/users-by-email", params={"email": "bob@example.com"})).json() == []


async def test_signup_unknown_client_or_connection(app):
    client = await app.create_client()
    assert (await _signup(app, {"client_id": "no-such-client"})).status_code == 400
    assert (await _signup(app, client, connection="No-Such-Connection")).status_code == 400


async def test_signup_without_an_at_sign_is_refused(app):
    client = await app.create_client()
    response = await _signup(app, client, email="not-an-email")
    assert response.status_code == 400 and response.json()["code"] == "invalid_signup"


async def test_signup_refuses_an_email_with_whitespace_as_the_management_api_does(app):
    client = await app.create_client()
    management = await app.management("POST", "/users", json={"connection": REALM, "email": "a @ b", "password": PASSWORD})
    assert management.status_code == 400
    response = await _signup(app, client, email="a @ b")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_signup"


async def test_signup_with_a_nul_character_is_a_400_on_every_database(app):
    client = await app.create_client()
    response = await _signup(app, client, email="bob\x00@example.com")
    assert response.status_code < 500
    assert response.status_code == 400 and "_id" not in response.json()


# -- change_password and the reset page ------------------------------------------


async def test_change_password_sends_one_email_with_a_reset_link(app, inbox):
    client = await app.create_client()
    await app.create_user()
    response = await _change_password(app, client)
    assert response.status_code == 200
    assert response.text == ANSWER
    messages = await inbox.wait_for(1)
    assert len(messages) == 1
    assert inbox.recipients == [["alice@example.com"]]
    assert messages[0]["To"] == "alice@example.com"
    assert _reset_path(messages[0]).startswith("/u/reset-password?ticket=")


async def test_reset_link_shows_a_form(app, inbox):
    client = await app.create_client()
    await app.create_user()
    page = await app.http.get(await _reset_link(app, inbox, client))
    assert page.status_code == 200
    assert 'name="password"' in page.text and 'name="confirm"' in page.text
    assert form_field(page.text, "ticket")
    assert "alice@example.com" in page.text


async def test_reset_changes_the_password_and_the_link_is_single_use(app, inbox):
    client = await app.create_client()
    await app.create_user()
    link = await _reset_link(app, inbox, client)
    ticket = form_field((await app.http.get(link)).text, "ticket")
    changed = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert changed.status_code == 200
    assert "Password changed" in changed.text
    assert (await _password_grant(app, client, "alice@example.com", NEW_PASSWORD)).status_code == 200
    assert (await _password_grant(app, client, "alice@example.com", PASSWORD)).status_code == 403
    again = await app.http.get(link)
    assert again.status_code == 400 and "Link expired" in again.text
    replay = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": "Another-Pass-7", "confirm": "Another-Pass-7"})
    assert replay.status_code == 400 and "Link expired" in replay.text
    assert (await _password_grant(app, client, "alice@example.com", NEW_PASSWORD)).status_code == 200


async def test_reset_with_mismatched_or_weak_passwords_keeps_the_old_one(app, inbox):
    client = await app.create_client()
    await app.create_user()
    link = await _reset_link(app, inbox, client)
    ticket = form_field((await app.http.get(link)).text, "ticket")
    mismatch = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": NEW_PASSWORD, "confirm": "Other-Pass-9"})
    assert mismatch.status_code == 400 and "not the same" in mismatch.text
    weak = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": "weak", "confirm": "weak"})
    assert weak.status_code == 400 and "too weak" in weak.text
    assert (await _password_grant(app, client, "alice@example.com", PASSWORD)).status_code == 200
    assert (await app.http.get(link)).status_code == 200


async def test_unknown_email_gets_the_same_answer_and_no_email(app, inbox):
    client = await app.create_client()
    await app.create_user()
    unknown = await _change_password(app, client, "nobody@example.com")
    assert unknown.status_code == 200 and unknown.text == ANSWER
    # A request for a known user afterwards: once its email is in, nothing else can still be on its way.
    await _change_password(app, client)
    messages = await inbox.wait_for(1)
    assert len(messages) == 1 and inbox.recipients == [["alice@example.com"]]


async def test_reset_unblocks_a_brute_force_block(app, inbox):
    client = await app.create_client()
    await app.create_user()
    for _ in range(10):
        await _password_grant(app, client, "alice@example.com", "Wrong-Horse-9")
    assert (await _password_grant(app, client, "alice@example.com", PASSWORD)).status_code == 429
    ticket = form_field((await app.http.get(await _reset_link(app, inbox, client))).text, "ticket")
    await app.http.post("/u/reset-password", data={"ticket": ticket, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert (await _password_grant(app, client, "alice@example.com", NEW_PASSWORD)).status_code == 200


async def test_forged_or_garbled_tickets_show_link_expired(app, inbox):
    client = await app.create_client()
    await app.create_user()
    link = await _reset_link(app, inbox, client)
    ticket = form_field((await app.http.get(link)).text, "ticket")
    body, _, signature = ticket.partition(".")
    for bad in (f"{body}.{signature[:-2]}AA", f"{body}x.{signature}", "garbage", "a.b", ""):
        page = await app.http.get("/u/reset-password", params={"ticket": bad})
        assert page.status_code == 400, (bad, page.status_code)
        assert "Link expired" in page.text
    assert (await app.http.get(link)).status_code == 200


async def test_ticket_with_a_non_ascii_signature_shows_link_expired_not_a_crash(app):
    page = await app.http.get("/u/reset-password", params={"ticket": "e30.\u00e9t\u00e9"})
    assert page.status_code < 500
    assert page.status_code == 400 and "Link expired" in page.text


async def test_change_password_refuses_an_unknown_client_and_a_missing_email(app, inbox):
    client = await app.create_client()
    await app.create_user()
    unknown_client = await app.http.post("/dbconnections/change_password",
                                         json={"client_id": "nope", "connection": REALM, "email": "alice@example.com"})
    assert unknown_client.status_code == 400 and unknown_client.json() == {
        "error": "invalid_request", "error_description": "Unknown client_id"}
    no_email = await app.http.post("/dbconnections/change_password", json={"client_id": client["client_id"], "connection": REALM})
    assert no_email.status_code == 400
    await _change_password(app, client)
    assert len(await inbox.wait_for(1)) == 1


async def test_change_password_without_client_id_finds_the_connection_by_name(app, inbox):
    """Auth0 documents client_id as optional here: the connection's name is enough."""
    await app.create_user()
    response = await app.http.post("/dbconnections/change_password", json={"connection": REALM, "email": "alice@example.com"})
    assert response.status_code == 200, response.text
    assert response.text == ANSWER
    [message] = await inbox.wait_for(1)
    assert inbox.recipients == [["alice@example.com"]]
    ticket = form_field((await app.http.get(_reset_path(message))).text, "ticket")
    changed = await app.http.post("/u/reset-password", data={"ticket": ticket, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert changed.status_code == 200 and "Password changed" in changed.text

    created = await app.management("POST", "/connections", json={"name": "email", "strategy": "email"})
    assert created.status_code == 201, created.text
    for connection in ("No-Such-Connection", "email", ""):  # unknown, not a database connection, missing
        refused = await app.http.post("/dbconnections/change_password", json={"connection": connection, "email": "alice@example.com"})
        assert refused.status_code == 400, (connection, refused.text)
        assert refused.json()["error"] == "invalid_request"
    assert len(inbox.messages) == 1
