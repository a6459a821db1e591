"""POST /oauth/token (every grant but the code flow), /oauth/revoke and /userinfo, on both databases."""

from __future__ import annotations

import base64
import json

import pytest

from bastion.keys.jose import JoseError, public_keyset, verify_jwt

from conftest import ISSUER, PASSWORD

REALM_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
REALM = "Username-Password-Authentication"
API = "https://api.test"


# -- helpers ---------------------------------------------------------------


async def _jwks(bastion):
    return public_keyset((await bastion.http.get("/.well-known/jwks.json")).json()["keys"])


def _creds(client: dict) -> dict:
    return {"client_id": client["client_id"], "client_secret": client["client_secret"]}


async def _token(bastion, client: dict, **params):
    return await bastion.http.post("/oauth/token", data={**_creds(client), **params})


async def _password_grant(bastion, client: dict, *, username: str = "alice@example.com", password: str = PASSWORD, **params):
    return await _token(bastion, client, grant_type="password", username=username, password=password, **params)


async def _refresh_tokens(bastion, client: dict, scope: str = "openid profile email offline_access") -> dict:
    response = await _password_grant(bastion, client, scope=scope)
    assert response.status_code == 200, response.text
    assert "refresh_token" in response.json()
    return response.json()


async def _refresh(bastion, client: dict, refresh_token: str, **params):
    return await _token(bastion, client, grant_type="refresh_token", refresh_token=refresh_token, **params)


async def _client_grant(bastion, client: dict, audience: str = API, scope: list[str] | None = None) -> dict:
    response = await bastion.management("POST", "/client-grants", json={
        "client_id": client["client_id"], "audience": audience, "scope": ["read:things"] if scope is None else scope})
    assert response.status_code == 201, response.text
    return response.json()


def _error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text


# -- refresh_token -----------------------------------------------------------


