"""Passwordless login: POST /passwordless/start, the passwordless OTP grant, the universal-login
code pages, magic links (universal login and /passwordless/verify_redirect), codes' limits.

Email goes through a real SMTP server (aiosmtpd) on loopback; SMS through a local HTTP
server that plays Twilio's Messages endpoint (`http_peer`). Every test runs on SQLite and
PostgreSQL (the `bastion` fixture).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import socket
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

from bastion.oidc.grants import s256
from bastion.passwordless.codes import PURPOSE, code_digest
from bastion.storage import log_events, one_time_codes
from tests.conftest import add_rule, form_field, query_of

OTP_GRANT = "http://auth0.com/oauth/grant-type/passwordless/otp"
GRANTS = ["authorization_code", "refresh_token", "password", OTP_GRANT]
EMAIL = "pat@example.com"
PHONE = "+14155550100"
TWILIO_SID = "AC0123456789abcdef"
TWILIO_TOKEN = "twilio-test-token"
MESSAGES_PATH = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


# -- the mail server and the SMS provider ------------------------------------------------


class Mailbox:
    """aiosmtpd's handler: keeps every message it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def last(self, to: str):
        for message in reversed(self.messages):
            if message["To"] == to:
                return message
        raise AssertionError(f"no email to {to}")

    def text(self, to: str) -> str:
        return self.last(to).get_body(("plain",)).get_content()

    def code(self, to: str) -> str:
        match = re.search(r"^[ ]+(\d{6})\s*$", self.text(to), re.M)
        assert match, self.text(to)
        return match.group(1)

    def link(self, to: str) -> str:
        match = re.search(r"(https://\S+)", self.text(to))
        assert match, self.text(to)
        return match.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def twilio(http_peer):
    http_peer.respond(MESSAGES_PATH, 201, {"sid": "SM" + "0" * 32, "status": "queued"})
    return http_peer


@pytest.fixture
async def app(bastion, mailbox, twilio):
    """The `bastion` harness with its SMTP server and SMS provider pointed at the local peers."""
    bastion.settings.smtp_host = "127.0.0.1"
    bastion.settings.smtp_port = mailbox.port
    bastion.settings.sms_provider_url = twilio.url
    return bastion


def sms_bodies(peer) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(r["body"].decode()).items()} for r in peer.requests if r["path"] == MESSAGES_PATH]


def sms_code(peer, to: str = PHONE) -> str:
    body = [b for b in sms_bodies(peer) if b["To"] == to][-1]
    return re.search(r"\d{6}", body["Body"]).group(0)


def logged(caplog, *, only_bastion: bool = False) -> str:
    """What was logged, without the test's own SMTP server (aiosmtpd logs what it receives)."""
    return "\n".join(
        r.getMessage() for r in caplog.records
        if not r.name.startswith("mail.log") and (not only_bastion or r.name.startswith("bastion"))
    )


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- tenant helpers ------------------------------------------------------------------------


async def make_client(bastion, **fields) -> dict:
    return await bastion.create_client(grant_types=GRANTS, **fields)


