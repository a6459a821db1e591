"""Account linking (docs/identities.md): POST and DELETE /api/v2/users/{id}/identities, what a
linked secondary becomes (hidden, its credentials logging in its primary), rules reading the
secondary's profile, `context.primary_user`, and deleting a primary. Every test runs on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from bastion.oidc.grants import s256
from bastion.storage import users as user_store
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from tests.conftest import PASSWORD, add_rule, query_of
from tests.test_passwordless import Mailbox, mailbox  # noqa: F401 - the SMTP server fixture

pytestmark = pytest.mark.postgres

PARTNER = "Partner-DB"
SECONDARY_PASSWORD = "Other-Horse-Battery-7"
REALM_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
OTP_GRANT = "http://auth0.com/oauth/grant-type/passwordless/otp"


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def partner_connection(bastion, client: dict) -> dict:
    """A second database connection, for the primaries: linking usually joins two connections."""
    response = await bastion.management(
        "POST", "/connections", json={"name": PARTNER, "strategy": "auth0", "enabled_clients": [client["client_id"]]}
    )
    assert response.status_code == 201, response.text
    bastion.services.tenant.invalidate()
    return response.json()


async def two_users(bastion, client: dict, *, secondary_verified: bool = True) -> tuple[dict, dict]:
    """A primary in Partner-DB and a secondary in the default connection, with profiles."""
    await partner_connection(bastion, client)
    primary = await bastion.create_user(
        email="pat@example.com", connection=PARTNER, email_verified=True, name="Pat Primary", given_name="Pat"
    )
    secondary = await bastion.create_user(
        email="pat.work@example.com", password=SECONDARY_PASSWORD, email_verified=secondary_verified,
        name="Patricia Work", given_name="Patricia", family_name="Worker", nickname="patw", username="patwork",
    )
    return primary, secondary


def local_id(user: dict) -> str:
    return user["identities"][0]["user_id"]


async def link(bastion, primary: dict, secondary: dict, **body):
    payload = {"provider": "auth0", "user_id": local_id(secondary), **body}
    return await bastion.management("POST", f"/users/{primary['user_id']}/identities", json=payload)


async def password_grant(bastion, client: dict, username: str, password: str, **params):
    return await bastion.http.post("/oauth/token", data={
        "grant_type": "password", "client_id": client["client_id"], "client_secret": client["client_secret"],
        "username": username, "password": password, "scope": "openid profile email", **params,
    })


async def logs(bastion, event_type: str) -> list[dict]:
    return (await bastion.management("GET", "/logs", params={"q": f"type:{event_type}"})).json()


# -- linking and what it shows --------------------------------------------------------------


async def test_linking_by_provider_and_user_id_shows_the_secondary_in_the_primarys_identities(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)

    response = await link(bastion, primary, secondary)
    assert response.status_code == 201, response.text
    identities = response.json()
    assert identities == [
        {"connection": PARTNER, "user_id": local_id(primary), "provider": "auth0", "isSocial": False},
        {
            "connection": DEFAULT_CONNECTION, "user_id": local_id(secondary), "provider": "auth0", "isSocial": False,
            "profileData": {
                "email": "pat.work@example.com", "email_verified": True, "name": "Patricia Work", "given_name": "Patricia",
                "family_name": "Worker", "nickname": "patw", "picture": secondary["picture"], "username": "patwork",
                "phone_verified": False,
            },
        },
    ]
    # The primary shows them; its own profile is unchanged.
    shown = (await bastion.management("GET", f"/users/{primary['user_id']}")).json()
    assert shown["identities"] == identities and shown["email"] == "pat@example.com" and shown["name"] == "Pat Primary"

    # The secondary is no user of its own any more.
    assert (await bastion.management("GET", f"/users/{secondary['user_id']}")).status_code == 404
    assert (await bastion.management("PATCH", f"/users/{secondary['user_id']}", json={"name": "x"})).status_code == 404
    assert (await bastion.management("GET", f"/users/{secondary['user_id']}/roles")).status_code == 404
    listed = (await bastion.management("GET", "/users")).json()
    assert [u["user_id"] for u in listed] == [primary["user_id"]]
    assert (await bastion.management("GET", "/users-by-email", params={"email": "pat.work@example.com"})).json() == []
    by_connection = (await bastion.management("GET", "/users", params={"q": f'connection:"{DEFAULT_CONNECTION}"'})).json()
    assert by_connection == []


async def test_a_full_user_id_and_connection_id_name_the_secondary_too(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    connections = (await bastion.management("GET", "/connections")).json()
    default_id = next(c["id"] for c in connections if c["name"] == DEFAULT_CONNECTION)
    partner_id = next(c["id"] for c in connections if c["name"] == PARTNER)

    wrong_connection = await link(bastion, primary, secondary, connection_id=partner_id)
    assert wrong_connection.status_code == 404, wrong_connection.text

    response = await link(bastion, primary, secondary, user_id=secondary["user_id"], connection_id=default_id)
    assert response.status_code == 201, response.text
    assert [i["user_id"] for i in response.json()] == [local_id(primary), local_id(secondary)]


async def test_linking_with_the_secondarys_id_token(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    # The application that links holds a Management API grant (Auth0: the ID token's `aud`
    # must be the application calling the API).
    grant = await bastion.management("POST", "/client-grants", json={
        "client_id": client["client_id"], "audience": bastion.settings.management_audience, "scope": ["update:users"]})
    assert grant.status_code == 201, grant.text
    id_token = (await bastion.code_tokens(client, email="pat.work@example.com", password=SECONDARY_PASSWORD))["id_token"]
    assert claims_of(id_token)["sub"] == secondary["user_id"]
    token = (await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": client["client_secret"],
        "audience": bastion.settings.management_audience})).json()["access_token"]

    # Another application's token does not carry this ID token; a tampered one is refused.
    other = await bastion.management("POST", f"/users/{primary['user_id']}/identities", json={"link_with": id_token})
    assert other.status_code == 400 and other.json()["errorCode"] == "invalid_body", other.text
    head, _, signature = id_token.split(".")
    forged_payload = base64.urlsafe_b64encode(
        json.dumps({**claims_of(id_token), "sub": primary["user_id"]}).encode()).decode().rstrip("=")
    forged = await bastion.http.post(
        f"/api/v2/users/{primary['user_id']}/identities", json={"link_with": f"{head}.{forged_payload}.{signature}"},
        headers={"Authorization": f"Bearer {token}"})
    assert forged.status_code == 400, forged.text

    response = await bastion.http.post(
        f"/api/v2/users/{primary['user_id']}/identities", json={"link_with": id_token}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    assert response.json()[1]["user_id"] == local_id(secondary)
    assert response.json()[1]["profileData"]["email"] == "pat.work@example.com"
    # Linking ended what the secondary was signed in to: a new /authorize asks for credentials.
    again = await bastion.authorize(client)
    assert again.headers["location"].startswith("/u/login")


async def test_unverified_emails_are_refused_unless_forced(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client, secondary_verified=False)

    refused = await link(bastion, primary, secondary)
    assert refused.status_code == 400, refused.text
    assert refused.json()["errorCode"] == "email_not_verified"
    assert secondary["user_id"] in refused.json()["message"] and '"force": true' in refused.json()["message"]
    assert (await bastion.management("GET", f"/users/{secondary['user_id']}")).status_code == 200

    forced = await link(bastion, primary, secondary, force=True)
    assert forced.status_code == 201, forced.text
    assert forced.json()[1]["profileData"]["email_verified"] is False
    logged = await logs(bastion, "sapi")
    assert any(e["description"] == "Link a User Account" and e["details"]["forced"] is True for e in logged)


async def test_refusals_are_auth0_shaped(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    third = await bastion.create_user(email="third@example.com", email_verified=True)
    fourth = await bastion.create_user(email="fourth@example.com", email_verified=True)

    def error(response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["statusCode"] == status and body["errorCode"] == code and body["message"], body

    error(await link(bastion, primary, primary), 400, "invalid_body")
    assert (await link(bastion, primary, primary)).json()["message"] == "Main identity and the new one are the same."
    error(await link(bastion, {"user_id": "auth0|nobody"}, secondary), 404, "inexistent_user")
    error(await bastion.management("POST", f"/users/{primary['user_id']}/identities", json={"provider": "auth0", "user_id": "nobody"}),
          404, "inexistent_user")
    error(await bastion.management("POST", f"/users/{primary['user_id']}/identities", json={"provider": "auth0"}), 400, "invalid_body")

    assert (await link(bastion, primary, secondary)).status_code == 201
    # The secondary is already linked (to this primary or to another).
    error(await link(bastion, primary, secondary), 409, "identity_already_linked")
    error(await link(bastion, third, secondary), 409, "identity_already_linked")
    # A primary with secondaries cannot become a secondary; a secondary cannot be a primary.
    error(await link(bastion, third, primary), 409, "identity_has_linked_users")
    error(await link(bastion, secondary, fourth), 404, "inexistent_user")
    # Linking needs update:users.
    token = await bastion.management_token(scope="read:users")
    response = await bastion.http.post(
        f"/api/v2/users/{third['user_id']}/identities", json={"provider": "auth0", "user_id": local_id(fourth)},
        headers={"Authorization": f"Bearer {token}"})
    error(response, 403, "insufficient_scope")

    # Unlinking: the main identity stays; an identity that is not linked is not found.
    error(await bastion.management("DELETE", f"/users/{primary['user_id']}/identities/auth0/{local_id(primary)}"),
          400, "operation_not_supported")
    error(await bastion.management("DELETE", f"/users/{primary['user_id']}/identities/auth0/{local_id(third)}"),
          404, "inexistent_identity")
    error(await bastion.management("DELETE", f"/users/{secondary['user_id']}/identities/auth0/{local_id(secondary)}"),
          404, "inexistent_user")


# -- logging in with a secondary's credentials ----------------------------------------------


async def test_the_secondarys_password_logs_in_the_primary(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    assert (await link(bastion, primary, secondary)).status_code == 201
    await add_rule(bastion, '''
def rule(user, context, api):
    context.id_token["https://example.com/connection"] = context.connection
    return user, context
''')

    # The code flow: the tokens, the log event and the SSO session are the primary's; the rules
    # and the log event name the connection the credentials were checked in (the secondary's).
    tokens = await bastion.code_tokens(client, email="pat.work@example.com", password=SECONDARY_PASSWORD)
    claims = claims_of(tokens["id_token"])
    assert claims["sub"] == primary["user_id"] and claims["email"] == "pat@example.com" and claims["name"] == "Pat Primary"
    assert claims["https://example.com/connection"] == DEFAULT_CONNECTION
    assert claims_of(tokens["access_token"])["sub"] == primary["user_id"]
    event = (await logs(bastion, "s"))[0]
    assert (event["user_id"], event["connection"]) == (primary["user_id"], DEFAULT_CONNECTION)
    silent = await bastion.authorize(client, prompt="none")
    assert "code" in query_of(silent.headers["location"]), silent.headers["location"]

    # The password grant (with and without realm), and the primary's own password.
    granted = await password_grant(bastion, client, "pat.work@example.com", SECONDARY_PASSWORD)
    assert granted.status_code == 200, granted.text
    assert claims_of(granted.json()["id_token"])["sub"] == primary["user_id"]
    realm = await password_grant(bastion, client, "patwork", SECONDARY_PASSWORD, grant_type=REALM_GRANT, realm=DEFAULT_CONNECTION)
    realm_claims = claims_of(realm.json()["id_token"])
    assert (realm_claims["sub"], realm_claims["https://example.com/connection"]) == (primary["user_id"], DEFAULT_CONNECTION)
    own = await password_grant(bastion, client, "pat@example.com", PASSWORD, grant_type=REALM_GRANT, realm=PARTNER)
    own_claims = claims_of(own.json()["id_token"])
    assert (own_claims["sub"], own_claims["https://example.com/connection"]) == (primary["user_id"], PARTNER)

    # A wrong password is counted on the account whose password it is.
    wrong = await password_grant(bastion, client, "pat.work@example.com", "not-the-password")
    assert wrong.status_code == 403
    assert (await logs(bastion, "fp"))[0]["user_id"] == secondary["user_id"]
    assert (await bastion.management("GET", f"/users/{primary['user_id']}")).json()["logins_count"] == 5  # code flow, silent login, three grants

    # Blocking the primary blocks the secondary's credentials too.
    await bastion.management("PATCH", f"/users/{primary['user_id']}", json={"blocked": True})
    blocked = await password_grant(bastion, client, "pat.work@example.com", SECONDARY_PASSWORD)
    assert blocked.status_code == 401 and blocked.json()["error"] == "unauthorized"


async def test_a_passwordless_secondary_logs_in_the_primary(bastion, mailbox):  # noqa: F811 - the fixture
    bastion.settings.smtp_host = "127.0.0.1"
    bastion.settings.smtp_port = mailbox.port
    client = await bastion.create_client(grant_types=["authorization_code", "password", OTP_GRANT])
    response = await bastion.management("POST", "/connections", json={
        "name": "email", "strategy": "email", "enabled_clients": [client["client_id"]]})
    assert response.status_code == 201, response.text
    primary = await bastion.create_user(email="pat@example.com", email_verified=True)

    async def otp_login() -> dict:
        start = await bastion.http.post("/passwordless/start", json={
            "client_id": client["client_id"], "client_secret": client["client_secret"], "connection": "email",
            "email": "pat.mobile@example.com", "send": "code"})
        assert start.status_code == 200, start.text
        tokens = await bastion.http.post("/oauth/token", data={
            "grant_type": OTP_GRANT, "client_id": client["client_id"], "client_secret": client["client_secret"],
            "username": "pat.mobile@example.com", "otp": mailbox.code("pat.mobile@example.com"), "realm": "email",
            "scope": "openid email"})
        assert tokens.status_code == 200, tokens.text
        return claims_of(tokens.json()["id_token"])

    first = await otp_login()  # creates the passwordless user, its email verified by the code
    assert first["sub"].startswith("email|")
    response = await bastion.management("POST", f"/users/{primary['user_id']}/identities", json={
        "provider": "email", "user_id": first["sub"].split("|", 1)[1]})
    assert response.status_code == 201, response.text
    assert response.json()[1]["connection"] == "email"

    again = await otp_login()
    assert again["sub"] == primary["user_id"] and again["email"] == "pat@example.com"


async def test_unlinking_makes_the_secondary_a_user_of_its_own_again(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    assert (await link(bastion, primary, secondary)).status_code == 201

    response = await bastion.management("DELETE", f"/users/{primary['user_id']}/identities/auth0/{local_id(secondary)}")
    assert response.status_code == 200, response.text
    assert response.json() == [{"connection": PARTNER, "user_id": local_id(primary), "provider": "auth0", "isSocial": False}]

    restored = await bastion.management("GET", f"/users/{secondary['user_id']}")
    assert restored.status_code == 200 and restored.json()["name"] == "Patricia Work"
    assert len((await bastion.management("GET", "/users")).json()) == 2
    granted = await password_grant(bastion, client, "pat.work@example.com", SECONDARY_PASSWORD)
    assert claims_of(granted.json()["id_token"])["sub"] == secondary["user_id"]

    # The full user id names the identity too; it can be linked again.
    assert (await link(bastion, primary, secondary)).status_code == 201
    path = f"/users/{primary['user_id']}/identities/auth0/{secondary['user_id']}"
    assert len((await bastion.management("DELETE", path)).json()) == 1


async def test_deleting_a_primary_deletes_its_secondaries(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    assert (await link(bastion, primary, secondary)).status_code == 201
    assert (await bastion.management("DELETE", f"/users/{secondary['user_id']}")).status_code == 404

    assert (await bastion.management("DELETE", f"/users/{primary['user_id']}")).status_code == 204
    async with bastion.services.database.reader() as session:
        assert await user_store.get_user(session, user_id=secondary["user_id"]) is None
        assert await user_store.find_users_by_identity(session, provider="auth0", external_id=local_id(secondary)) == []
    refused = await password_grant(bastion, client, "pat.work@example.com", SECONDARY_PASSWORD)
    assert refused.status_code == 403 and refused.json()["error"] == "invalid_grant"
    # The address is free again.
    await bastion.create_user(email="pat.work@example.com")


# -- rules ---------------------------------------------------------------------------------

PROFILE_RULE = '''
def rule(user, context, api):
    secondary = user.identities[1].profile_data
    context.id_token["https://example.com/work_email"] = secondary["email"]
    context.id_token["https://example.com/identities"] = [i.connection for i in user.identities]
    # Auth0's "add missing profile info from secondary identities" (family_name is missing here).
    if not user.get("family_name"):
        for identity in user.identities:
            if identity.profile_data.get("family_name"):
                user.family_name = identity.profile_data["family_name"]
                break
'''


async def test_rules_see_every_identity_with_its_profile_data(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    assert (await link(bastion, primary, secondary)).status_code == 201
    await add_rule(bastion, PROFILE_RULE)

    claims = claims_of((await bastion.code_tokens(client, email="pat.work@example.com", password=SECONDARY_PASSWORD))["id_token"])
    assert claims["sub"] == primary["user_id"]
    assert claims["https://example.com/work_email"] == "pat.work@example.com"
    assert claims["https://example.com/identities"] == [PARTNER, DEFAULT_CONNECTION]
    assert claims["family_name"] == "Worker"


SWITCH_RULE = '''
def rule(user, context, api):
    if context.protocol == "redirect-callback":
        # The linking page linked this user to another account and names it.
        context.primary_user = context.request.query.get("primary")
        context.id_token["https://example.com/rules_user"] = user.user_id
        return
    if user.email == "pat.work@example.com":
        context.redirect = {"url": "https://link.example.com/offer"}
'''


async def _paused_at_the_linking_page(bastion, client: dict) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    response = await bastion.login(
        client, email="pat.work@example.com", password=SECONDARY_PASSWORD, code_challenge=s256(verifier),
        code_challenge_method="S256",
    )
    assert response.headers["location"].startswith("https://link.example.com/offer?state="), response.text
    return query_of(response.headers["location"])["state"], verifier


async def _exchange(bastion, client: dict, location: str, verifier: str) -> dict:
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": query_of(location)["code"], "redirect_uri": client["callbacks"][0],
        "code_verifier": verifier, "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert response.status_code == 200, response.text
    return response.json()


async def test_context_primary_user_continues_the_login_as_the_primary_just_linked(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    await add_rule(bastion, SWITCH_RULE)
    state, verifier = await _paused_at_the_linking_page(bastion, client)

    # The external page links the accounts (Auth0's account-link pattern), then sends the browser back.
    assert (await link(bastion, primary, secondary)).status_code == 201
    back = await bastion.http.get("/continue", params={"state": state, "primary": primary["user_id"]})
    assert back.status_code == 302 and "code" in query_of(back.headers["location"]), back.headers["location"]
    tokens = await _exchange(bastion, client, back.headers["location"], verifier)
    claims = claims_of(tokens["id_token"])
    assert claims["sub"] == primary["user_id"] and claims["email"] == "pat@example.com"
    assert claims["https://example.com/rules_user"] == secondary["user_id"]  # the rules ran for the one logging in
    assert claims_of(tokens["access_token"])["sub"] == primary["user_id"]
    event = (await logs(bastion, "s"))[0]
    assert event["user_id"] == primary["user_id"] and event["details"]["rules_execution"]["warnings"] == []

    # The SSO session is the primary's: a silent login answers for it.
    verifier = secrets.token_urlsafe(48)
    silent = await bastion.authorize(client, prompt="none", code_challenge=s256(verifier), code_challenge_method="S256")
    again = await _exchange(bastion, client, silent.headers["location"], verifier)
    assert claims_of(again["id_token"])["sub"] == primary["user_id"]


async def test_context_primary_user_must_be_the_users_primary(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    stranger = await bastion.create_user(email="stranger@example.com", email_verified=True)
    await add_rule(bastion, SWITCH_RULE)

    # Not linked at all: naming any user fails the login closed.
    state, _ = await _paused_at_the_linking_page(bastion, client)
    back = await bastion.http.get("/continue", params={"state": state, "primary": stranger["user_id"]})
    assert query_of(back.headers["location"])["error"] == "access_denied"
    event = (await logs(bastion, "f"))[0]
    assert event["user_id"] == secondary["user_id"]
    assert any("context.primary_user" in w for w in event["details"]["rules_execution"]["warnings"])

    # Linked to the primary, but the rule names someone else, or no user at all.
    assert (await link(bastion, primary, secondary)).status_code == 201
    await bastion.management("DELETE", f"/users/{primary['user_id']}/identities/auth0/{local_id(secondary)}")
    for named in (stranger["user_id"], "auth0|nobody"):
        state, _ = await _paused_at_the_linking_page(bastion, client)
        assert (await link(bastion, primary, secondary)).status_code == 201
        back = await bastion.http.get("/continue", params={"state": state, "primary": named})
        assert query_of(back.headers["location"])["error"] == "access_denied"
        await bastion.management("DELETE", f"/users/{primary['user_id']}/identities/auth0/{local_id(secondary)}")


async def test_context_primary_user_on_the_password_grant(bastion):
    client = await bastion.create_client()
    primary, secondary = await two_users(bastion, client)
    stranger = await bastion.create_user(email="stranger@example.com", email_verified=True)
    rule_id = await add_rule(bastion, f'''
def rule(user, context, api):
    context.primary_user = "{stranger['user_id']}"
''')
    # The logging-in user is linked to nobody: a switch to an arbitrary user is refused.
    refused = await password_grant(bastion, client, "pat.work@example.com", SECONDARY_PASSWORD)
    assert refused.status_code == 403 and refused.json()["error"] == "access_denied", refused.text
    assert (await logs(bastion, "f"))[0]["user_id"] == secondary["user_id"]

    # Naming the user's own primary is allowed (here the login is already the primary's).
    await bastion.management("DELETE", f"/rules/{rule_id}")
    await add_rule(bastion, f'''
def rule(user, context, api):
    context.primary_user = "{primary['user_id']}"
''')
    bastion.services.tenant.invalidate()
    assert (await link(bastion, primary, secondary)).status_code == 201
    granted = await password_grant(bastion, client, "pat.work@example.com", SECONDARY_PASSWORD)
    assert granted.status_code == 200, granted.text
    assert claims_of(granted.json()["id_token"])["sub"] == primary["user_id"]
