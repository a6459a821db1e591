"""The authorization endpoint and the code flow, through the login page, on both databases."""

from __future__ import annotations

import secrets

from bastion.keys.jose import public_keyset, verify_jwt
from bastion.oidc.grants import s256

from conftest import ISSUER, PASSWORD, form_field, query_of


async def _jwks(bastion):
    return public_keyset((await bastion.http.get("/.well-known/jwks.json")).json()["keys"])


async def test_code_flow_with_pkce_issues_verifiable_tokens(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user(given_name="Alice", family_name="Liddell")
    tokens = await bastion.code_tokens(client, nonce="n-123", scope="openid profile email offline_access")

    header, claims = verify_jwt(tokens["id_token"], await _jwks(bastion))
    assert header["kid"] and header["alg"] == "RS256"
    assert claims["iss"] == ISSUER + "/"
    assert claims["aud"] == client["client_id"]
    assert claims["sub"] == user["user_id"]
    assert claims["nonce"] == "n-123"
    assert claims["email"] == "alice@example.com" and claims["given_name"] == "Alice"
    assert claims["sid"] and claims["auth_time"] <= claims["iat"]
    _, access = verify_jwt(tokens["access_token"], await _jwks(bastion))
    assert access["aud"] == ISSUER + "/userinfo" and access["azp"] == client["client_id"]
    assert tokens["refresh_token"] and tokens["token_type"] == "Bearer"

    userinfo = await bastion.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == user["user_id"] and userinfo.json()["email"] == "alice@example.com"


async def test_audience_gives_an_access_token_for_the_api(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user()
    tokens = await bastion.code_tokens(client, audience="https://api.test", scope="openid read:things undefined:scope")
    _, access = verify_jwt(tokens["access_token"], await _jwks(bastion))
    assert access["aud"] == ["https://api.test", ISSUER + "/userinfo"]
    assert access["scope"] == "openid read:things"
    assert tokens["scope"] == "openid read:things"


async def test_code_is_single_use_and_a_replay_revokes_the_refresh_token(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    verifier = secrets.token_urlsafe(48)
    redirect = await bastion.login(client, code_challenge=s256(verifier), code_challenge_method="S256", scope="openid offline_access")
    code = query_of(redirect.headers["location"])["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": client["callbacks"][0],
                "code_verifier": verifier, "client_id": client["client_id"], "client_secret": client["client_secret"]}
    first = await bastion.http.post("/oauth/token", data=exchange)
    assert first.status_code == 200
    replay = await bastion.http.post("/oauth/token", data=exchange)
    assert replay.status_code == 403 and replay.json()["error"] == "invalid_grant"
    refresh = await bastion.http.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"],
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert refresh.status_code == 403 and refresh.json()["error"] == "invalid_grant"


async def test_wrong_pkce_verifier_is_refused(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    redirect = await bastion.login(client, code_challenge=s256("a" * 50), code_challenge_method="S256")
    code = query_of(redirect.headers["location"])["code"]
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "code_verifier": "b" * 50,
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert response.status_code == 403
    assert response.json() == {"error": "invalid_grant", "error_description": "Failed to verify code verifier"}


async def test_public_client_must_use_s256_pkce(bastion):
    client = await bastion.create_client(app_type="spa", token_endpoint_auth_method="none")
    missing = await bastion.authorize(client)
    assert missing.status_code == 302
    assert query_of(missing.headers["location"])["error"] == "invalid_request"
    plain = await bastion.authorize(client, code_challenge="x" * 43, code_challenge_method="plain")
    assert "code_challenge_method" in query_of(plain.headers["location"])["error_description"]


async def test_unknown_client_and_wrong_redirect_uri_get_a_page_not_a_redirect(bastion):
    client = await bastion.create_client()
    unknown = await bastion.http.get("/authorize", params={"client_id": "nope", "response_type": "code", "redirect_uri": "https://evil.test/cb"})
    assert unknown.status_code == 400 and "text/html" in unknown.headers["content-type"]
    assert "Unknown application" in unknown.text
    wrong = await bastion.authorize(client, redirect_uri="https://app.test/callback/../evil")
    assert wrong.status_code == 400 and "Callback URL mismatch" in wrong.text
    assert "location" not in wrong.headers


async def test_unsupported_response_type_goes_back_with_state(bastion):
    client = await bastion.create_client()
    response = await bastion.authorize(client, response_type="token", state="keep-me")
    params = query_of(response.headers["location"])
    assert params == {"error": "unsupported_response_type", "error_description": "Unsupported response type: token", "state": "keep-me"}


async def test_prompt_none_without_session_is_login_required_and_with_session_is_silent(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    silent = await bastion.authorize(client, prompt="none")
    assert query_of(silent.headers["location"])["error"] == "login_required"
    await bastion.login(client)
    again = await bastion.authorize(client, prompt="none")
    assert "code" in query_of(again.headers["location"])


async def test_sso_session_skips_the_login_page_unless_prompt_login_or_max_age(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await bastion.login(client)
    reuse = await bastion.authorize(client)
    assert reuse.headers["location"].startswith(client["callbacks"][0])
    forced = await bastion.authorize(client, prompt="login")
    assert forced.headers["location"].startswith("/u/login")
    aged = await bastion.authorize(client, max_age="0")
    assert aged.headers["location"].startswith("/u/login")  # the session is older than 0 seconds


async def test_form_post_response_mode_renders_an_auto_submitting_form(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    response = await bastion.login(client, response_mode="form_post", state="s1")
    assert response.status_code == 200
    assert f'action="{client["callbacks"][0]}"' in response.text
    assert form_field(response.text, "state") == "s1" and form_field(response.text, "code")
    assert "nonce-" in response.headers["content-security-policy"]


async def test_wrong_password_shows_the_form_again_and_issues_nothing(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    response = await bastion.login(client, password="Wrong-Password-1")
    assert response.status_code == 400 and "Wrong email or password." in response.text
    assert "code=" not in response.text


async def test_login_form_needs_the_csrf_token_and_the_same_browser(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    start = await bastion.authorize(client)
    page = await bastion.http.get(start.headers["location"])
    state = form_field(page.text, "state")
    forged = await bastion.http.post(start.headers["location"], data={"state": state, "csrf_token": "0" * 64, "username": "alice@example.com", "password": PASSWORD})
    assert forged.status_code == 403
    bastion.http.cookies.clear()
    other_browser = await bastion.http.post(start.headers["location"], data={
        "state": state, "csrf_token": form_field(page.text, "csrf_token"), "username": "alice@example.com", "password": PASSWORD})
    assert other_browser.status_code == 400 and "Login expired" in other_browser.text


async def test_logout_ends_the_session_and_only_redirects_to_allowed_urls(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await bastion.login(client)
    refused = await bastion.http.get("/v2/logout", params={"client_id": client["client_id"], "returnTo": "https://evil.test/"})
    assert refused.status_code == 400
    out = await bastion.http.get("/v2/logout", params={"client_id": client["client_id"], "returnTo": "https://app.test/logged-out"})
    assert out.status_code == 302 and out.headers["location"] == "https://app.test/logged-out"
    after = await bastion.authorize(client, prompt="none")
    assert query_of(after.headers["location"])["error"] == "login_required"
