"""The email, monitoring and integration rule templates, proven end to end against local stand-ins.

templates/rules/verification_email.py, welcome_email.py, keen_signups.py, segment_events.py,
splunk_events.py, towerdata_enrichment.py, salesforce_lead.py, mixpanel_signup.py,
fullcontact_enrichment.py and azure_ad_provisioning.py, each installed from its file, with
real logins by the OIDC relying party of test_rule_templates.py (tokens verified against
the JWKS) on an app whose outbox poller runs (`background=True`):

- emails are asserted on what a real SMTP server (aiosmtpd) received, and the verification
  link is followed;
- vendor calls are asserted on what tests/vendor_servers.py received: a real HTTP server
  implementing each vendor's documented API (paths, authentication, answers), which can
  fail a path N times or hang it;
- queued requests (`api.http.queue`) are followed to their outbox entry through the
  execution record (`GET /api/v2/rules-executions/{id}`: `effects` and `deliveries`), which
  must never contain a vendor's key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import ISSUER, PASSWORD, Bastion, form_field
from test_rule_templates import CLIENT_IP, NS, RelyingParty, configure, denied, executions, install, user_json
from vendor_servers import VendorServer

LINK = re.compile(r"https://bastion\.test(/u/email-verification\?ticket=[\w.%-]+)")


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
async def vendor():
    server = VendorServer()
    yield server
    server.close()


@pytest.fixture
async def app(bastion_with, smtp_server):
    async with bastion_with(rules_http_allow_private=True, background=True, smtp_host="127.0.0.1",
                            smtp_port=smtp_server.port, outbox_retry_base=0.05, outbox_retry_max=0.2) as bastion:
        yield bastion


async def last_record(bastion: Bastion, vendor: VendorServer | None = None) -> dict:
    """The execution record of the latest login (Management API), checked for leaked vendor keys."""
    latest = (await executions(bastion))[0]
    return await record_of(bastion, latest.id, vendor)


async def record_of(bastion: Bastion, execution_id: str, vendor: VendorServer | None = None) -> dict:
    response = await bastion.management("GET", f"/rules-executions/{execution_id}")
    assert response.status_code == 200, response.text
    if vendor is not None:
        for secret in vendor.keys.secrets():
            assert secret not in response.text, "a vendor key is in the execution record"
    return response.json()


async def delivered(bastion: Bastion, execution_id: str, vendor: VendorServer, *, count: int = 1,
                    timeout: float = 10.0) -> list[dict]:
    """Bounded poll until the execution's `count` outbox entries are done (sent or failed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        record = await record_of(bastion, execution_id, vendor)
        deliveries = record["deliveries"]
        if len(deliveries) >= count and all(d["state"] in ("sent", "failed") for d in deliveries):
            return deliveries
        assert loop.time() < deadline, deliveries
        await asyncio.sleep(0.05)


def queued_effects(record: dict) -> list[dict]:
    return [e for e in record["effects"] if e["type"] == "http.queued"]


def link_in(message) -> str:
    text = message.get_body(("plain",)).get_content()
    match = LINK.search(text)
    assert match, text
    return match.group(1)


# -- 1. verification_email ------------------------------------------------------------------------------


async def test_verification_email_link_verifies_the_address_and_is_sent_once(app, smtp_server):
    client = await app.create_client(name="Shop")
    alice = await app.create_user()
    assert alice["email_verified"] is False
    await install(app, "verification_email")
    rp = RelyingParty(app, client)

    login = await rp.login()
    assert login.id_claims["email_verified"] is False  # the login goes on; the email is queued beside it
    [message] = await smtp_server.wait_for(1)
    assert smtp_server.recipients == [["alice@example.com"]]
    assert message["Subject"] == "Verify your email address for Shop"
    link = link_in(message)
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {"verification_email_sent": True}
    record = await last_record(app)
    assert [e["type"] for e in record["effects"]] == ["email", "users.update_app_metadata"]
    assert record["effects"][0]["template"] == "verify_email"

    # The flag stops a second email: the next login queues nothing.
    await rp.login()
    assert (await last_record(app))["effects"] == []

    # The link, followed by the app's own client, verifies the address, once.
    page = await app.http.get(link)
    assert page.status_code == 200 and "Your email was verified" in page.text
    assert (await user_json(app, alice["user_id"]))["email_verified"] is True
    assert (await app.http.get(link)).status_code == 400
    verified = await rp.login()
    assert verified.id_claims["email_verified"] is True
    assert (await last_record(app))["effects"] == []
    assert len(smtp_server.messages) == 1