async def make_connection(bastion, strategy: str, client_ids: list[str], **options) -> dict:
    if strategy == "sms":
        options = {"twilio_sid": TWILIO_SID, "twilio_token": TWILIO_TOKEN, "from": "+15005550006", **options}
    response = await bastion.management(
        "POST", "/connections", json={"name": strategy, "strategy": strategy, "enabled_clients": client_ids, "options": options}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def start(bastion, client: dict, **body):
    payload = {"client_id": client["client_id"], "client_secret": client.get("client_secret"), "connection": "email",
               "email": EMAIL, "send": "code", **body}
    return await bastion.http.post("/passwordless/start", json={k: v for k, v in payload.items() if v is not None})


async def otp_grant(bastion, client: dict, otp: str, *, username: str = EMAIL, realm: str = "email", **extra):
    return await bastion.http.post("/oauth/token", data={
        "grant_type": OTP_GRANT, "client_id": client["client_id"], "client_secret": client["client_secret"],
        "username": username, "otp": otp, "realm": realm, "scope": "openid profile email offline_access", **extra,
    })


async def events(bastion) -> list:
    async with bastion.services.database.reader() as session:
        page = await log_events.list_log_events(session, page=0, per_page=200)
    return page.items


async def event_types(bastion) -> list[str]:
    return [e.type for e in await events(bastion)]


# -- POST /passwordless/start and the OTP grant ----------------------------------------------------


@pytest.mark.postgres
async def test_email_code_is_sent_and_exchanged_for_tokens_of_a_new_verified_user(app, mailbox, caplog):
    caplog.set_level(logging.DEBUG)
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])

    response = await start(app, client, email="  Pat@Example.com ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"_id": body["_id"], "email": EMAIL, "email_verified": False}
    assert re.fullmatch(r"[0-9a-f]{24}", body["_id"])
    code = mailbox.code(EMAIL)
    assert code not in mailbox.last(EMAIL)["Subject"]

    # Only an HMAC of the code is stored.
    async with app.services.database.reader() as session:
        row = await one_time_codes.get_code(session, id=body["_id"])
    assert row.purpose == PURPOSE and row.recipient == EMAIL and row.client_id == client["client_id"]
    assert row.code_digest == code_digest(app.settings.secret_key, row.id, code) and code not in json.dumps(row.data)

    tokens = await otp_grant(app, client, code)
    assert tokens.status_code == 200, tokens.text
    tokens = tokens.json()
    assert {"access_token", "id_token", "refresh_token"} <= set(tokens)
    claims = claims_of(tokens["id_token"])
    assert claims["sub"].startswith("email|") and claims["email"] == EMAIL and claims["email_verified"] is True

    user = (await app.management("GET", f"/users/{claims['sub']}")).json()
    assert user["email_verified"] is True and user["logins_count"] == 1
    assert user["identities"][0]["provider"] == "email" and user["identities"][0]["connection"] == "email"

    # The next login finds the same user.
    await start(app, client)
    again = (await otp_grant(app, client, mailbox.code(EMAIL))).json()
    assert claims_of(again["id_token"])["sub"] == claims["sub"]

    types = await event_types(app)
    assert types.count("cls") == 2 and "ss" in types and types.count("s") == 2
    for event in await events(app):
        assert code not in json.dumps(event.details) and code not in (event.description or "")
    assert code not in logged(caplog)


@pytest.mark.postgres
async def test_rules_see_the_passwordless_method_and_the_grant_protocol(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    await add_rule(app, (
        "async def rule(user, context, api):\n"
        "    context.id_token['https://example.com/methods'] = [m['name'] for m in context.authentication.methods]\n"
        "    context.id_token['https://example.com/protocol'] = context.protocol\n"
        "    context.id_token['https://example.com/connection'] = context.connection_strategy\n"
        "    context.id_token['https://example.com/body_keys'] = sorted(context.request.body)\n"
    ))
    await start(app, client)
    tokens = (await otp_grant(app, client, mailbox.code(EMAIL))).json()
    claims = claims_of(tokens["id_token"])
    assert claims["https://example.com/methods"] == ["email"]
    assert claims["https://example.com/protocol"] == "oauth2-password"
    assert claims["https://example.com/connection"] == "email"
    assert "otp" not in claims["https://example.com/body_keys"]  # rules never see the code


@pytest.mark.postgres
async def test_a_rule_can_deny_the_otp_grant(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    await add_rule(app, "async def rule(user, context, api):\n    raise UnauthorizedError('no passwordless here')\n")
    await start(app, client)
    response = await otp_grant(app, client, mailbox.code(EMAIL))
    assert response.status_code == 401 and response.json() == {"error": "unauthorized", "error_description": "no passwordless here"}


@pytest.mark.postgres
async def test_wrong_codes_are_limited_per_code_and_logged_without_the_code(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    await start(app, client)
    code = mailbox.code(EMAIL)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for attempt in range(app.settings.passwordless_max_attempts):
        response = await otp_grant(app, client, wrong)
        assert response.status_code == 403 and response.json()["error"] == "invalid_grant"
    assert "maximum number of attempts" in response.json()["error_description"]
    # The right code no longer works: the code is exhausted.
    response = await otp_grant(app, client, code)
    assert response.status_code == 403 and "maximum number of attempts" in response.json()["error_description"]

    failures = [e for e in await events(app) if e.type == "fepotpft"]
    assert len(failures) == app.settings.passwordless_max_attempts + 1
    assert all(code not in json.dumps(e.details) and wrong not in json.dumps(e.details) for e in failures)

    # A new code works again.
    await start(app, client)
    assert (await otp_grant(app, client, mailbox.code(EMAIL))).status_code == 200


@pytest.mark.postgres
async def test_codes_are_single_use_replaced_by_a_new_one_and_expire(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    await start(app, client)
    code = mailbox.code(EMAIL)
    assert (await otp_grant(app, client, code)).status_code == 200
    reused = await otp_grant(app, client, code)
    assert reused.status_code == 403 and reused.json() == {"error": "invalid_grant", "error_description": "Wrong email or verification code."}

    await start(app, client)
    first = mailbox.code(EMAIL)
    await start(app, client)
    second = mailbox.code(EMAIL)
    if first != second:
        assert (await otp_grant(app, client, first)).status_code == 403
    assert (await otp_grant(app, client, second)).status_code == 200

    app.settings.passwordless_code_lifetime = 0  # expires as it is issued
    await start(app, client)
    expired = await otp_grant(app, client, mailbox.code(EMAIL))
    assert expired.status_code == 403 and expired.json()["error"] == "invalid_grant"


@pytest.mark.postgres
async def test_codes_are_rate_limited_per_recipient(app, mailbox):
    app.settings.passwordless_codes_per_hour = 2
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    assert (await start(app, client)).status_code == 200
    assert (await start(app, client, email=EMAIL.upper())).status_code == 200
    limited = await start(app, client)
    assert limited.status_code == 429 and limited.json()["error"] == "too_many_requests"
    assert len([m for m in mailbox.messages if m["To"] == EMAIL]) == 2
    # The last code sent still works, and another recipient is not limited.
    assert (await otp_grant(app, client, mailbox.code(EMAIL))).status_code == 200
    assert (await start(app, client, email="other@example.com")).status_code == 200


@pytest.mark.postgres
async def test_start_answers_auth0_errors(app):
    client = await make_client(app)
    other = await make_client(app, name="Other")
    no_otp = await app.create_client(name="No OTP grant")
    await make_connection(app, "email", [client["client_id"], no_otp["client_id"]])

    async def error(**body) -> tuple[int, dict]:
        response = await start(app, client, **body)
        return response.status_code, response.json()

    assert await error(client_id=None, client_secret=None) == (400, {"error": "bad.client_id", "error_description": "Missing required property: client_id"})
    assert (await error(connection=None))[1]["error"] == "bad.connection"
    assert await error(connection="google-oauth2") == (400, {"error": "bad.connection", "error_description": "Connection does not exist"})
    assert await error(connection="sms") == (400, {"error": "bad.connection", "error_description": "Connection does not exist"})
    assert (await error(email=None))[1] == {"error": "bad.email", "error_description": "Missing required property: email"}
    assert (await error(email="not-an-email"))[1]["error"] == "bad.email"
    assert (await error(send="carrier-pigeon"))[1]["error"] == "bad.send"
    assert (await error(send="link", authParams="nope"))[1]["error"] == "bad.authParams"
    status, body = await error(send="link", authParams={"redirect_uri": "https://evil.test/cb", "scope": "openid"})
    assert status == 400 and body["error"] == "bad.authParams" and "evil.test" in body["error_description"]

    disabled = await start(app, other)
    assert disabled.status_code == 400 and disabled.json() == {"error": "bad.connection", "error_description": "Connection is disabled"}
    no_secret = await start(app, client, client_secret=None)
    assert no_secret.status_code == 401 and no_secret.json()["error"] == "invalid_client"
    wrong_secret = await start(app, client, client_secret="x" * 40)
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    no_grant = await start(app, no_otp)
    assert no_grant.status_code == 403 and no_grant.json()["error"] == "unauthorized_client"

    form = await app.http.post("/passwordless/start", data={
        "client_id": client["client_id"], "client_secret": client["client_secret"], "connection": "email", "email": "x@",
    })
    assert form.status_code == 400 and form.json()["error"] == "bad.email"


@pytest.mark.postgres
async def test_otp_grant_errors(app, mailbox):
    client = await make_client(app)
    no_grant = await app.create_client(name="No OTP grant")
    await make_connection(app, "email", [client["client_id"], no_grant["client_id"]])
    await start(app, client)
    code = mailbox.code(EMAIL)
    missing = await otp_grant(app, client, "")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    realm = await otp_grant(app, client, code, realm="Username-Password-Authentication")
    assert realm.status_code == 400 and realm.json()["error"] == "invalid_request"
    unauthorized = await otp_grant(app, no_grant, code)
    assert unauthorized.status_code == 403 and unauthorized.json()["error"] == "unauthorized_client"
    audience = await otp_grant(app, client, code, audience="https://nope.test")
    assert audience.status_code == 403 and audience.json()["error"] == "access_denied"
    other_user = await otp_grant(app, client, code, username="someone@example.com")
    assert other_user.status_code == 403 and other_user.json()["error"] == "invalid_grant"
    # None of these spent the code.
    assert (await otp_grant(app, client, code)).status_code == 200

    discovery = (await app.http.get("/.well-known/openid-configuration")).json()
    assert OTP_GRANT in discovery["grant_types_supported"]


@pytest.mark.postgres
async def test_sms_code_goes_through_the_twilio_compatible_provider(app, twilio):
    client = await make_client(app)
    await make_connection(app, "sms", [client["client_id"]], template="Your code for the app: @@password@@")
    response = await start(app, client, connection="sms", phone_number=PHONE, email=None, send=None)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"_id": body["_id"], "phone_number": PHONE, "phone_verified": False, "request_language": None}

    [request] = [r for r in twilio.requests if r["path"] == MESSAGES_PATH]
    assert request["method"] == "POST"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    form = sms_bodies(twilio)[0]
    assert form["To"] == PHONE and form["From"] == "+15005550006" and form["Body"].startswith("Your code for the app: ")
    code = sms_code(twilio)

    tokens = await otp_grant(app, client, code, username=PHONE, realm="sms", scope="openid phone")
    assert tokens.status_code == 200, tokens.text
    sub = claims_of(tokens.json()["id_token"])["sub"]
    assert re.fullmatch(r"sms\|[0-9a-f]{24}", sub)
    user = (await app.management("GET", f"/users/{sub}")).json()
    assert user["phone_number"] == PHONE and user["phone_verified"] is True
    assert "cs" in await event_types(app)

    # The same number logs in to the same user.
    await start(app, client, connection="sms", phone_number=PHONE, email=None, send="code")
    again = await otp_grant(app, client, sms_code(twilio), username=PHONE, realm="sms")
    assert claims_of(again.json()["id_token"])["sub"] == sub


@pytest.mark.postgres
async def test_sms_messaging_service_bad_numbers_and_provider_errors(app, twilio):
    client = await make_client(app)
    await make_connection(app, "sms", [client["client_id"]], messaging_service_sid="MG123", **{"from": None})
    bad = await start(app, client, connection="sms", phone_number="555-0100", email=None)
    assert bad.status_code == 400 and bad.json()["error"] == "bad.phone_number"
    missing = await start(app, client, connection="sms", email=None)
    assert missing.json() == {"error": "bad.phone_number", "error_description": "Missing required property: phone_number"}
    link = await start(app, client, connection="sms", phone_number=PHONE, email=None, send="link")
    assert link.status_code == 400 and link.json()["error"] == "bad.send"

    assert (await start(app, client, connection="sms", phone_number=PHONE, email=None)).status_code == 200
    form = sms_bodies(twilio)[-1]
    assert form["MessagingServiceSid"] == "MG123" and "From" not in form

    twilio.respond(MESSAGES_PATH, 400, {"code": 21211, "message": "The 'To' number is not a valid phone number."})
    failed = await start(app, client, connection="sms", phone_number="+15550001111", email=None)
    assert failed.status_code == 400
    assert failed.json() == {"error": "sms_provider_error", "error_description": "The 'To' number is not a valid phone number. (Code: 21211)"}
    assert "fn" in await event_types(app)


@pytest.mark.postgres
async def test_disable_signup_refuses_new_users_only(app, mailbox):
    client = await make_client(app)
    connection = await make_connection(app, "email", [client["client_id"]])
    await start(app, client)
    assert (await otp_grant(app, client, mailbox.code(EMAIL))).status_code == 200
    await app.management("PATCH", f"/connections/{connection['id']}", json={"options": {"disable_signup": True}})

    await start(app, client, email="new@example.com")
    refused = await otp_grant(app, client, mailbox.code("new@example.com"), username="new@example.com")
    assert refused.status_code == 403 and refused.json()["error"] == "access_denied"
    assert "fs" in await event_types(app)
    await start(app, client)
    assert (await otp_grant(app, client, mailbox.code(EMAIL))).status_code == 200


async def test_without_smtp_the_email_is_refused_and_the_code_not_logged(app, caplog):
    caplog.set_level(logging.DEBUG)
    app.settings.smtp_host = None
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    response = await start(app, client)
    assert response.status_code == 500 and response.json()["error"] == "server_error"
    text = logged(caplog, only_bastion=True)
    assert "BASTION_SMTP_HOST is not set" in text and not re.search(r"\b\d{6}\b", text)


# -- universal login -----------------------------------------------------------------------------


async def begin(bastion, client: dict, **params) -> tuple[str, str]:
    """/authorize with PKCE, up to the login page; returns (verifier, transaction state)."""
    verifier = secrets.token_urlsafe(48)
    response = await bastion.authorize(client, code_challenge=s256(verifier), code_challenge_method="S256", **params)
    assert response.status_code == 302, response.text
    return verifier, query_of(response.headers["location"])["state"]


async def ask_code(bastion, state: str, *, connection: str = "email", recipient: str = EMAIL, send: str = "code"):
    page = await bastion.http.get("/u/passwordless", params={"state": state, "connection": connection})
    assert page.status_code == 200, page.text
    field = "email" if connection == "email" else "phone_number"
    return await bastion.http.post("/u/passwordless", data={
        "state": state, "csrf_token": form_field(page.text, "csrf_token"), "connection": connection, field: recipient, "send": send,
    })


async def enter_code(bastion, page_html: str, code: str):
    return await bastion.http.post("/u/passwordless/verify", data={
        "state": form_field(page_html, "state"), "csrf_token": form_field(page_html, "csrf_token"),
        "connection": form_field(page_html, "connection"), "recipient": form_field(page_html, "recipient"), "code": code,
    })


async def exchange(bastion, client: dict, response, verifier: str) -> dict:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(client["callbacks"][0]), location
    tokens = await bastion.http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": query_of(location)["code"], "redirect_uri": client["callbacks"][0],
        "code_verifier": verifier, "client_id": client["client_id"], "client_secret": client["client_secret"],
    })
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


@pytest.mark.postgres
async def test_universal_login_with_an_emailed_code(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    await add_rule(app, (
        "async def rule(user, context, api):\n"
        "    context.id_token['https://example.com/methods'] = [m['name'] for m in context.authentication.methods]\n"
        "    context.id_token['https://example.com/protocol'] = context.protocol\n"
    ))
    verifier, state = await begin(app, client)
    login_page = await app.http.get("/u/login", params={"state": state})
    assert 'id="passwordless-email"' in login_page.text and "Email me a code" in login_page.text
    assert 'id="passwordless-sms"' not in login_page.text

    sent = await ask_code(app, state, recipient=" Pat@Example.com ")
    assert sent.status_code == 200 and 'id="code"' in sent.text and EMAIL in sent.text
    wrong = await enter_code(app, sent.text, "000000" if mailbox.code(EMAIL) != "000000" else "111111")
    assert wrong.status_code == 400 and 'id="error"' in wrong.text
    assert "f" in await event_types(app)

    response = await enter_code(app, wrong.text, " ".join(mailbox.code(EMAIL)))  # spaces typed in are ignored
    tokens = await exchange(app, client, response, verifier)
    claims = claims_of(tokens["id_token"])
    assert claims["email"] == EMAIL and claims["sub"].startswith("email|")
    assert claims["https://example.com/methods"] == ["email"]
    assert claims["https://example.com/protocol"] == "oidc-basic-profile"

    # An SSO session started: the next /authorize answers at once, with the same method.
    verifier = secrets.token_urlsafe(48)
    again = await app.authorize(client, code_challenge=s256(verifier), code_challenge_method="S256")
    claims = claims_of((await exchange(app, client, again, verifier))["id_token"])
    assert claims["https://example.com/methods"] == ["email"]


@pytest.mark.postgres
async def test_universal_login_codes_are_bound_to_their_transaction(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    _, state = await begin(app, client)
    sent = await ask_code(app, state)
    code = mailbox.code(EMAIL)
    # Not usable at the token endpoint...
    assert (await otp_grant(app, client, code)).status_code == 403
    # ...nor is an API code usable on the page (and each try counts).
    _, state = await begin(app, client)
    sent = await ask_code(app, state)
    await start(app, client)  # replaces the page's code with one for the API
    api_code = mailbox.code(EMAIL)
    refused = await enter_code(app, sent.text, api_code)
    assert refused.status_code == 400 and 'id="error"' in refused.text
    # Without the CSRF token nothing happens.
    forged = await app.http.post("/u/passwordless/verify", data={
        "state": state, "connection": "email", "recipient": EMAIL, "code": api_code, "csrf_token": "x"})
    assert forged.status_code == 403


@pytest.mark.postgres
async def test_universal_login_code_limits_show_on_the_page(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    _, state = await begin(app, client)
    page = await ask_code(app, state)
    code = mailbox.code(EMAIL)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(app.settings.passwordless_max_attempts):
        page = await enter_code(app, page.text, wrong)
        assert page.status_code == 400
    assert "Too many wrong codes" in page.text and 'id="resend"' in page.text and 'id="code"' not in page.text

    app.settings.passwordless_code_lifetime = 0
    page = await ask_code(app, state)
    expired = await enter_code(app, page.text, mailbox.code(EMAIL))
    assert expired.status_code == 400 and "expired" in expired.text


@pytest.mark.postgres
async def test_universal_login_magic_link_works_once_in_the_same_browser(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    verifier, state = await begin(app, client)
    sent = await ask_code(app, state, send="link")
    assert sent.status_code == 200 and "Check your email" in sent.text
    link = mailbox.link(EMAIL)
    assert link.startswith("https://bastion.test/u/passwordless/link?")

    # Another browser (no binding cookie) cannot use it, and does not spend it.
    async with httpx.AsyncClient(transport=app.http._transport, base_url=app.http.base_url) as elsewhere:
        other_browser = await elsewhere.get(link)
    assert other_browser.status_code == 400 and "Link not usable here" in other_browser.text

    tokens = await exchange(app, client, await app.http.get(link), verifier)
    assert claims_of(tokens["id_token"])["email"] == EMAIL
    reused = await app.http.get(link)
    assert reused.status_code == 400


@pytest.mark.postgres
async def test_universal_login_sms_and_authorize_connection_parameter(app, twilio):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    await make_connection(app, "sms", [client["client_id"]])
    verifier, state = await begin(app, client)
    login_page = await app.http.get("/u/login", params={"state": state})
    assert 'id="passwordless-email"' in login_page.text and 'id="passwordless-sms"' in login_page.text

    # /authorize?connection=sms goes straight to the code page.
    verifier, state = await begin(app, client, connection="sms")
    redirect = await app.http.get("/u/login", params={"state": state})
    assert redirect.status_code == 302 and redirect.headers["location"] == f"/u/passwordless?state={state}&connection=sms"
    sent = await ask_code(app, state, connection="sms", recipient="+1 (415) 555-0100")
    assert sent.status_code == 200, sent.text
    tokens = await exchange(app, client, await enter_code(app, sent.text, sms_code(twilio)), verifier)
    assert claims_of(tokens["id_token"])["sub"].startswith("sms|")


@pytest.mark.postgres
async def test_universal_login_refuses_connections_not_enabled(app):
    client = await make_client(app)
    await make_connection(app, "email", [])
    _, state = await begin(app, client)
    login_page = await app.http.get("/u/login", params={"state": state})
    assert "passwordless-email" not in login_page.text
    page = await app.http.get("/u/passwordless", params={"state": state, "connection": "email"})
    assert page.status_code == 400 and "not enabled" in page.text


# -- GET /passwordless/verify_redirect -------------------------------------------------------------------


@pytest.mark.postgres
async def test_magic_link_from_the_api_logs_in_with_its_auth_params(app, mailbox):
    client = await make_client(app)
    await make_connection(app, "email", [client["client_id"]])
    verifier = secrets.token_urlsafe(48)
    response = await start(app, client, send="link", authParams={
        "scope": "openid email", "redirect_uri": client["callbacks"][0], "state": "app-state", "nonce": "n-123",
        "response_type": "code", "code_challenge": s256(verifier), "code_challenge_method": "S256",
    })
    assert response.status_code == 200, response.text
    link = mailbox.link(EMAIL)
    parts = urlsplit(link)
    assert parts.path == "/passwordless/verify_redirect"
    query = query_of(link)
    assert query["connection"] == "email" and query["client_id"] == client["client_id"] and query["email"] == EMAIL
    assert query["state"] == "app-state" and len(query["verification_code"]) >= 32

    answer = await app.http.get(link)
    assert query_of(answer.headers["location"])["state"] == "app-state"
    tokens = await exchange(app, client, answer, verifier)
    claims = claims_of(tokens["id_token"])
    assert claims["email"] == EMAIL and claims["nonce"] == "n-123"

    reused = await app.http.get(link)
    assert reused.status_code == 302
    error = query_of(reused.headers["location"])
    assert error["error"] == "access_denied" and error["state"] == "app-state"

    # A code sent as a code is not a link.
    await start(app, client)
    forged = await app.http.get("/passwordless/verify_redirect", params={**query, "verification_code": mailbox.code(EMAIL)})
    assert query_of(forged.headers["location"])["error"] == "access_denied"
