"""Auth0's /api/v2/tenants/settings on both databases, through the real HTTP API: the stored
settings (defaults, Auth0's PATCH merge, hours and minutes, the 400s and 403s), and each
setting that changes what Bastion does (docs/management-api.md "Tenant settings")."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import update

from bastion.storage.tables import SsoSessionRow
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from conftest import PASSWORD, query_of
from test_management_api import assert_error, bearer

pytestmark = pytest.mark.postgres

API = "https://api.test"
REALM_GRANT = "http://auth0.com/oauth/grant-type/password-realm"


# -- helpers ---------------------------------------------------------------------------------


async def get_settings(bastion, **params) -> dict:
    response = await bastion.management("GET", "/tenants/settings", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def patch_settings(bastion, body: dict) -> dict:
    response = await bastion.management("PATCH", "/tenants/settings", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def audiences(token: str) -> list[str]:
    aud = claims_of(token)["aud"]
    return aud if isinstance(aud, list) else [aud]


async def password_grant(bastion, client: dict, username: str = "alice@example.com", **extra) -> httpx.Response:
    """grant_type=password: no realm, so the tenant's default directory."""
    return await bastion.http.post("/oauth/token", data={
        "grant_type": "password", "username": username, "password": PASSWORD, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": "openid", **extra,
    })


async def age_sso_sessions(bastion, *, created: timedelta = timedelta(0), idle: timedelta = timedelta(0)) -> None:
    """Move every SSO session's start (`created`) or last use (`idle`) into the past."""
    now = datetime.now(timezone.utc)
    async with bastion.services.database.transaction() as session:
        await session.execute(update(SsoSessionRow).values(created_at=now - created, last_seen_at=now - idle))


async def answered_from_sso(bastion, client: dict) -> bool:
    """Whether /authorize answers the client at once (a live SSO session) rather than showing the login page."""
    response = await bastion.authorize(client)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    if location.startswith("/u/login"):
        return False
    assert location.startswith(client["callbacks"][0]) and "code" in query_of(location), location
    return True


def session_cookie_header(response: httpx.Response) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith("bastion_session=")]
    return header


# -- GET: the defaults are Bastion's configuration ---------------------------------------------


async def test_get_answers_bastion_defaults(bastion):
    body = await get_settings(bastion)
    settings = bastion.settings
    assert body["friendly_name"] == "Bastion"
    assert body["session_lifetime"] == settings.session_lifetime / 3600 == 168
    assert body["session_lifetime_in_minutes"] == settings.session_lifetime // 60
    assert body["idle_session_lifetime"] == settings.session_idle_lifetime / 3600 == 72
    assert body["idle_session_lifetime_in_minutes"] == settings.session_idle_lifetime // 60
    assert body["default_directory"] == DEFAULT_CONNECTION
    assert body["default_audience"] == ""
    assert body["enabled_locales"] == ["en"]
    assert body["session_cookie"] == {"mode": "persistent"}
    assert body["flags"] == {}
    assert body["picture_url"] == body["support_email"] == body["support_url"] == ""
    assert body["allowed_logout_urls"] == []


async def test_default_lifetimes_follow_the_process_settings(bastion_with):
    async with bastion_with(session_lifetime=3 * 3600, session_idle_lifetime=1800) as bastion:
        body = await get_settings(bastion)
    assert (body["session_lifetime"], body["session_lifetime_in_minutes"]) == (3, 180)
    assert (body["idle_session_lifetime"], body["idle_session_lifetime_in_minutes"]) == (0.5, 30)


async def test_fields_and_include_fields_pick_top_level_settings(bastion):
    picked = await get_settings(bastion, fields="friendly_name,session_lifetime", include_fields="true")
    assert picked == {"friendly_name": "Bastion", "session_lifetime": 168}
    dropped = await get_settings(bastion, fields="friendly_name,flags", include_fields="false")
    assert "friendly_name" not in dropped and "flags" not in dropped and dropped["default_directory"] == DEFAULT_CONNECTION
    default_include = await get_settings(bastion, fields="enabled_locales")
    assert default_include == {"enabled_locales": ["en"]}


