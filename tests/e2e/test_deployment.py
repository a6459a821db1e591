"""Deployment shapes: `bastion serve` over TLS, and two server processes sharing one PostgreSQL database."""

from __future__ import annotations

import json
import re
import secrets
import ssl
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.certificates import self_signed_certificate

from .conftest import browser_client, free_port, hidden_field, poll, query_params, submit_login

PASSWORD = "Deploy-Correct-Horse-5"
CALLBACK = "https://rp.example/callback"


def _create_client_and_user(server, email: str) -> dict:
    client = json.loads(server.cli("clients", "create", "--name", "Deployment RP", "--callback", CALLBACK,
                                   "--grant-type", "authorization_code", "--grant-type", "refresh_token"))
    server.cli("users", "create", "--email", email, "--password", PASSWORD)
    return client


def _authorize_params(client: dict) -> dict:
    return {"client_id": client["client_id"], "response_type": "code", "redirect_uri": CALLBACK,
            "scope": "openid profile email", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)}


def _exchange(http: httpx.Client, token_endpoint: str, client: dict, code: str) -> httpx.Response:
    return http.post(token_endpoint, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "client_id": client["client_id"], "client_secret": client["client_secret"],
    })


def _cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the Set-Cookie header for `name` (lower-case names; flags map to "")."""
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = [part.strip() for part in header.split(";")]
        if pair.startswith(f"{name}="):
            return {key.lower(): value for key, _, value in (a.partition("=") for a in attributes)}
    raise AssertionError(f"no Set-Cookie for {name} in {response.headers.get_list('set-cookie')}")


# -- TLS ------------------------------------------------------------------------


def test_tls_serves_a_verifiable_https_issuer_with_secure_cookies(live_server, sqlite_url, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    port = free_port()
    server = live_server(sqlite_url, tls=(cert, key), port=port, issuer=f"https://127.0.0.1:{port}")
    assert server.base_url == f"https://127.0.0.1:{port}"

    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trust, timeout=10) as https:
        discovery = https.get(server.url("/.well-known/openid-configuration"))
        assert discovery.status_code == 200, discovery.text
        document = discovery.json()
    assert document["issuer"] == f"https://127.0.0.1:{port}/"
    assert document["authorization_endpoint"] == f"https://127.0.0.1:{port}/authorize"
    assert document["jwks_uri"].startswith(f"https://127.0.0.1:{port}/")

    # The certificate really is checked: without trusting it, the handshake fails.
    with httpx.Client(timeout=10) as untrusting, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.get(server.url("/.well-known/openid-configuration"))

    client = _create_client_and_user(server, "tls-user@example.com")
    with browser_client(verify=trust) as browser:
        start = browser.get(document["authorization_endpoint"], params=_authorize_params(client))
        assert start.status_code == 302, start.text
        assert "secure" in _cookie_attributes(start, "bastion_browser")
        done = submit_login(browser, server.base_url, start.headers["location"], "tls-user@example.com", PASSWORD)
        assert done.status_code == 302, done.text
        assert done.headers["location"].startswith(CALLBACK + "?code=")

        session = _cookie_attributes(done, "bastion_session")
        assert "secure" in session, f"the session cookie over https must be Secure: {session}"
        assert "httponly" in session
        assert session.get("samesite", "").lower() == "none"

        tokens = _exchange(browser, document["token_endpoint"], client, query_params(done.headers["location"])["code"])
        assert tokens.status_code == 200, tokens.text
        claims = jwt.decode(tokens.json()["id_token"], KeySet.import_key_set(browser.get(document["jwks_uri"]).json())).claims
        assert claims["iss"] == f"https://127.0.0.1:{port}/"


# -- two processes, one PostgreSQL database ------------------------------------------


def _jwks_kids(http: httpx.Client, server) -> set[str]:
    response = http.get(server.url("/.well-known/jwks.json"))
    assert response.status_code == 200, response.text
    return {key["kid"] for key in response.json()["keys"]}


def _silent_code(http: httpx.Client, server, client: dict) -> str:
    """prompt=none on `server`: the shared SSO session answers with a code."""
    response = http.get(server.url("/authorize"), params={**_authorize_params(client), "prompt": "none"})
    assert response.status_code == 302, response.text
    answer = query_params(response.headers["location"])
    assert "code" in answer, answer
    return answer["code"]


def test_two_processes_share_logins_and_see_key_rotation(live_server, postgres_url):
    port_a = free_port()
    issuer = f"http://127.0.0.1:{port_a}"
    server_a = live_server(postgres_url, port=port_a, issuer=issuer)
    server_b = live_server(postgres_url, issuer=issuer)  # same database, issuer and master key; another port
    assert server_a.port != server_b.port
    assert server_b.env["BASTION_SECRET_KEY"] == server_a.env["BASTION_SECRET_KEY"]

    email = "two-processes@example.com"
    client = _create_client_and_user(server_a, email)
    token_endpoint_a = server_a.url("/oauth/token")

    with browser_client() as browser:
        # The login starts on A, its form is shown and posted on B (the cookies are per host, not per port).
        start = browser.get(server_a.url("/authorize"), params=_authorize_params(client))
        assert start.status_code == 302, start.text
        assert browser.cookies.get("bastion_browser")
        done = submit_login(browser, server_b.base_url, start.headers["location"], email, PASSWORD)
        assert done.status_code == 302, done.text
        assert done.headers["location"].startswith(CALLBACK + "?")
        code = query_params(done.headers["location"])["code"]

        # ... and the code made by B is exchanged at A.
        first = _exchange(browser, token_endpoint_a, client, code)
        assert first.status_code == 200, first.text
        old_token = first.json()["id_token"]
        old_kid = jwt.decode(old_token, KeySet.import_key_set(browser.get(server_a.url("/.well-known/jwks.json")).json())).header["kid"]
        assert old_kid in _jwks_kids(browser, server_a)
        assert old_kid in _jwks_kids(browser, server_b)

        output = server_a.cli("keys", "rotate")
        match = re.search(r"new signing key (\S+)", output)
        assert match, output
        new_kid = match.group(1)
        assert new_kid != old_kid

        for server in (server_a, server_b):
            def published(server=server) -> set[str] | None:
                kids = _jwks_kids(browser, server)
                return kids if new_kid in kids else None

            kids = poll(published, timeout=5, message=f"{server.base_url} publishes {new_kid}")
            assert old_kid in kids, f"{server.base_url} dropped the previous key {old_kid} after rotation: {kids}"

        # New tokens from both processes are signed with the new key, and verify against either JWKS.
        for issuing, other in ((server_a, server_b), (server_b, server_a)):
            tokens = _exchange(browser, issuing.url("/oauth/token"), client, _silent_code(browser, issuing, client))
            assert tokens.status_code == 200, tokens.text
            keys = KeySet.import_key_set(browser.get(other.url("/.well-known/jwks.json")).json())
            decoded = jwt.decode(tokens.json()["id_token"], keys)
            assert decoded.header["kid"] == new_kid, f"{issuing.base_url} still signs with {decoded.header['kid']}"
            assert decoded.claims["iss"] == issuer + "/"
            assert decoded.claims["aud"] == client["client_id"]

        # A token signed before the rotation still verifies.
        assert jwt.decode(old_token, keys).header["kid"] == old_kid


PAUSING_RULE = '''
def rule(user, context, api):
    if context.protocol == "redirect-callback":
        if context.request.body.get("accepted") != "yes":
            raise UnauthorizedError("User did not consent!")
        context.multifactor = {"provider": "any", "allow_remember_browser": False}
        return
    context.redirect = {"url": "https://terms.example/accept"}
'''


def test_a_login_paused_on_one_process_resumes_on_the_other(live_server, postgres_url, tmp_path):
    """Redirect, /continue and MFA enrolment alternate between two processes on one database."""
    import pyotp

    port_a = free_port()
    issuer = f"http://127.0.0.1:{port_a}"
    server_a = live_server(postgres_url, port=port_a, issuer=issuer)
    server_b = live_server(postgres_url, issuer=issuer)
    email = "paused@example.com"
    client = _create_client_and_user(server_a, email)
    rule_file = tmp_path / "terms_then_mfa.py"
    rule_file.write_text(PAUSING_RULE)
    server_a.cli("rules", "add", str(rule_file), "--order", "1")
    poll(lambda: "terms" in server_b.cli("rules", "list"), timeout=5, message="the rule is stored")

    with browser_client() as browser:
        def login_redirects_out():
            start = browser.get(server_a.url("/authorize"), params=_authorize_params(client))
            done = submit_login(browser, server_b.base_url, start.headers["location"], email, PASSWORD)
            return done if done.headers.get("location", "").startswith("https://terms.example/accept?state=") else None

        # Both processes' tenant caches see the new rule within their TTL.
        out = poll(login_redirects_out, timeout=10, message="the rule's redirect")
        state = query_params(out.headers["location"])["state"]
        # The terms page posts back to the other process.
        back = browser.post(server_a.url(f"/continue?state={state}"), data={"accepted": "yes"})
        assert back.status_code == 302 and back.headers["location"].startswith("/u/mfa?"), back.text
        mfa = back.headers["location"]
        choice = browser.get(server_b.url(mfa))
        assert choice.status_code == 200 and "enroll-otp" in choice.text
        enrol_path = f"/u/mfa/otp/enroll?state={query_params(mfa)['state']}"
        page = browser.get(server_a.url(enrol_path))
        secret = page.text.split('id="otp-secret">')[1].split("<")[0]
        confirmed = browser.post(server_b.url(enrol_path), data={
            "state": hidden_field(page.text, "state"), "csrf_token": hidden_field(page.text, "csrf_token"),
            "authenticator_id": hidden_field(page.text, "authenticator_id"), "code": pyotp.TOTP(secret).now(),
        })
        assert confirmed.status_code == 200, confirmed.text
        done = browser.post(server_a.url("/u/mfa/continue"), data={
            "state": hidden_field(confirmed.text, "state"), "csrf_token": hidden_field(confirmed.text, "csrf_token"),
        })
        assert done.status_code == 302 and done.headers["location"].startswith(CALLBACK + "?"), done.text
        tokens = _exchange(browser, server_b.url("/oauth/token"), client, query_params(done.headers["location"])["code"])
        assert tokens.status_code == 200, tokens.text
        claims = jwt.decode(tokens.json()["id_token"], KeySet.import_key_set(browser.get(server_a.url("/.well-known/jwks.json")).json())).claims
        assert claims["amr"] == ["mfa"]
        # The spent state is refused by either process.
        for server in (server_a, server_b):
            replay = browser.post(server.url(f"/continue?state={state}"), data={"accepted": "yes"})
            assert replay.status_code == 400