async def test_refresh_rotates_and_the_old_token_is_then_refused(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    first = (await _refresh_tokens(bastion, client))["refresh_token"]
    rotated = await _refresh(bastion, client, first)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second and second != first
    assert rotated.json()["access_token"] and rotated.json()["id_token"]
    again = await _refresh(bastion, client, second)
    assert again.status_code == 200
    assert again.json()["refresh_token"] not in (first, second)
    _error(await _refresh(bastion, client, first), 403, "invalid_grant")


async def test_refresh_token_reuse_revokes_the_newest_token_of_the_family(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    first = (await _refresh_tokens(bastion, client))["refresh_token"]
    newest = (await _refresh(bastion, client, first)).json()["refresh_token"]
    _error(await _refresh(bastion, client, first), 403, "invalid_grant")
    _error(await _refresh(bastion, client, newest), 403, "invalid_grant")


async def test_refresh_reuse_does_not_touch_another_family(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    family_a = (await _refresh_tokens(bastion, client))["refresh_token"]
    family_b = (await _refresh_tokens(bastion, client))["refresh_token"]
    await _refresh(bastion, client, family_a)
    _error(await _refresh(bastion, client, family_a), 403, "invalid_grant")
    assert (await _refresh(bastion, client, family_b)).status_code == 200


async def test_refresh_can_downscope(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    first = (await _refresh_tokens(bastion, client))["refresh_token"]
    narrowed = await _refresh(bastion, client, first, scope="openid")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "openid"
    _, access = verify_jwt(narrowed.json()["access_token"], await _jwks(bastion))
    assert access["scope"] == "openid"
    userinfo = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {narrowed.json()['access_token']}"})
    assert userinfo.status_code == 200 and "email" not in userinfo.json()


async def test_downscoped_refresh_id_token_releases_only_the_requested_claims(bastion):
    client = await bastion.create_client()
    await bastion.create_user(given_name="Alice")
    first = (await _refresh_tokens(bastion, client))["refresh_token"]
    narrowed = await _refresh(bastion, client, first, scope="openid")
    _, id_claims = verify_jwt(narrowed.json()["id_token"], await _jwks(bastion))
    assert "email" not in id_claims and "given_name" not in id_claims


async def test_downscoping_keeps_the_original_grant_for_the_next_refresh(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    first = (await _refresh_tokens(bastion, client))["refresh_token"]
    narrowed = await _refresh(bastion, client, first, scope="openid")
    assert narrowed.status_code == 200 and narrowed.json()["refresh_token"]
    full = await _refresh(bastion, client, narrowed.json()["refresh_token"])
    assert full.status_code == 200
    assert full.json()["scope"] == "openid profile email offline_access"


async def test_refresh_with_a_scope_not_originally_granted_is_invalid_scope(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    first = (await _refresh_tokens(bastion, client, scope="openid offline_access"))["refresh_token"]
    _error(await _refresh(bastion, client, first, scope="openid email"), 400, "invalid_scope")


async def test_refused_scope_request_does_not_consume_the_refresh_token(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    first = (await _refresh_tokens(bastion, client, scope="openid offline_access"))["refresh_token"]
    _error(await _refresh(bastion, client, first, scope="openid email"), 400, "invalid_scope")
    retry = await _refresh(bastion, client, first)
    assert retry.status_code == 200, retry.text


async def test_refresh_token_of_another_client_is_invalid_grant(bastion):
    owner = await bastion.create_client()
    other = await bastion.create_client(name="Other App")
    await bastion.create_user()
    token = (await _refresh_tokens(bastion, owner))["refresh_token"]
    _error(await _refresh(bastion, other, token), 403, "invalid_grant")
    assert (await _refresh(bastion, owner, token)).status_code == 200


async def test_unknown_or_missing_refresh_token(bastion):
    client = await bastion.create_client()
    _error(await _refresh(bastion, client, "not-a-real-token"), 403, "invalid_grant")
    _error(await _token(bastion, client, grant_type="refresh_token"), 400, "invalid_request")


async def test_no_refresh_token_without_offline_access(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    response = await _password_grant(bastion, client, scope="openid")
    assert response.status_code == 200 and "refresh_token" not in response.json()


# -- client_credentials ------------------------------------------------------


async def test_client_credentials_needs_an_audience(bastion):
    client = await bastion.create_client()
    _error(await _token(bastion, client, grant_type="client_credentials"), 403, "access_denied")


async def test_client_credentials_unknown_audience_is_access_denied(bastion):
    client = await bastion.create_client()
    _error(await _token(bastion, client, grant_type="client_credentials", audience="https://nope.test"), 403, "access_denied")


async def test_client_credentials_without_a_client_grant_is_access_denied(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    response = await _token(bastion, client, grant_type="client_credentials", audience=API)
    _error(response, 403, "access_denied")
    assert "client-grant" in response.json()["error_description"]


async def test_client_credentials_refuses_a_public_client(bastion):
    client = await bastion.create_client(app_type="spa", token_endpoint_auth_method="none")
    await bastion.create_api()
    await _client_grant(bastion, client)
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"], "audience": API})
    _error(response, 403, "unauthorized_client")
    assert "access_token" not in response.json()


async def test_client_credentials_scope_is_requested_intersected_with_granted(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await _client_grant(bastion, client, scope=["read:things"])
    response = await _token(bastion, client, grant_type="client_credentials", audience=API, scope="read:things write:things")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read:things"
    _, claims = verify_jwt(response.json()["access_token"], await _jwks(bastion))
    assert claims["scope"] == "read:things"


async def test_client_credentials_without_scope_gets_every_granted_scope(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await _client_grant(bastion, client, scope=["read:things", "write:things"])
    response = await _token(bastion, client, grant_type="client_credentials", audience=API)
    assert response.status_code == 200, response.text
    assert set(response.json()["scope"].split()) == {"read:things", "write:things"}


async def test_client_credentials_access_token_claims(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await _client_grant(bastion, client)
    response = await _token(bastion, client, grant_type="client_credentials", audience=API)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert "refresh_token" not in body and "id_token" not in body
    _, claims = verify_jwt(body["access_token"], await _jwks(bastion))
    assert claims["sub"] == f"{client['client_id']}@clients"
    assert claims["gty"] == "client-credentials"
    assert claims["aud"] == API
    assert claims["azp"] == client["client_id"]
    assert claims["iss"] == ISSUER + "/"
    assert claims["exp"] > claims["iat"]


async def test_client_credentials_not_in_grant_types_is_unauthorized_client(bastion):
    client = await bastion.create_client(grant_types=["authorization_code"])
    await bastion.create_api()
    await _client_grant(bastion, client)
    _error(await _token(bastion, client, grant_type="client_credentials", audience=API), 403, "unauthorized_client")


# -- password and password-realm ---------------------------------------------


async def test_password_grant_with_openid_returns_an_id_token(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    response = await _password_grant(bastion, client, scope="openid email")
    assert response.status_code == 200, response.text
    _, id_claims = verify_jwt(response.json()["id_token"], await _jwks(bastion))
    assert id_claims["sub"] == user["user_id"] and id_claims["aud"] == client["client_id"]
    assert id_claims["email"] == "alice@example.com" and id_claims["amr"] == ["pwd"]
    _, access = verify_jwt(response.json()["access_token"], await _jwks(bastion))
    assert access["gty"] == "password" and access["sub"] == user["user_id"]


async def test_password_realm_grant_succeeds(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    response = await _token(bastion, client, grant_type=REALM_GRANT, realm=REALM, username="alice@example.com",
                            password=PASSWORD, scope="openid")
    assert response.status_code == 200, response.text
    _, id_claims = verify_jwt(response.json()["id_token"], await _jwks(bastion))
    assert id_claims["sub"] == user["user_id"]


async def test_password_grant_with_an_api_audience(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user()
    response = await _password_grant(bastion, client, audience=API, scope="openid read:things bogus")
    assert response.status_code == 200, response.text
    _, access = verify_jwt(response.json()["access_token"], await _jwks(bastion))
    assert access["aud"] == [API, ISSUER + "/userinfo"]
    assert access["scope"] == "openid read:things"


async def test_password_grant_wrong_password(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    response = await _password_grant(bastion, client, password="Wrong-Horse-9")
    assert response.status_code == 403
    assert response.json() == {"error": "invalid_grant", "error_description": "Wrong email or password."}


async def test_password_grant_unknown_user_answers_like_a_wrong_password(bastion):
    client = await bastion.create_client()
    response = await _password_grant(bastion, client, username="nobody@example.com")
    assert response.status_code == 403
    assert response.json() == {"error": "invalid_grant", "error_description": "Wrong email or password."}


async def test_password_grant_not_in_grant_types_is_unauthorized_client(bastion):
    client = await bastion.create_client(grant_types=["authorization_code", "refresh_token"])
    await bastion.create_user()
    _error(await _password_grant(bastion, client), 403, "unauthorized_client")
    realm = await _token(bastion, client, grant_type=REALM_GRANT, realm=REALM, username="alice@example.com", password=PASSWORD)
    _error(realm, 403, "unauthorized_client")


async def test_password_realm_unknown_realm(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    response = await _token(bastion, client, grant_type=REALM_GRANT, realm="No-Such-Connection",
                            username="alice@example.com", password=PASSWORD)
    _error(response, 400, "invalid_request")
    assert "access_token" not in response.json()


async def test_password_grant_missing_username_or_password(bastion):
    client = await bastion.create_client()
    _error(await _token(bastion, client, grant_type="password", username="alice@example.com"), 400, "invalid_request")
    _error(await _token(bastion, client, grant_type=REALM_GRANT, username="alice@example.com", password=PASSWORD),
           400, "invalid_request")


async def test_brute_force_blocks_after_ten_failures_even_the_right_password(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    for _ in range(10):
        _error(await _password_grant(bastion, client, password="Wrong-Horse-9"), 403, "invalid_grant")
    blocked = await _password_grant(bastion, client)
    _error(blocked, 429, "too_many_attempts")
    blocks = await bastion.management("GET", f"/user-blocks/{user['user_id']}")
    assert blocks.json()["blocked_for"] == [{"identifier": user["user_id"], "ip": "203.0.113.7"}]


async def test_nine_failures_then_success_resets_the_counter(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    for _ in range(9):
        await _password_grant(bastion, client, password="Wrong-Horse-9")
    assert (await _password_grant(bastion, client)).status_code == 200
    for _ in range(9):
        await _password_grant(bastion, client, password="Wrong-Horse-9")
    assert (await _password_grant(bastion, client)).status_code == 200


async def test_deleting_user_blocks_unblocks(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    for _ in range(10):
        await _password_grant(bastion, client, password="Wrong-Horse-9")
    _error(await _password_grant(bastion, client), 429, "too_many_attempts")
    unblock = await bastion.management("DELETE", f"/user-blocks/{user['user_id']}")
    assert unblock.status_code == 204
    assert (await _password_grant(bastion, client)).status_code == 200


async def test_blocked_user_is_unauthorized(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    patch = await bastion.management("PATCH", f"/users/{user['user_id']}", json={"blocked": True})
    assert patch.status_code == 200, patch.text
    _error(await _password_grant(bastion, client), 401, "unauthorized")


async def test_blocking_a_user_revokes_their_refresh_tokens(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    token = (await _refresh_tokens(bastion, client))["refresh_token"]
    await bastion.management("PATCH", f"/users/{user['user_id']}", json={"blocked": True})
    refused = await _refresh(bastion, client, token)
    assert refused.status_code in (401, 403) and "access_token" not in refused.json()


# -- client authentication ---------------------------------------------------


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def test_client_secret_basic_works(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    response = await bastion.http.post(
        "/oauth/token", headers={"Authorization": _basic(client["client_id"], client["client_secret"])},
        data={"grant_type": "password", "username": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text


async def test_client_secret_post_works(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    assert (await _password_grant(bastion, client)).status_code == 200


async def test_json_body_with_nulls_as_auth0_python_sends_it(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await _client_grant(bastion, client)
    await bastion.create_user()
    cc = await bastion.http.post("/oauth/token", json={
        **_creds(client), "audience": API, "grant_type": "client_credentials", "organization": None})
    assert cc.status_code == 200, cc.text
    realm = await bastion.http.post("/oauth/token", json={
        **_creds(client), "username": "alice@example.com", "password": PASSWORD, "realm": REALM, "scope": "openid",
        "audience": None, "grant_type": REALM_GRANT, "forwarded_for": None})
    assert realm.status_code == 200, realm.text
    assert realm.json()["id_token"]


async def test_wrong_secret_is_invalid_client(bastion):
    client = await bastion.create_client()
    post = await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": "x" * 48, "audience": API})
    _error(post, 401, "invalid_client")
    basic = await bastion.http.post("/oauth/token", headers={"Authorization": _basic(client["client_id"], "x" * 48)},
                                    data={"grant_type": "client_credentials", "audience": API})
    _error(basic, 401, "invalid_client")
    assert basic.headers["www-authenticate"].startswith("Basic")


async def test_confidential_client_without_secret_is_invalid_client(bastion):
    client = await bastion.create_client()
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"], "audience": API})
    _error(response, 401, "invalid_client")


async def test_basic_and_body_secret_together_is_invalid_request(bastion):
    client = await bastion.create_client()
    response = await bastion.http.post(
        "/oauth/token", headers={"Authorization": _basic(client["client_id"], client["client_secret"])},
        data={**_creds(client), "grant_type": "client_credentials", "audience": API})
    _error(response, 400, "invalid_request")


async def test_unknown_client_is_invalid_client(bastion):
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": "no-such-client", "client_secret": "s" * 48, "audience": API})
    _error(response, 401, "invalid_client")


async def test_malformed_basic_header_is_invalid_client(bastion):
    for header in ("Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        response = await bastion.http.post("/oauth/token", headers={"Authorization": header},
                                           data={"grant_type": "client_credentials"})
        assert response.status_code < 500
        _error(response, 401, "invalid_client")


async def test_non_ascii_basic_header_is_invalid_client_not_a_crash(bastion):
    response = await bastion.http.post("/oauth/token", headers={"Authorization": "Basic \u00e9t\u00e9".encode("latin-1")},
                                       data={"grant_type": "client_credentials"})
    assert response.status_code < 500, response.text
    _error(response, 401, "invalid_client")


# -- bad input -----------------------------------------------------------------


async def test_unsupported_grant_type(bastion):
    client = await bastion.create_client()
    response = await _token(bastion, client, grant_type="urn:example:made-up")
    assert response.status_code < 500
    _error(response, 400, "unsupported_grant_type")


async def test_missing_grant_type(bastion):
    client = await bastion.create_client()
    response = await bastion.http.post("/oauth/token", data=_creds(client))
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_malformed_json_body(bastion):
    response = await bastion.http.post("/oauth/token", content=b'{"grant_type": "client_cre',
                                       headers={"Content-Type": "application/json"})
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_json_body_that_is_not_an_object(bastion):
    for body in (b"[1, 2]", b'"text"', b"null", b"\xff\xfe"):
        response = await bastion.http.post("/oauth/token", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, body
        _error(response, 400, "invalid_request")


async def test_body_over_64_kib_is_413(bastion):
    client = await bastion.create_client()
    response = await _token(bastion, client, grant_type="client_credentials", audience="x" * (65 * 1024))
    assert response.status_code == 413


async def test_streamed_body_over_64_kib_without_length_is_413(bastion):
    async def chunks():
        for _ in range(70):
            yield b"a" * 1024

    response = await bastion.http.post("/oauth/token", content=chunks(),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_text_plain_body_is_invalid_request(bastion):
    client = await bastion.create_client()
    response = await bastion.http.post(
        "/oauth/token", content=f"grant_type=client_credentials&client_id={client['client_id']}".encode(),
        headers={"Content-Type": "text/plain"})
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_repeated_parameter_is_invalid_request(bastion):
    client = await bastion.create_client()
    response = await bastion.http.post(
        "/oauth/token", content=f"grant_type=password&grant_type=client_credentials&client_id={client['client_id']}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_deeply_nested_json_is_invalid_request_not_a_crash(bastion):
    body = ('{"grant_type": ' + "[" * 30000 + "]" * 30000 + "}").encode()
    assert len(body) < 64 * 1024
    response = await bastion.http.post("/oauth/token", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_json_lone_surrogate_is_invalid_request_not_a_crash(bastion):
    client = await bastion.create_client()
    body = json.dumps({**_creds(client), "grant_type": "refresh_token", "refresh_token": "\ud800"}).encode()
    response = await bastion.http.post("/oauth/token", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_json_lone_surrogate_at_revoke_is_invalid_request_not_a_crash(bastion):
    client = await bastion.create_client()
    body = json.dumps({**_creds(client), "token": "\udfff"}).encode()
    response = await bastion.http.post("/oauth/revoke", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500
    _error(response, 400, "invalid_request")


async def test_nul_characters_are_refused_on_every_database(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    cases = [
        {"grant_type": "password", "client_id": "a\x00b", "client_secret": "s" * 48},
        {**_creds(client), "grant_type": "password", "username": "alice\x00@example.com", "password": PASSWORD},
        {**_creds(client), "grant_type": "client_credentials", "audience": API + "\x00"},
    ]
    for data in cases:
        response = await bastion.http.post("/oauth/token", data=data)
        assert response.status_code < 500
        assert 400 <= response.status_code < 500 and "access_token" not in response.json()


async def test_get_on_the_token_endpoint_is_405(bastion):
    response = await bastion.http.get("/oauth/token")
    assert response.status_code == 405


# -- /oauth/revoke ----------------------------------------------------------------


async def test_revoked_refresh_token_cannot_be_used(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    token = (await _refresh_tokens(bastion, client))["refresh_token"]
    revoke = await bastion.http.post("/oauth/revoke", data={**_creds(client), "token": token})
    assert revoke.status_code == 200
    _error(await _refresh(bastion, client, token), 403, "invalid_grant")


async def test_revoke_unknown_token_is_200(bastion):
    client = await bastion.create_client()
    response = await bastion.http.post("/oauth/revoke", data={**_creds(client), "token": "never-issued"})
    assert response.status_code == 200


async def test_revoke_by_another_client_has_no_effect(bastion):
    owner = await bastion.create_client()
    other = await bastion.create_client(name="Other App")
    await bastion.create_user()
    token = (await _refresh_tokens(bastion, owner))["refresh_token"]
    assert (await bastion.http.post("/oauth/revoke", data={**_creds(other), "token": token})).status_code == 200
    assert (await _refresh(bastion, owner, token)).status_code == 200


async def test_revoke_needs_client_authentication_and_a_token(bastion):
    client = await bastion.create_client()
    unauthenticated = await bastion.http.post("/oauth/revoke", data={"client_id": client["client_id"], "token": "t"})
    _error(unauthenticated, 401, "invalid_client")
    _error(await bastion.http.post("/oauth/revoke", data=_creds(client)), 400, "invalid_request")


# -- /userinfo ---------------------------------------------------------------------


async def test_userinfo_without_a_token_is_401_with_www_authenticate(bastion):
    response = await bastion.http.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_userinfo_with_a_tampered_token_is_401(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    token = (await _password_grant(bastion, client, scope="openid email")).json()["access_token"]
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {head}.{payload}.{flipped}"})
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


async def test_userinfo_with_a_forged_payload_is_401(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    token = (await _password_grant(bastion, client, scope="openid email")).json()["access_token"]
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "auth0|someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {head}.{forged}.{signature}"})
    assert response.status_code == 401


async def test_userinfo_with_garbage_tokens_never_crashes(bastion):
    for token in ("abc", "a.b.c", "....", "eyJhbGciOiJub25lIn0.e30.", "eyJ9.eyJ9.eyJ9", "W10.W10.W10", "x" * 20000):
        response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (token[:40], response.status_code)


async def test_userinfo_with_an_api_only_token_is_refused(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await _client_grant(bastion, client)
    token = (await _token(bastion, client, grant_type="client_credentials", audience=API)).json()["access_token"]
    response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (401, 403)
    assert "sub" not in response.json()


async def test_userinfo_with_an_api_audience_token_without_openid_is_refused(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user()
    token = (await _password_grant(bastion, client, audience=API, scope="read:things")).json()["access_token"]
    response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (401, 403)
    assert "email" not in response.json()


async def test_userinfo_without_openid_scope_is_insufficient_scope(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    token = (await _password_grant(bastion, client, scope="email")).json()["access_token"]
    response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["www-authenticate"]


async def test_userinfo_by_post_with_header_or_form(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    token = (await _password_grant(bastion, client, scope="openid email")).json()["access_token"]
    by_header = await bastion.http.post("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert by_header.status_code == 200
    assert by_header.json() == {"sub": user["user_id"], "email": "alice@example.com", "email_verified": False}
    by_form = await bastion.http.post("/userinfo", data={"access_token": token})
    assert by_form.status_code == 200 and by_form.json()["sub"] == user["user_id"]


async def test_userinfo_for_a_deleted_user_is_401(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    token = (await _password_grant(bastion, client, scope="openid")).json()["access_token"]
    assert (await bastion.management("DELETE", f"/users/{user['user_id']}")).status_code == 204
    response = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


# -- ES256 ---------------------------------------------------------------------------


async def test_es256_api_gets_es256_access_tokens_that_verify_against_the_jwks(bastion):
    client = await bastion.create_client()
    await bastion.create_api("https://es.test", signing_alg="ES256")
    await _client_grant(bastion, client, audience="https://es.test")
    response = await _token(bastion, client, grant_type="client_credentials", audience="https://es.test")
    assert response.status_code == 200, response.text
    jwks = (await bastion.http.get("/.well-known/jwks.json")).json()["keys"]
    header, claims = verify_jwt(response.json()["access_token"], public_keyset(jwks))
    assert header["alg"] == "ES256"
    assert {"kid": header["kid"], "alg": "ES256", "kty": "EC"}.items() <= next(k for k in jwks if k["kid"] == header["kid"]).items()
    assert claims["aud"] == "https://es.test"


async def test_es256_token_does_not_verify_as_rs256_only(bastion):
    client = await bastion.create_client()
    await bastion.create_api("https://es.test", signing_alg="ES256")
    await _client_grant(bastion, client, audience="https://es.test")
    token = (await _token(bastion, client, grant_type="client_credentials", audience="https://es.test")).json()["access_token"]
    with pytest.raises(JoseError):
        verify_jwt(token, await _jwks(bastion), algorithms=["RS256"])