# -- PATCH -----------------------------------------------------------------------------------


async def test_deploy_cli_import_then_export_gets_back_what_it_wrote(bastion):
    """auth0-deploy-cli's import body (hours converted to minutes), then its export GET."""
    written = {"friendly_name": "Acme", "enabled_locales": ["en", "fr-CA", "es-419"],
               "session_lifetime_in_minutes": 90, "idle_session_lifetime_in_minutes": 30}
    answered = await patch_settings(bastion, written)
    exported = await get_settings(bastion)
    for body in (answered, exported):
        assert {k: body[k] for k in written} == written
        assert body["session_lifetime"] == 1.5 and body["idle_session_lifetime"] == 0.5  # the hours follow
        assert body["default_directory"] == DEFAULT_CONNECTION  # untouched settings keep their defaults


async def test_hours_and_minutes_are_two_views_of_one_lifetime(bastion):
    body = await patch_settings(bastion, {"session_lifetime": 2, "idle_session_lifetime": 0.25})
    assert (body["session_lifetime"], body["session_lifetime_in_minutes"]) == (2, 120)
    assert (body["idle_session_lifetime"], body["idle_session_lifetime_in_minutes"]) == (0.25, 15)
    body = await patch_settings(bastion, {"session_lifetime_in_minutes": 45})
    assert (body["session_lifetime"], body["session_lifetime_in_minutes"]) == (0.75, 45)
    assert body["idle_session_lifetime_in_minutes"] == 15  # the other lifetime is left alone
    # both views at once: the minutes decide; hours that agree are kept as written
    body = await patch_settings(bastion, {"session_lifetime": 3, "session_lifetime_in_minutes": 180})
    assert (body["session_lifetime"], body["session_lifetime_in_minutes"]) == (3, 180)
    body = await patch_settings(bastion, {"session_lifetime": 3, "session_lifetime_in_minutes": 30})
    assert (body["session_lifetime"], body["session_lifetime_in_minutes"]) == (0.5, 30)
    assert (await get_settings(bastion))["session_lifetime_in_minutes"] == 30
    body = await patch_settings(bastion, {"session_lifetime": 4})  # hours alone, after minutes were written
    assert (body["session_lifetime"], body["session_lifetime_in_minutes"]) == (4, 240)
    assert (await get_settings(bastion))["session_lifetime_in_minutes"] == 240


async def test_flags_are_merged_key_by_key(bastion):
    await patch_settings(bastion, {"flags": {"enable_client_connections": False, "enable_sso": True}})
    body = await patch_settings(bastion, {"flags": {"revoke_refresh_token_grant": True}, "support_email": "help@acme.test"})
    assert body["flags"] == {"enable_client_connections": False, "enable_sso": True, "revoke_refresh_token_grant": True}
    body = await patch_settings(bastion, {"flags": {"enable_sso": False}})
    assert body["flags"] == {"enable_client_connections": False, "enable_sso": False, "revoke_refresh_token_grant": True}
    assert (await get_settings(bastion))["flags"] == body["flags"]
    assert body["support_email"] == "help@acme.test"  # a setting not sent is kept


async def test_concurrent_patches_lose_no_change(bastion):
    names = [f"flag_{i}" for i in range(6)]
    responses = await asyncio.gather(*(bastion.management("PATCH", "/tenants/settings", json={"flags": {n: True}}) for n in names))
    assert [r.status_code for r in responses] == [200] * len(names), [r.text for r in responses]
    assert (await get_settings(bastion))["flags"] == dict.fromkeys(names, True)