async def test_verification_email_is_not_sent_to_verified_users(app, smtp_server):
    client = await app.create_client()
    await app.create_user(email_verified=True)
    await install(app, "verification_email")
    await RelyingParty(app, client).login()
    assert (await last_record(app))["effects"] == []
    assert smtp_server.messages == []


# -- 2. welcome_email ---------------------------------------------------------------------------------


async def test_welcome_email_is_sent_once_after_verification(app, smtp_server):
    client = await app.create_client(name="Shop")
    alice = await app.create_user()
    await install(app, "verification_email")
    await install(app, "welcome_email")
    rp = RelyingParty(app, client)

    await rp.login()  # not verified: the verification email only
    [verification] = await smtp_server.wait_for(1)
    assert verification["Subject"].startswith("Verify")
    assert "welcome_email_sent" not in (await user_json(app, alice["user_id"]))["app_metadata"]

    assert (await app.http.get(link_in(verification))).status_code == 200
    await rp.login()  # the first login after verification: the welcome
    [_, welcome] = await smtp_server.wait_for(2)
    assert welcome["Subject"] == "Welcome to Shop"
    assert smtp_server.recipients[1] == ["alice@example.com"]
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {
        "verification_email_sent": True, "welcome_email_sent": True}

    await rp.login()
    await rp.password()
    assert [r.effects for r in (await executions(app))[:2]] == [[], []]
    assert len(smtp_server.messages) == 2


# -- 3. keen_signups -----------------------------------------------------------------------------------


def keen_config(vendor: VendorServer, **overrides) -> dict:
    return {"KEEN_API_URL": vendor.url, "KEEN_PROJECT_ID": vendor.keys.keen_project_id,
            "KEEN_WRITE_KEY": vendor.keys.keen_write_key, **overrides}


def keen_path(vendor: VendorServer) -> str:
    return f"/3.0/projects/{vendor.keys.keen_project_id}/events/signups"


