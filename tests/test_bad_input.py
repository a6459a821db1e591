"""Hostile and malformed requests to every public endpoint: a clear error, never a 500 or a traceback."""

from __future__ import annotations

import pytest

HOSTILE_BODIES = [
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2, 3]"),
    ("application/json", b'{"client_id": {"$ne": null}, "grant_type": ["a", "b"]}'),
    ("application/json", "{\"client_id\": \"\u0000\u202e\"}".encode()),
    ("application/x-www-form-urlencoded", b"client_id=%ZZ&grant_type=%"),
    ("application/x-www-form-urlencoded", b"\xff\xfe\xfa=\xff"),
    ("application/x-www-form-urlencoded", b"grant_type=password&grant_type=client_credentials"),
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x"),
    ("text/plain", b"hello"),
    ("application/xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"),
]

POST_ENDPOINTS = [
    "/oauth/token", "/oauth/revoke", "/userinfo", "/dbconnections/signup", "/dbconnections/change_password",
    "/u/login", "/u/signup", "/u/reset-password", "/authorize", "/oidc/logout",
    "/continue", "/continue?state=a.b", "/u/consent", "/u/mfa/otp", "/u/mfa/otp/enroll", "/u/mfa/recovery", "/u/mfa/continue",
    "/mfa/associate", "/mfa/challenge",
]

GET_REQUESTS = [
    "/authorize?client_id=%00&response_type=code",
    "/authorize?client_id=" + "a" * 5000,
    "/authorize?response_type=code",
    "/u/login?state=" + "x" * 5000,
    "/u/login",
    "/u/signup?state=nope",
    "/u/reset-password?ticket=a.b",
    "/u/reset-password",
    "/v2/logout?returnTo=javascript:alert(1)",
    "/oidc/logout?id_token_hint=not.a.jwt",
    "/oidc/logout?post_logout_redirect_uri=https://evil.test/",
    "/userinfo",
    "/api/v2/users?page=-1",
    "/api/v2/users/%00",
    "/no/such/path",
    "/continue",
    "/continue?state=" + "x" * 5000,
    "/continue?state=eyJ0IjoxfQ.AAAA",
    "/continue?state=%00",
    "/u/consent?state=nope",
    "/u/mfa",
    "/u/mfa?state=" + "y" * 70,
    "/u/mfa/otp/enroll?state=nope",
    "/u/mfa/recovery",
    "/mfa/authenticators",
    "/api/v2/grants?user_id=%00",
]


def _clean(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.parametrize("path", POST_ENDPOINTS)
async def test_malformed_bodies_get_clear_errors(bastion_sqlite, path):
    for content_type, body in HOSTILE_BODIES:
        response = await bastion_sqlite.http.post(path, content=body, headers={"Content-Type": content_type})
        _clean(response)
        assert response.status_code >= 400 or path == "/oidc/logout", (path, content_type, response.status_code)


async def test_mfa_api_refuses_unknown_and_missing_tokens(bastion_sqlite):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Bearer " + "x" * 500}):
        response = await bastion_sqlite.http.get("/mfa/authenticators", headers=headers)
        assert response.status_code == 401 and response.json()["error"] in ("unauthorized", "invalid_token")
    grant = await bastion_sqlite.http.post("/oauth/token", data={
        "grant_type": "http://auth0.com/oauth/grant-type/mfa-otp", "mfa_token": "forged", "otp": "123456", "client_id": "nope",
    })
    assert grant.status_code in (400, 401, 403) and "error" in grant.json()


@pytest.mark.parametrize("url", GET_REQUESTS)
async def test_malformed_queries_get_clear_errors(bastion_sqlite, url):
    response = await bastion_sqlite.http.get(url)
    _clean(response)
    assert response.status_code in (302, 400, 401, 403, 404), (url, response.status_code)


async def test_oversized_bodies_are_refused_with_413(bastion_sqlite):
    big = b"a=" + b"x" * (70 * 1024)
    for path in ("/oauth/token", "/u/login", "/api/v2/users"):
        response = await bastion_sqlite.http.post(path, content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413


async def test_a_failed_request_changes_nothing(bastion_sqlite):
    before = await bastion_sqlite.management("GET", "/users?include_totals=true")
    for content_type, body in HOSTILE_BODIES:
        await bastion_sqlite.http.post("/dbconnections/signup", content=body, headers={"Content-Type": content_type})
    after = await bastion_sqlite.management("GET", "/users?include_totals=true")
    assert after.json()["total"] == before.json()["total"]


async def test_nul_characters_in_paths_and_queries_are_refused_on_every_database(bastion):
    client = await bastion.create_client()
    for path in ("/api/v2/users/auth0%7C%00", "/api/v2/clients/%00", "/api/v2/users?q=email:%00"):
        response = await bastion.management("GET", path)
        assert response.status_code == 400 and response.json()["errorCode"] == "invalid_query_string"
    for url in (f"/authorize?client_id={client['client_id']}%00&response_type=code", "/u/login?state=abc%00def",
                "/v2/logout?client_id=%00&returnTo=https://app.test/logged-out"):
        _clean(await bastion.http.get(url))


async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(bastion_with):
    for proxies, expected in (([], "203.0.113.7"), (["203.0.113.0/24"], "198.51.100.23")):
        async with bastion_with(trusted_proxies=proxies) as bastion:
            client = await bastion.create_client()
            await bastion.create_user()
            response = await bastion.http.post("/oauth/token", headers={"X-Forwarded-For": "198.51.100.23, 203.0.113.9"}, data={
                "grant_type": "http://auth0.com/oauth/grant-type/password-realm", "realm": "Username-Password-Authentication",
                "username": "alice@example.com", "password": "wrong", "client_id": client["client_id"], "client_secret": client["client_secret"]})
            assert response.status_code == 403
            logs = (await bastion.management("GET", "/logs?q=type:fp")).json()
            assert logs[0]["ip"] == expected


async def test_unstorable_text_in_management_bodies_is_a_400_on_every_database(bastion):
    for body in ('{"name": "a\\u0000b"}', '{"name": "x", "description": "\\ud800"}', '{"name": "x", "client_metadata": {"\\u0000": "v"}}'):
        response = await bastion.management("POST", "/clients", content=body.encode(), headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.json()["errorCode"] == "invalid_body", body
    fine = await bastion.management("POST", "/clients", content='{"name": "emoji \\ud83d\\ude00"}'.encode(), headers={"Content-Type": "application/json"})
    assert fine.status_code == 201 and fine.json()["name"] == "emoji \U0001F600"
