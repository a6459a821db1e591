"""A real OpenID Connect relying party (Authlib's httpx client + joserfc) against `bastion serve` on SQLite.

Everything the relying party calls comes from the discovery document. The "browser"
is plain httpx: it reads the login form, posts the credentials and stops at the
redirect back to the relying party, whose Location carries the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import LiveServer, browser_client, free_port, query_params, submit_login

EMAIL = "rp-user@example.com"
PASSWORD = "Rp-Correct-Horse-7"
SCOPE = "openid profile email offline_access"


@dataclass
class RelyingParty:
    server: LiveServer
    discovery: dict
    client_id: str
    client_secret: str
    callback: str
    logged_out: str
    user_id: str

    def oauth(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client_id, client_secret=self.client_secret, scope=SCOPE, redirect_uri=self.callback,
            code_challenge_method="S256", token_endpoint_auth_method="client_secret_post", timeout=15,
        )

    def keyset(self) -> KeySet:
        response = httpx.get(self.discovery["jwks_uri"], timeout=10)
        assert response.status_code == 200, response.text
        return KeySet.import_key_set(response.json())

    def validate_id_token(self, id_token: str, *, nonce: str | None, access_token: str | None) -> CodeIDToken:
        """Signature against the JWKS from jwks_uri, then the OIDC Core §3.1.3.7 claim checks."""
        token = jwt.decode(id_token, self.keyset(), algorithms=self.discovery["id_token_signing_alg_values_supported"])
        claims = CodeIDToken(
            token.claims, token.header,
            options={"iss": {"essential": True, "value": self.discovery["issuer"]},
                     "aud": {"essential": True, "value": self.client_id},
                     "sub": {"essential": True}, "exp": {"essential": True}, "iat": {"essential": True}},
            params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
        )
        claims.validate(leeway=5)
        assert claims["iss"] == self.discovery["issuer"]
        assert claims["aud"] == self.client_id
        return claims


@pytest.fixture
def relying_party(live_server, sqlite_url) -> RelyingParty:
    server = live_server(sqlite_url)
    discovery = httpx.get(server.url("/.well-known/openid-configuration"), timeout=10).json()
    rp_port = free_port()  # nothing listens there: the relying party never follows the redirect
    callback, logged_out = f"http://127.0.0.1:{rp_port}/cb", f"http://127.0.0.1:{rp_port}/logged-out"
    client = json.loads(server.cli(
        "clients", "create", "--name", "RP", "--callback", callback, "--logout-url", logged_out,
        "--grant-type", "authorization_code", "--grant-type", "refresh_token",
    ))
    user = json.loads(server.cli("users", "create", "--email", EMAIL, "--password", PASSWORD))
    assert client["client_id"] and client["client_secret"]
    assert user["email"] == EMAIL
    return RelyingParty(server, discovery, client["client_id"], client["client_secret"], callback, logged_out,
                        user["user_id"])


def _log_in(rp: RelyingParty, oauth: OAuth2Client, browser: httpx.Client) -> tuple[dict, str]:
    """Authorization request built by Authlib, login form driven by `browser`, token fetched by Authlib."""
    verifier, nonce = generate_token(48), generate_token(20)
    authorization_url, state = oauth.create_authorization_url(
        rp.discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    sent = query_params(authorization_url)
    assert sent["code_challenge_method"] == "S256" and sent["code_challenge"] and verifier not in authorization_url

    response = browser.get(authorization_url)
    assert response.status_code == 302, response.text
    response = submit_login(browser, rp.server.base_url, response.headers["location"], EMAIL, PASSWORD)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(rp.callback + "?"), location
    returned = query_params(location)
    assert returned["state"] == state and returned["code"], returned

    token = oauth.fetch_token(
        rp.discovery["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier
    )
    return token, nonce


def test_discovery_document_describes_this_server(live_server, sqlite_url):
    server = live_server(sqlite_url)
    discovery = httpx.get(server.url("/.well-known/openid-configuration"), timeout=10).json()
    issuer = server.issuer
    assert discovery["issuer"] == issuer + "/"
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        assert discovery[endpoint].startswith(issuer + "/"), (endpoint, discovery[endpoint])
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert "code" in discovery["response_types_supported"]
    jwks = httpx.get(discovery["jwks_uri"], timeout=10).json()
    keys = KeySet.import_key_set(jwks)
    assert keys.keys and all(key.get("kid") for key in jwks["keys"])
    assert not any("d" in key for key in jwks["keys"]), "the JWKS must not publish private key material"


def test_authlib_code_flow_with_pkce_userinfo_and_refresh(relying_party):
    rp = relying_party
    with rp.oauth() as oauth, browser_client() as browser:
        token, nonce = _log_in(rp, oauth, browser)
        assert token["token_type"].lower() == "bearer"
        assert token["refresh_token"], "offline_access with the refresh_token grant should give a refresh token"

        claims = rp.validate_id_token(token["id_token"], nonce=nonce, access_token=token["access_token"])
        assert claims["nonce"] == nonce
        assert claims["sub"] == rp.user_id
        assert claims["email"] == EMAIL

        userinfo = oauth.get(rp.discovery["userinfo_endpoint"])
        assert userinfo.status_code == 200, userinfo.text
        assert userinfo.json()["sub"] == rp.user_id
        assert userinfo.json()["email"] == EMAIL

        first_refresh_token = token["refresh_token"]
        refreshed = oauth.refresh_token(rp.discovery["token_endpoint"])
        assert refreshed["access_token"] and refreshed["access_token"] != token["access_token"]
        assert refreshed["refresh_token"] and refreshed["refresh_token"] != first_refresh_token
        if "id_token" in refreshed:
            refreshed_claims = rp.validate_id_token(refreshed["id_token"], nonce=None, access_token=refreshed["access_token"])
            assert refreshed_claims["sub"] == rp.user_id

        # Authlib now sends the new access token.
        userinfo = oauth.get(rp.discovery["userinfo_endpoint"])
        assert userinfo.status_code == 200, userinfo.text
        assert userinfo.json()["sub"] == rp.user_id


def test_rp_initiated_logout_ends_the_sso_session(relying_party):
    rp = relying_party
    with rp.oauth() as oauth, browser_client() as browser:
        token, _nonce = _log_in(rp, oauth, browser)

        # While the session lives, prompt=none answers with a code without showing a page.
        silent_url, silent_state = oauth.create_authorization_url(rp.discovery["authorization_endpoint"], prompt="none")
        silent = browser.get(silent_url)
        assert silent.status_code == 302, silent.text
        answer = query_params(silent.headers["location"])
        assert "code" in answer and answer["state"] == silent_state, answer
        session_cookie = browser.cookies.get("bastion_session")
        assert session_cookie

        logout = browser.get(rp.discovery["end_session_endpoint"], params={
            "id_token_hint": token["id_token"], "post_logout_redirect_uri": rp.logged_out, "state": "bye-123",
        })
        assert logout.status_code == 302, logout.text
        assert logout.headers["location"] == rp.logged_out + "?state=bye-123"

        silent_url, silent_state = oauth.create_authorization_url(rp.discovery["authorization_endpoint"], prompt="none")
        silent = browser.get(silent_url)
        assert silent.status_code == 302, silent.text
        assert silent.headers["location"].startswith(rp.callback + "?")
        answer = query_params(silent.headers["location"])
        assert answer.get("error") == "login_required", answer
        assert answer["state"] == silent_state and "code" not in answer

        # The session is ended on the server, not only forgotten by this browser: replaying the old cookie fails too.
        with browser_client(cookies={"bastion_session": session_cookie}) as replay:
            silent_url, _ = oauth.create_authorization_url(rp.discovery["authorization_endpoint"], prompt="none")
            response = replay.get(silent_url)
            assert response.status_code == 302, response.text
            assert query_params(response.headers["location"]).get("error") == "login_required"


def test_logout_refuses_an_unregistered_post_logout_redirect_uri(relying_party):
    rp = relying_party
    with rp.oauth() as oauth, browser_client() as browser:
        token, _nonce = _log_in(rp, oauth, browser)
        response = browser.get(rp.discovery["end_session_endpoint"], params={
            "id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example/after",
        })
        assert response.status_code == 400, response.text
        assert "location" not in response.headers
        # The session survives a refused logout.
        silent_url, _ = oauth.create_authorization_url(rp.discovery["authorization_endpoint"], prompt="none")
        silent = browser.get(silent_url)
        assert "code" in query_params(silent.headers["location"])