async def test_null_resets_a_nullable_setting_to_its_default(bastion):
    body = await patch_settings(bastion, {"session_cookie": {"mode": "non-persistent"}, "error_page": {"url": "https://acme.test/error"}})
    assert body["session_cookie"] == {"mode": "non-persistent"} and body["error_page"] == {"url": "https://acme.test/error"}
    body = await patch_settings(bastion, {"session_cookie": None, "error_page": None})
    assert body["session_cookie"] == {"mode": "persistent"}
    assert "error_page" not in body


async def test_settings_from_an_auth0_export_are_kept(bastion):
    """Properties Bastion stores without acting on them still round-trip (an Auth0 tenant.json imports)."""
    written = {"sandbox_version": "18", "default_redirection_uri": "https://acme.test/login",
               "change_password": {"enabled": True, "html": "<p>{{ticket}}</p>"}, "device_flow": {"charset": "digits", "mask": "***-***"},
               "oidc_logout": {"rp_logout_end_session_endpoint_discovery": True}, "customize_mfa_in_postlogin_action": False}
    await patch_settings(bastion, written)
    body = await get_settings(bastion)
    assert {k: body[k] for k in written} == written


@pytest.mark.parametrize("body, message", [
    ({"friendly_name": "Acme", "not_a_setting": 1}, "Payload validation error: 'Additional properties not allowed: not_a_setting'."),
    ({"sandbox_versions_available": ["18"]}, "Payload validation error: 'Additional properties not allowed: sandbox_versions_available'."),
    ({}, "Payload validation error: 'Too few properties defined (0), minimum 1'."),
    ({"friendly_name": 5}, "Payload validation error: 'Expected type string but found type integer' on property friendly_name."),
    ({"friendly_name": None}, "Payload validation error: 'Expected type string but found type null' on property friendly_name."),
    ({"session_lifetime": "168"}, "Payload validation error: 'Expected type number but found type string' on property session_lifetime."),
    ({"session_lifetime_in_minutes": 1.5}, None),
    ({"session_lifetime_in_minutes": 0}, None),
    ({"idle_session_lifetime": 10000}, None),
    ({"flags": {"enable_sso": "yes"}}, "Payload validation error: 'Expected type boolean but found type string' on property flags.enable_sso."),
    ({"flags": ["enable_sso"]}, "Payload validation error: 'Expected type object but found type array' on property flags."),
    ({"enabled_locales": "en"}, None),
    ({"enabled_locales": []}, None),
    ({"enabled_locales": ["english"]}, None),
    ({"session_cookie": {"mode": "forever"}}, "Payload validation error: 'No enum match for: \"forever\"' on property session_cookie.mode."),
    ({"session_cookie": {"mode": "persistent", "secure": True}}, "Payload validation error: 'Additional properties not allowed: secure' on property session_cookie."),
    ({"picture_url": "javascript:alert(1)"}, None),
    ({"support_email": "not an email"}, None),
    ({"default_redirection_uri": "http://acme.test/login"}, None),
    ({"allowed_logout_urls": ["not-a-url"]}, None),
    ([{"friendly_name": "Acme"}], "Payload validation error: 'Expected type object but found type array'."),
])
async def test_invalid_bodies_are_400_invalid_body_and_change_nothing(bastion, body, message):
    before = await get_settings(bastion)
    response = await bastion.management("PATCH", "/tenants/settings", json=body)
    error = assert_error(response, 400, "invalid_body")
    if message is not None:
        assert error["message"] == message
    assert await get_settings(bastion) == before