async def test_keen_records_the_first_login_only(app, vendor):
    client = await app.create_client()
    alice = await app.create_user(name="Alice Example")
    await install(app, "keen_signups", **keen_config(vendor))
    rp = RelyingParty(app, client)

    assert (await rp.login()).token
    [event] = await vendor.wait_for(keen_path(vendor), 1)
    assert event.status == 201
    assert event.headers["authorization"] == vendor.keys.keen_write_key
    assert event.json["userId"] == alice["user_id"] and event.json["name"] == "Alice Example"
    assert event.json["ip"] == CLIENT_IP[0]
    assert event.json["keen"]["timestamp"].endswith("Z")

    record = await last_record(app, vendor)
    [effect] = queued_effects(record)
    # the base URL and the project id are public configuration (_URL, _ID): the record says what was called
    assert effect["method"] == "POST" and effect["url"] == f"{vendor.url}/3.0/projects/{vendor.keys.keen_project_id}/events/signups"
    assert vendor.keys.keen_write_key not in json.dumps(record)
    [delivery] = await delivered(app, record["id"], vendor)
    assert delivery["id"] == effect["delivery_id"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("sent", 1, 201)

    await rp.login()  # logins_count 2: nothing
    await rp.password()
    assert [r.effects for r in (await executions(app))[:2]] == [[], []]
    assert len(vendor.seen(keen_path(vendor))) == 1


async def test_keen_event_is_delivered_once_after_a_500(app, vendor):
    client = await app.create_client()
    await app.create_user()
    await install(app, "keen_signups", **keen_config(vendor))
    vendor.fail(keen_path(vendor), 500, times=1)

    assert (await RelyingParty(app, client).login()).token
    record = await last_record(app, vendor)
    [delivery] = await delivered(app, record["id"], vendor)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("sent", 2, 201)
    assert [r.status for r in vendor.seen(keen_path(vendor))] == [500, 201]


async def test_keen_refusing_the_key_is_given_up_at_once(app, vendor):
    client = await app.create_client()
    await app.create_user()
    await install(app, "keen_signups", **keen_config(vendor, KEEN_WRITE_KEY="not-the-key"))

    assert (await RelyingParty(app, client).login()).token  # fire-and-forget: the login does not care
    record = await last_record(app, vendor)
    [delivery] = await delivered(app, record["id"], vendor)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("failed", 1, 401)
    assert "not-the-key" not in json.dumps(record)
    assert [r.status for r in vendor.seen(keen_path(vendor))] == [401]


async def test_a_login_does_not_wait_for_a_hanging_vendor(app, vendor):
    client = await app.create_client()
    await app.create_user()
    await install(app, "keen_signups", **keen_config(vendor))
    vendor.hang(keen_path(vendor))

    login = await RelyingParty(app, client).login()
    assert login.token and login.id_claims["email"] == "alice@example.com"
    hanging = await vendor.wait_until_hanging(keen_path(vendor))
    assert hanging.status is None  # tokens were issued while Keen still holds the request
    record = await last_record(app, vendor)
    assert [d["state"] for d in record["deliveries"]] == ["sending"]

    vendor.release(keen_path(vendor))
    [delivery] = await delivered(app, record["id"], vendor)
    assert (delivery["state"], delivery["attempts"]) == ("sent", 1)
    assert hanging.status == 201


# -- 4. segment_events -------------------------------------------------------------------------------


async def test_segment_identifies_on_sign_up_and_tracks_every_login(app, vendor):
    client = await app.create_client(name="Shop")
    alice = await app.create_user(name="Alice Example")
    await install(app, "segment_events", SEGMENT_API_URL=vendor.url, SEGMENT_WRITE_KEY=vendor.keys.segment_write_key)
    rp = RelyingParty(app, client)
    basic = "Basic " + base64.b64encode(f"{vendor.keys.segment_write_key}:".encode()).decode()

    await rp.login()
    [identify] = await vendor.wait_for("/v1/identify", 1, status=200)
    [signed_up] = await vendor.wait_for("/v1/track", 1, status=200)
    assert identify.headers["authorization"] == basic and signed_up.headers["authorization"] == basic
    assert identify.json["userId"] == alice["user_id"]
    assert identify.json["traits"] == {"email": "alice@example.com", "name": "Alice Example",
                                       "created_at": alice["created_at"], "logins_count": 1}
    assert signed_up.json["event"] == "Signed up" and signed_up.json["userId"] == alice["user_id"]
    assert signed_up.json["properties"] == {"clientName": "Shop", "clientID": client["client_id"],
                                            "connection": "Username-Password-Authentication",
                                            "protocol": "oidc-basic-profile"}
    assert signed_up.json["context"]["ip"] == CLIENT_IP[0]
    assert signed_up.json["context"]["userAgent"].startswith("python-httpx/")
    assert identify.json["messageId"] != signed_up.json["messageId"]
    record = await last_record(app, vendor)
    assert [e["url"] for e in queued_effects(record)] == [f"{vendor.url}/v1/identify", f"{vendor.url}/v1/track"]
    assert [d["state"] for d in await delivered(app, record["id"], vendor, count=2)] == ["sent", "sent"]

    await rp.password()
    [_, logged_in] = await vendor.wait_for("/v1/track", 2, status=200)
    assert logged_in.json["event"] == "Logged In"
    assert logged_in.json["properties"]["protocol"] == "oauth2-resource-owner"
    assert len(vendor.seen("/v1/identify")) == 1


async def test_segment_skips_token_refreshes(app, vendor):
    client = await app.create_client()
    await app.create_api(allow_offline_access=True)
    await app.create_user()
    await install(app, "segment_events", SEGMENT_API_URL=vendor.url, SEGMENT_WRITE_KEY=vendor.keys.segment_write_key)
    rp = RelyingParty(app, client)
    login = await rp.password(scope="openid offline_access", audience="https://api.test")
    await rp.refresh(login.token["refresh_token"], scope="openid offline_access", audience="https://api.test")
    assert (await last_record(app, vendor))["effects"] == []
    await vendor.wait_for("/v1/track", 1)
    assert len(vendor.seen("/v1/track")) == 1


# -- 5. splunk_events --------------------------------------------------------------------------------


HEC = "/services/collector/event"


async def test_splunk_records_sign_up_then_logins(app, vendor):
    client = await app.create_client(name="Shop")
    alice = await app.create_user(name="Alice Example")
    await install(app, "splunk_events", SPLUNK_HEC_URL=vendor.url + HEC, SPLUNK_HEC_TOKEN=vendor.keys.splunk_hec_token)
    rp = RelyingParty(app, client)

    assert (await rp.login()).token
    [first] = vendor.seen(HEC)  # awaited: it is there when the login is done
    assert first.status == 200
    assert first.headers["authorization"] == f"Splunk {vendor.keys.splunk_hec_token}"
    assert first.json["event"] == {"message": "SignUp", "application": "Shop", "clientIP": CLIENT_IP[0],
                                   "protocol": "oidc-basic-profile", "userName": "Alice Example",
                                   "userId": alice["user_id"]}
    assert (first.json["source"], first.json["sourcetype"]) == ("bastion", "auth0_activity")
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {"signedUp": True}
    await last_record(app, vendor)

    assert (await rp.login()).token
    assert vendor.seen(HEC)[1].json["event"]["message"] == "Login"


async def test_splunk_refusing_the_event_fails_the_login_closed(app, vendor):
    client = await app.create_client()
    alice = await app.create_user()
    await install(app, "splunk_events", SPLUNK_HEC_URL=vendor.url + HEC, SPLUNK_HEC_TOKEN="wrong-token")
    rp = RelyingParty(app, client)

    denied(await rp.login(), "", error="access_denied")
    assert vendor.seen(HEC)[0].status == 403
    record = await last_record(app, vendor)
    assert "HTTP 403" in record["rules"][0]["error"] and "wrong-token" not in json.dumps(record)
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {}  # not recorded: not signed up

    await configure(app, SPLUNK_HEC_TOKEN=vendor.keys.splunk_hec_token)
    vendor.fail(HEC, 503, body={"text": "Server is busy", "code": 9})
    denied(await rp.password(), "", error="access_denied")
    assert (await rp.password()).token
    assert [r.status for r in vendor.seen(HEC)] == [403, 503, 200]


async def test_splunk_hanging_fails_the_login_at_the_timeout(app, vendor):
    client = await app.create_client()
    await app.create_user()
    await install(app, "splunk_events", SPLUNK_HEC_URL=vendor.url + HEC, SPLUNK_HEC_TOKEN=vendor.keys.splunk_hec_token,
                  SPLUNK_TIMEOUT_SECONDS="0.5")
    vendor.hang(HEC)

    denied(await RelyingParty(app, client).login(), "", error="access_denied")
    [pending] = vendor.seen(HEC)
    assert pending.status is None  # the login ended while Splunk still held the request
    assert "ReadTimeout" in (await last_record(app, vendor))["rules"][0]["error"]
    vendor.release(HEC)


# -- 6. towerdata_enrichment (+ salesforce_lead: the TowerData use case) ----------------------------------


def towerdata_config(vendor: VendorServer, **overrides) -> dict:
    return {"TOWERDATA_API_URL": vendor.url, "TOWERDATA_API_KEY": vendor.keys.towerdata_api_key,
            "CLAIMS_NAMESPACE": NS, **overrides}


def salesforce_config(vendor: VendorServer, **overrides) -> dict:
    keys = vendor.keys
    return {"SALESFORCE_LOGIN_URL": vendor.url, "SALESFORCE_CLIENT_ID": keys.salesforce_client_id,
            "SALESFORCE_CLIENT_SECRET": keys.salesforce_client_secret, "SALESFORCE_USERNAME": keys.salesforce_username,
            "SALESFORCE_PASSWORD": keys.salesforce_password, **overrides}


LEAD = "/services/data/v60.0/sobjects/Lead"
SF_TOKEN = "/services/oauth2/token"


async def test_towerdata_enriches_the_id_token_and_salesforce_records_the_lead_once(app, vendor):
    client = await app.create_client()
    alice = await app.create_user(name="Alice Example", email_verified=True)
    await app.create_user(email="bob@example.com", name="Bob")  # not verified
    profile = {"age": "35-44", "gender": "Female", "eam": {"date_first_seen": "2012-01-01"}}
    vendor.towerdata_profiles["alice@example.com"] = profile
    await install(app, "towerdata_enrichment", **towerdata_config(vendor))
    await install(app, "salesforce_lead", **salesforce_config(vendor))
    rp = RelyingParty(app, client)

    login = await rp.login()
    assert login.id_claims[NS + "towerdata"] == profile
    assert NS + "towerdata" not in login.access_claims
    [lookup] = vendor.seen("/v5/td")
    assert lookup.query == {"email": "alice@example.com", "api_key": vendor.keys.towerdata_api_key}

    [token_request] = vendor.seen(SF_TOKEN)
    assert token_request.form == {
        "grant_type": "password", "client_id": vendor.keys.salesforce_client_id,
        "client_secret": vendor.keys.salesforce_client_secret, "username": vendor.keys.salesforce_username,
        "password": vendor.keys.salesforce_password}
    [lead] = vendor.seen(LEAD)  # awaited: created before the tokens were issued
    assert lead.status == 201
    assert lead.headers["authorization"].removeprefix("Bearer ") in vendor.salesforce_tokens
    assert lead.json == {"LastName": "Alice Example", "Company": "Web channel signups", "LeadSource": "Web",
                         "Email": "alice@example.com"}
    assert [(lead["LastName"], lead["Email"]) for lead in vendor.leads] == [("Alice Example", "alice@example.com")]
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {"recordedAsLead": True}
    record = await last_record(app, vendor)
    assert queued_effects(record) == [] and record["deliveries"] == []
    [effect] = [e for e in record["effects"] if e["type"] == "http" and e["method"] == "POST" and e["url"].endswith("/Lead")]
    assert effect["url"] == vendor.url + LEAD and effect["status"] == 201  # instance_url, from Salesforce's token answer

    # Only once: the next login enriches the token again but creates no lead.
    assert (await rp.login()).id_claims[NS + "towerdata"] == profile
    assert len(vendor.seen(SF_TOKEN)) == 1 and len(vendor.seen(LEAD)) == 1

    # An unverified address is not looked up; Bob becomes a lead all the same.
    bob = await rp.login(email="bob@example.com")
    assert NS + "towerdata" not in bob.id_claims
    assert len(vendor.seen("/v5/td")) == 2
    assert [r.status for r in vendor.seen(LEAD)] == [201, 201] and len(vendor.leads) == 2


async def test_towerdata_failures_leave_the_login_alone(app, vendor):
    client = await app.create_client()
    await app.create_user(email_verified=True)
    await install(app, "towerdata_enrichment", **towerdata_config(vendor, TOWERDATA_API_KEY="wrong-key",
                                                                  TOWERDATA_TIMEOUT_SECONDS="0.5"))
    rp = RelyingParty(app, client)

    login = await rp.login()
    assert NS + "towerdata" not in login.id_claims
    assert vendor.seen("/v5/td")[0].status == 401
    record = await last_record(app, vendor)
    assert "HTTP 401" in " ".join(record["rules"][0]["logs"]) and "wrong-key" not in json.dumps(record)

    # A hanging TowerData costs the login the timeout, not more.
    await configure(app, TOWERDATA_API_KEY=vendor.keys.towerdata_api_key)
    vendor.hang("/v5/td")
    login = await rp.login()
    assert login.token and NS + "towerdata" not in login.id_claims
    assert vendor.seen("/v5/td")[1].status is None  # still held by TowerData when the tokens were issued
    assert "ReadTimeout" in " ".join((await last_record(app, vendor))["rules"][0]["logs"])
    vendor.release("/v5/td")


async def test_salesforce_token_failure_is_logged_and_retried_at_the_next_login(app, vendor):
    client = await app.create_client()
    alice = await app.create_user()
    await install(app, "salesforce_lead", **salesforce_config(vendor, SALESFORCE_PASSWORD="wrong-password"))
    rp = RelyingParty(app, client)

    assert (await rp.login()).token
    assert vendor.seen(SF_TOKEN)[0].status == 400 and vendor.seen(LEAD) == []
    record = await last_record(app, vendor)
    assert "invalid_grant" in " ".join(record["rules"][0]["logs"]) and queued_effects(record) == []
    assert "wrong-password" not in json.dumps(record)
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {}

    await configure(app, SALESFORCE_PASSWORD=vendor.keys.salesforce_password)
    assert (await rp.login()).token
    assert [r.status for r in vendor.seen(LEAD)] == [201]
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {"recordedAsLead": True}


async def test_salesforce_lead_error_sets_no_flag_and_the_next_login_creates_the_lead_once(app, vendor):
    """The flag means the Lead exists: a Lead Salesforce refused is created at the next login, once."""
    client = await app.create_client()
    alice = await app.create_user(name="Alice Example")
    await install(app, "salesforce_lead", **salesforce_config(vendor))
    vendor.fail(LEAD, 503, body=[{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}])
    rp = RelyingParty(app, client)

    assert (await rp.login()).token  # the failure does not fail the login
    assert [r.status for r in vendor.seen(LEAD)] == [503] and vendor.leads == []
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {}
    record = await last_record(app, vendor)
    assert "HTTP 503 (SERVER_UNAVAILABLE)" in " ".join(record["rules"][0]["logs"])
    assert [e["type"] for e in record["effects"]] == ["http", "http"]  # token, Lead; no metadata update

    assert (await rp.login()).token  # retried: created, then flagged
    assert [r.status for r in vendor.seen(LEAD)] == [503, 201] and len(vendor.leads) == 1
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {"recordedAsLead": True}

    assert (await rp.login()).token  # flagged: no token request, no Lead
    assert (len(vendor.seen(SF_TOKEN)), len(vendor.seen(LEAD)), len(vendor.leads)) == (2, 2, 1)
    assert (await last_record(app, vendor))["effects"] == []


async def test_salesforce_hanging_costs_the_login_the_timeout_and_sets_no_flag(app, vendor):
    client = await app.create_client()
    alice = await app.create_user()
    await install(app, "salesforce_lead", **salesforce_config(vendor, SALESFORCE_TIMEOUT_SECONDS="0.5"))
    vendor.hang(LEAD)
    rp = RelyingParty(app, client)

    assert (await rp.login()).token
    [pending] = vendor.seen(LEAD)
    assert pending.status is None  # the login ended while Salesforce still held the request
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {}
    assert "ReadTimeout" in " ".join((await last_record(app, vendor))["rules"][0]["logs"])
    vendor.release(LEAD)


# -- 8./9. mixpanel_signup + fullcontact_enrichment + salesforce_lead: the MixPanel + FullContact use case ------


async def test_mixpanel_fullcontact_and_salesforce_track_a_sign_up(app, vendor):
    client = await app.create_client(name="Shop")
    alice = await app.create_user(name="Alice Example")
    person = {"fullName": "Alice Example", "ageRange": "30-39", "location": "Berlin, Germany",
              "details": {"emails": [{"value": "alice@example.com"}], "photos": []}}
    vendor.fullcontact_people["alice@example.com"] = person
    await install(app, "mixpanel_signup", MIXPANEL_API_URL=vendor.url, MIXPANEL_TOKEN=vendor.keys.mixpanel_token)
    await install(app, "fullcontact_enrichment", FULLCONTACT_API_URL=vendor.url,
                  FULLCONTACT_API_KEY=vendor.keys.fullcontact_api_key, CLAIMS_NAMESPACE=NS)
    await install(app, "salesforce_lead", **salesforce_config(vendor))
    rp = RelyingParty(app, client)
    stripped = {k: v for k, v in person.items() if k != "details"}

    login = await rp.login()
    assert login.id_claims[NS + "fullcontact"] == stripped
    [enrich] = vendor.seen("/v3/person.enrich")
    assert enrich.headers["authorization"] == f"Bearer {vendor.keys.fullcontact_api_key}"
    assert enrich.json == {"email": "alice@example.com"}
    assert (await user_json(app, alice["user_id"]))["user_metadata"] == {"fullcontact": stripped}

    [track] = await vendor.wait_for("/track/", 1, status=200)
    event = json.loads(base64.b64decode(track.query["data"]))
    assert event["event"] == "Sign Up"
    assert {k: event["properties"][k] for k in ("distinct_id", "token", "application")} == {
        "distinct_id": alice["user_id"], "token": vendor.keys.mixpanel_token, "application": "Shop"}
    assert [r.status for r in vendor.seen(LEAD)] == [201]  # awaited by the login
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {"recordedAsLead": True}
    record = await last_record(app, vendor)
    effects = queued_effects(record)
    assert [(e["method"], e["url"]) for e in effects] == [("GET", f"{vendor.url}/track/")]
    assert [d["state"] for d in await delivered(app, record["id"], vendor)] == ["sent"]

    # Second login: no sign-up event, no lookup (the data is stored), no lead.
    again = await rp.login()
    assert NS + "fullcontact" not in again.id_claims
    assert (await last_record(app, vendor))["effects"] == []
    assert (len(vendor.seen("/track/")), len(vendor.seen("/v3/person.enrich")), len(vendor.seen(LEAD))) == (1, 1, 1)


async def test_fullcontact_errors_are_swallowed(app, vendor):
    client = await app.create_client()
    bob = await app.create_user(email="bob@example.com")  # unknown to FullContact
    await install(app, "fullcontact_enrichment", FULLCONTACT_API_URL=vendor.url,
                  FULLCONTACT_API_KEY=vendor.keys.fullcontact_api_key, CLAIMS_NAMESPACE=NS)
    rp = RelyingParty(app, client)

    assert NS + "fullcontact" not in (await rp.login(email="bob@example.com")).id_claims
    assert vendor.seen("/v3/person.enrich")[0].status == 404
    assert (await user_json(app, bob["user_id"]))["user_metadata"] == {}

    vendor.fullcontact_people["bob@example.com"] = {"fullName": "Bob"}
    await configure(app, FULLCONTACT_API_KEY="wrong-key")
    assert NS + "fullcontact" not in (await rp.login(email="bob@example.com")).id_claims
    assert vendor.seen("/v3/person.enrich")[1].status == 401
    record = await last_record(app, vendor)
    assert "HTTP 401" in " ".join(record["rules"][0]["logs"]) and "wrong-key" not in json.dumps(record)


async def test_mixpanel_retries_a_429_and_sends_nothing_on_later_logins(app, vendor):
    client = await app.create_client()
    await app.create_user()
    await install(app, "mixpanel_signup", MIXPANEL_API_URL=vendor.url, MIXPANEL_TOKEN=vendor.keys.mixpanel_token)
    vendor.fail("/track/", 429, body={"error": "rate limited"})
    rp = RelyingParty(app, client)

    await rp.login()
    record = await last_record(app, vendor)
    [delivery] = await delivered(app, record["id"], vendor)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("sent", 2, 200)
    assert [r.status for r in vendor.seen("/track/")] == [429, 200]
    await rp.login()
    assert (await last_record(app, vendor))["effects"] == []


# -- 10. azure_ad_provisioning ---------------------------------------------------------------------------


def azure_config(vendor: VendorServer, client_id: str, **overrides) -> dict:
    keys = vendor.keys
    return {"AZURE_AD_CLIENT_ID": client_id, "AZURE_AD_TENANT": keys.azure_tenant,
            "AZURE_AD_GRAPH_CLIENT_ID": keys.azure_client_id, "AZURE_AD_GRAPH_CLIENT_SECRET": keys.azure_client_secret,
            "AZURE_AD_DOMAIN": "example.com", "AZURE_AD_LOGIN_URL": vendor.url, "GRAPH_API_URL": vendor.url,
            "CLAIMS_NAMESPACE": NS, **overrides}


UPN = re.compile(r"bastion-([0-9a-f-]{36})@example\.com")


async def test_azure_ad_provisions_a_licensed_account_once(app, vendor):
    office = await app.create_client(name="Office 365")
    other = await app.create_client(name="Wiki")
    alice = await app.create_user(name="Alice Example")
    await install(app, "azure_ad_provisioning", **azure_config(vendor, office["client_id"]))
    rp = RelyingParty(app, office)

    assert NS + "upn" not in (await RelyingParty(app, other).login()).id_claims  # other applications: nothing
    assert vendor.requests == []

    login = await rp.login()
    upn = login.id_claims[NS + "upn"]
    guid = uuid.UUID(UPN.fullmatch(upn).group(1))
    [token] = vendor.seen(f"/{vendor.keys.azure_tenant}/oauth2/v2.0/token")
    assert token.form == {"grant_type": "client_credentials", "client_id": vendor.keys.azure_client_id,
                          "client_secret": vendor.keys.azure_client_secret,
                          "scope": "https://graph.microsoft.com/.default"}
    [created] = vendor.seen("/v1.0/users")
    assert created.status == 201
    body = created.json
    assert body["userPrincipalName"] == upn and body["accountEnabled"] is True
    assert body["displayName"] == "Alice Example" and body["mailNickname"] == f"bastion-{guid.hex}"
    assert body["usageLocation"] == "US" and len(body["passwordProfile"]["password"]) >= 16
    assert base64.b64decode(body["onPremisesImmutableId"]) == guid.bytes_le
    [account] = vendor.graph_users.values()
    o365 = next(s for s in vendor.azure_skus if s["skuPartNumber"] == "O365_BUSINESS")
    assert account["assignedLicenses"] == [{"skuId": o365["skuId"], "disabledPlans": []}]
    assert vendor.seen(f"/v1.0/users/{account['id']}/assignLicense")[0].json["removeLicenses"] == []
    assert (await user_json(app, alice["user_id"]))["app_metadata"] == {
        "office365UserId": account["id"], "office365UPN": upn,
        "office365ImmutableId": body["onPremisesImmutableId"], "office365Provisioned": True}
    record = await last_record(app, vendor)
    assert body["passwordProfile"]["password"] not in json.dumps(record)

    # Provisioned: later logins read the metadata and call nobody.
    count = len(vendor.requests)
    assert (await rp.password()).id_claims[NS + "upn"] == upn
    assert len(vendor.requests) == count


async def test_azure_ad_fails_closed_and_reuses_the_account_it_created(app, vendor):
    office = await app.create_client(name="Office 365")
    alice = await app.create_user()
    await install(app, "azure_ad_provisioning", **azure_config(vendor, office["client_id"],
                                                               AZURE_AD_GRAPH_CLIENT_SECRET="wrong-secret"))
    rp = RelyingParty(app, office)

    denied(await rp.login(), "", error="access_denied")  # the token is refused: no account, no login
    record = await last_record(app, vendor)
    assert "HTTP 401 (invalid_client)" in record["rules"][0]["error"] and "wrong-secret" not in json.dumps(record)

    await configure(app, AZURE_AD_GRAPH_CLIENT_SECRET=vendor.keys.azure_client_secret)
    vendor.fail("/v1.0/subscribedSkus", 503, body={"error": {"code": "ServiceUnavailable", "message": "busy"}})
    denied(await rp.login(), "", error="access_denied")  # created, but not licensed
    [account] = vendor.graph_users.values()
    assert account["assignedLicenses"] == []
    metadata = (await user_json(app, alice["user_id"]))["app_metadata"]
    assert metadata["office365UserId"] == account["id"] and "office365Provisioned" not in metadata

    login = await rp.login()  # the same account, licensed now
    assert login.id_claims[NS + "upn"] == account["userPrincipalName"]
    assert len(vendor.seen("/v1.0/users")) == 1 and len(vendor.graph_users) == 1
    assert account["assignedLicenses"][0]["skuId"]
    assert (await user_json(app, alice["user_id"]))["app_metadata"]["office365Provisioned"] is True

    await configure(app, AZURE_AD_SKU="NO_SUCH_SKU")
    await app.create_user(email="bob@example.com")
    denied(await rp.login(email="bob@example.com"), "", error="access_denied")
    assert "no subscribed SKU [redacted]" in (await last_record(app, vendor))["rules"][0]["error"]


async def test_azure_ad_puts_the_upn_in_the_saml_response(app, vendor):
    from saml_sp import Pysaml2SP, post_form

    client = await app.create_client(name="Office 365", callbacks=["https://sp.test/acs"], addons={"samlp": {}})
    metadata = (await app.http.get(f"/samlp/metadata/{client['client_id']}")).text
    await app.create_user()
    await install(app, "azure_ad_provisioning", **azure_config(vendor, client["client_id"]))
    sp = Pysaml2SP(idp_metadata=metadata, entity_id="https://sp.test/metadata", acs_url="https://sp.test/acs")

    transport = httpx.ASGITransport(app=app.http._transport.app, client=CLIENT_IP)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as browser:
        url, request_id = sp.redirect_request(relay_state="rs")
        parts = urlsplit(url)
        response = await browser.get(f"{parts.path}?{parts.query}")
        login_page = response.headers["location"]
        page = await browser.get(login_page)
        response = await browser.post(login_page, data={
            "state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
            "username": "alice@example.com", "password": PASSWORD})
        for _ in range(5):
            if response.status_code not in (302, 303):
                break
            location = urlsplit(response.headers["location"])
            response = await browser.get(f"{location.path}?{location.query}" if location.query else location.path)
    assert response.status_code == 200, response.text[:500]
    _action, fields = post_form(response.text)
    login = sp.accept(fields["SAMLResponse"], request_id=request_id)

    [account] = vendor.graph_users.values()
    assert login.attributes["http://schemas.xmlsoap.org/claims/UPN"] == [account["userPrincipalName"]]
    assert login.attributes["http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID"] == [
        account["onPremisesImmutableId"]]
    await last_record(app, vendor)


# -- all of them at once: no key in any record -----------------------------------------------------------


async def test_no_vendor_key_reaches_any_execution_record(app, vendor, smtp_server):
    client = await app.create_client()
    await app.create_user(email_verified=True)
    vendor.towerdata_profiles["alice@example.com"] = {"age": "35-44"}
    vendor.fullcontact_people["alice@example.com"] = {"fullName": "Alice"}
    for name, config in [
        ("keen_signups", keen_config(vendor)),
        ("segment_events", {"SEGMENT_API_URL": vendor.url, "SEGMENT_WRITE_KEY": vendor.keys.segment_write_key}),
        ("splunk_events", {"SPLUNK_HEC_URL": vendor.url + HEC, "SPLUNK_HEC_TOKEN": vendor.keys.splunk_hec_token}),
        ("towerdata_enrichment", towerdata_config(vendor)),
        ("mixpanel_signup", {"MIXPANEL_API_URL": vendor.url, "MIXPANEL_TOKEN": vendor.keys.mixpanel_token}),
        ("fullcontact_enrichment", {"FULLCONTACT_API_URL": vendor.url, "FULLCONTACT_API_KEY": vendor.keys.fullcontact_api_key}),
        ("salesforce_lead", salesforce_config(vendor)),
        ("azure_ad_provisioning", azure_config(vendor, client["client_id"])),
    ]:
        await install(app, name, **config)
    login = await RelyingParty(app, client).login()
    assert login.id_claims[NS + "towerdata"] == {"age": "35-44"} and login.id_claims[NS + "fullcontact"] == {"fullName": "Alice"}
    assert UPN.fullmatch(login.id_claims[NS + "upn"])
    record = await last_record(app, vendor)  # checks every key
    assert [r["outcome"] for r in record["rules"]] == ["ok"] * 8
    deliveries = await delivered(app, record["id"], vendor, count=4)  # keen, segment x2, mixpanel (the Lead is awaited)
    assert sorted(d["state"] for d in deliveries) == ["sent"] * 4
    assert [r.status for r in vendor.seen(LEAD)] == [201]
    listing = await app.management("GET", "/deliveries")
    assert listing.status_code == 200
    for secret in vendor.keys.secrets():
        assert secret not in listing.text