async def test_a_body_that_is_not_json_is_400(bastion):
    response = await bastion.management("PATCH", "/tenants/settings", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_body")


async def test_scopes_read_and_update_tenant_settings_are_required(bastion):
    other = await bastion.management_token(scope="read:users update:clients")
    assert_error(await bastion.http.get("/api/v2/tenants/settings", headers=bearer(other)), 403, "insufficient_scope")
    refused = await bastion.http.patch("/api/v2/tenants/settings", headers=bearer(other), json={"friendly_name": "Evil"})
    assert_error(refused, 403, "insufficient_scope")

    reader = await bastion.management_token(scope="read:tenant_settings")
    assert (await bastion.http.get("/api/v2/tenants/settings", headers=bearer(reader))).status_code == 200
    refused = await bastion.http.patch("/api/v2/tenants/settings", headers=bearer(reader), json={"friendly_name": "Evil"})
    assert_error(refused, 403, "insufficient_scope")

    writer = await bastion.management_token(scope="update:tenant_settings")
    response = await bastion.http.patch("/api/v2/tenants/settings", headers=bearer(writer), json={"friendly_name": "Acme"})
    assert response.status_code == 200, response.text
    assert (await get_settings(bastion))["friendly_name"] == "Acme"
    assert_error(await bastion.http.get("/api/v2/tenants/settings"), 401)


async def test_the_bootstrap_client_is_granted_both_scopes(bastion):
    scopes = claims_of(await bastion.management_token())["scope"].split()
    assert {"read:tenant_settings", "update:tenant_settings"} <= set(scopes)


# -- what takes effect ---------------------------------------------------------------------------


async def test_default_audience_applies_to_the_password_grants_and_authorize(bastion):
    await bastion.create_api(API)
    client = await bastion.create_client()
    await bastion.create_user()
    before = await password_grant(bastion, client)
    assert before.status_code == 200, before.text
    assert API not in audiences(before.json()["access_token"])

    await patch_settings(bastion, {"default_audience": API})

    for response in (await password_grant(bastion, client), await password_grant(bastion, client, grant_type=REALM_GRANT, realm=DEFAULT_CONNECTION)):
        assert response.status_code == 200, response.text
        assert audiences(response.json()["access_token"])[0] == API
    tokens = await bastion.code_tokens(client)  # /authorize without an audience
    assert audiences(tokens["access_token"])[0] == API
    # a request that names an audience keeps it
    named = await password_grant(bastion, client, audience=bastion.settings.management_audience)
    assert named.status_code == 200 and API not in audiences(named.json()["access_token"])


async def test_default_audience_applies_to_client_credentials(bastion):
    await bastion.create_api(API)
    machine = (await bastion.management("POST", "/clients", json={"name": "Backend", "app_type": "non_interactive"})).json()
    grant = await bastion.management("POST", "/client-grants", json={"client_id": machine["client_id"], "audience": API, "scope": ["read:things"]})
    assert grant.status_code == 201, grant.text
    form = {"grant_type": "client_credentials", "client_id": machine["client_id"], "client_secret": machine["client_secret"]}
    refused = await bastion.http.post("/oauth/token", data=form)
    assert refused.status_code == 403 and "no default audience" in refused.json()["error_description"]

    await patch_settings(bastion, {"default_audience": API})

    response = await bastion.http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    assert audiences(response.json()["access_token"]) == [API] and response.json()["scope"] == "read:things"


async def test_default_directory_picks_the_password_grant_connection(bastion):
    client = await bastion.create_client()
    created = await bastion.management("POST", "/connections", json={
        "name": "Employees", "strategy": "auth0", "enabled_clients": [client["client_id"]],
    })
    assert created.status_code == 201, created.text
    user = await bastion.management("POST", "/users", json={"connection": "Employees", "email": "emp@acme.test", "password": PASSWORD})
    assert user.status_code == 201, user.text
    before = await password_grant(bastion, client, username="emp@acme.test")
    assert before.status_code == 403 and before.json()["error"] == "invalid_grant"  # not in the default connection

    await patch_settings(bastion, {"default_directory": "Employees"})

    response = await password_grant(bastion, client, username="emp@acme.test")
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["id_token"])["sub"] == user.json()["user_id"]
    # back to the default: "" means none set
    assert (await patch_settings(bastion, {"default_directory": ""}))["default_directory"] == ""
    assert (await password_grant(bastion, client, username="emp@acme.test")).status_code == 403


async def test_a_shorter_session_lifetime_ends_existing_sso_sessions(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    assert (await bastion.login(client)).status_code == 302
    await age_sso_sessions(bastion, created=timedelta(minutes=20))
    assert await answered_from_sso(bastion, client)  # the default lifetime (7 days): still live

    await patch_settings(bastion, {"session_lifetime_in_minutes": 10})

    assert not await answered_from_sso(bastion, client)


async def test_a_shorter_idle_lifetime_ends_idle_sso_sessions(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    assert (await bastion.login(client)).status_code == 302
    await age_sso_sessions(bastion, idle=timedelta(minutes=20))
    assert await answered_from_sso(bastion, client)  # the default idle lifetime (3 days): still live

    await patch_settings(bastion, {"idle_session_lifetime": 0.25})  # 15 minutes
    await age_sso_sessions(bastion, idle=timedelta(minutes=20))

    assert not await answered_from_sso(bastion, client)


async def test_new_sso_sessions_take_the_tenant_lifetime_and_cookie_mode(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await patch_settings(bastion, {"session_lifetime_in_minutes": 30})
    response = await bastion.login(client)
    assert response.status_code == 302
    assert "max-age=1800" in session_cookie_header(response).lower()
    async with bastion.services.database.reader() as session:
        [row] = (await session.execute(SsoSessionRow.__table__.select())).all()
    assert abs((row.expires_at - row.created_at).total_seconds() - 1800) < 5

    await patch_settings(bastion, {"session_cookie": {"mode": "non-persistent"}})
    bastion.http.cookies.clear()
    response = await bastion.login(client)
    header = session_cookie_header(response).lower()
    assert "max-age" not in header and "expires" not in header  # ends with the browser


async def test_the_login_page_shows_friendly_name_and_logo(bastion):
    client = await bastion.create_client()
    response = await bastion.authorize(client)
    before = await bastion.http.get(response.headers["location"])
    assert "Acme Corporation" not in before.text and "<title>Log in · Bastion</title>" in before.text

    await patch_settings(bastion, {"friendly_name": "Acme Corporation", "picture_url": "https://cdn.acme.test/logo.png"})

    response = await bastion.authorize(client)
    page = await bastion.http.get(response.headers["location"])
    assert page.status_code == 200
    assert "<title>Log in · Acme Corporation</title>" in page.text
    assert "Log in to <span class=\"tenant\">Acme Corporation</span>" in page.text
    assert '<img class="logo" src="https://cdn.acme.test/logo.png" alt="Acme Corporation">' in page.text
    signup = await bastion.http.get("/u/signup", params={"state": query_of(response.headers["location"])["state"]})
    assert "<title>Sign up · Acme Corporation</title>" in signup.text and 'class="logo"' in signup.text


async def test_tenant_allowed_logout_urls_admit_a_return_to_without_client_id(bastion):
    refused = await bastion.http.get("/v2/logout", params={"returnTo": "https://acme.test/bye"})
    assert refused.status_code == 400

    await patch_settings(bastion, {"allowed_logout_urls": ["https://acme.test/bye"]})

    out = await bastion.http.get("/v2/logout", params={"returnTo": "https://acme.test/bye"})
    assert out.status_code == 302 and out.headers["location"] == "https://acme.test/bye"
    other = await bastion.http.get("/v2/logout", params={"returnTo": "https://evil.test/"})
    assert other.status_code == 400


async def test_a_patch_takes_effect_at_once_through_the_tenant_cache(bastion_with):
    """With a long cache lifetime, the PATCH still shows at once: it invalidates the tenant cache."""
    async with bastion_with(cache_ttl=300.0) as bastion:
        client = await bastion.create_client()
        first = await bastion.http.get((await bastion.authorize(client)).headers["location"])
        assert "Log in · Bastion" in first.text  # the settings are cached now
        await patch_settings(bastion, {"friendly_name": "Acme Corporation"})
        page = await bastion.http.get((await bastion.authorize(client)).headers["location"])
        assert "Log in · Acme Corporation" in page.text
