"""Upstream OpenID Connect connections end to end: two `bastion serve` processes, B the upstream
provider of A.

    relying party (Authlib) ── A /authorize ── A /u/login ("Continue with Bastion B")
        ── B /authorize ── B /u/login (the form) ── A /login/callback ── the relying party's code

B has a client for A's callback and a user; A has an `oidc` connection (and a `waad` one, with
its discovery URL overridden to B's) enabled for the relying party. A rule on A copies
`context.connection_strategy` and the identity's upstream email into the ID token, which proves
the rules saw the upstream login.

The "browser" is httpx with one cookie jar per server: both servers listen on 127.0.0.1 and
set cookies of the same names, and cookies are not separated by port, so one jar would let B
overwrite A's browser-binding cookie (real deployments have two host names).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from conftest import MGMT_ID, MGMT_SECRET
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import LiveServer, free_port, hidden_field, query_params

EMAIL = "upstream-user@example.com"
PASSWORD = "Upstream-Correct-Horse-7"
DENIED_EMAIL = "denied-at-b@example.com"
SCOPE = "openid profile email"
CLAIM = "https://a.example.com/"

A_RULE = f'''
async def rule(user, context, api):
    identity = user.identities[0]
    context.id_token["{CLAIM}strategy"] = context.connection_strategy
    context.id_token["{CLAIM}connection"] = context.connection
    context.id_token["{CLAIM}upstream_email"] = (identity.profile_data or {{}}).get("email")
    context.id_token["{CLAIM}upn"] = (identity.profile_data or {{}}).get("upn")
    context.id_token["{CLAIM}methods"] = [m["name"] for m in context.authentication["methods"]]
'''

# B's ID tokens carry Azure AD's claims (none of them is reserved, so a rule may add them), and
# B refuses one user (B answers access_denied: BASTION_RULES_UNAUTHORIZED_ERROR).
B_RULE = f'''
async def rule(user, context, api):
    if user.email == "{DENIED_EMAIL}":
        raise UnauthorizedError("Not allowed at B")
    context.id_token["oid"] = "oid-" + user.user_id.split("|")[-1]
    context.id_token["upn"] = user.email
    context.id_token["tid"] = "72f988bf-0000-0000-0000-2d7cd011db47"
    context.id_token["groups"] = ["engineering", "on-call"]
'''


class Browser:
    """A 'browser' of plain httpx: never follows redirects; one cookie jar per server (see above)."""

    def __init__(self):
        self._clients: dict[str, httpx.Client] = {}

    def _client(self, url: str) -> httpx.Client:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        if origin not in self._clients:
            self._clients[origin] = httpx.Client(follow_redirects=False, timeout=20)
        return self._clients[origin]

    def get(self, url: str) -> httpx.Response:
        return self._client(url).get(url)

    def post(self, url: str, data: dict) -> httpx.Response:
        return self._client(url).post(url, data=data)

    def follow(self, response: httpx.Response, *, until: str) -> httpx.Response:
        """Follow redirects while they do not lead to a URL starting with `until`; returns the last response."""
        for _ in range(10):
            location = response.headers.get("location")
            if response.status_code not in (302, 303) or not location or location.startswith(until):
                return response
            response = self.get(str(response.url.join(location)))
        raise AssertionError("too many redirects")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def management(server: LiveServer, method: str, path: str, *, scope: str | None = None, **kwargs) -> httpx.Response:
    """A Management API call with a token of every scope the bootstrap client has, or of `scope`."""
    token = httpx.post(server.url("/oauth/token"), data={
        "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
        "audience": f"{server.issuer}/api/v2/", **({"scope": scope} if scope else {}),
    }, timeout=15)
    assert token.status_code == 200, token.text
    return httpx.request(method, server.url(f"/api/v2{path}"), headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                         timeout=15, **kwargs)


@dataclass
class Federation:
    a: LiveServer
    b: LiveServer
    a_discovery: dict
    rp_client_id: str
    rp_client_secret: str
    rp_callback: str
    b_client_id: str
    b_client_secret: str
    b_user_id: str
    connection_id: str

    def oauth(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.rp_client_id, client_secret=self.rp_client_secret, scope=SCOPE, redirect_uri=self.rp_callback,
            code_challenge_method="S256", token_endpoint_auth_method="client_secret_post", timeout=15,
        )

    def id_token_claims(self, id_token: str, nonce: str) -> dict:
        keys = KeySet.import_key_set(httpx.get(self.a_discovery["jwks_uri"], timeout=10).json())
        token = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "EdDSA"])
        claims = token.claims
        assert claims["iss"] == self.a_discovery["issuer"] and claims["aud"] == self.rp_client_id
        assert claims["nonce"] == nonce
        return claims


@pytest.fixture
def federation(live_server, tmp_path: Path) -> Federation:
    b = live_server(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", env={"BASTION_RULES_UNAUTHORIZED_ERROR": "access_denied"})
    a = live_server(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")

    # B: a client for A (its callback is A's /login/callback), users, and the Azure-claims rule.
    b_client = json.loads(b.cli("clients", "create", "--name", "Bastion A", "--callback", f"{a.issuer}/login/callback",
                                "--grant-type", "authorization_code"))
    b_user = json.loads(b.cli("users", "create", "--email", EMAIL, "--password", PASSWORD, "--verified"))
    b.cli("users", "create", "--email", DENIED_EMAIL, "--password", PASSWORD)
    assert management(b, "PATCH", f"/users/{b_user['user_id']}", json={"name": "Upstream User"}).status_code == 200
    response = management(b, "POST", "/rules", json={"name": "azure-claims", "script": B_RULE, "order": 1, "enabled": True})
    assert response.status_code == 201, response.text

    # A: the relying party's client, the oidc connection to B, and the rule.
    rp_callback = f"http://127.0.0.1:{free_port()}/cb"  # nothing listens: the test reads the Location
    rp = json.loads(a.cli("clients", "create", "--name", "RP", "--callback", rp_callback, "--grant-type", "authorization_code"))
    created = management(a, "POST", "/connections", json={
        "name": "bastion-b", "display_name": "Bastion B", "strategy": "oidc", "enabled_clients": [rp["client_id"]],
        "options": {
            "discovery_url": b.url("/.well-known/openid-configuration"), "client_id": b_client["client_id"],
            "client_secret": b_client["client_secret"], "scope": "openid profile email", "type": "back_channel",
            "upstream_params": {"ui_locales": {"value": "en"}},
        },
    })
    assert created.status_code == 201, created.text
    assert "client_secret" not in created.json()["options"] and "client_secret_sealed" not in created.json()["options"]
    response = management(a, "POST", "/rules", json={"name": "upstream-claims", "script": A_RULE, "order": 1, "enabled": True})
    assert response.status_code == 201, response.text
    return Federation(
        a=a, b=b, a_discovery=a.discovery(), rp_client_id=rp["client_id"], rp_client_secret=rp["client_secret"],
        rp_callback=rp_callback, b_client_id=b_client["client_id"], b_client_secret=b_client["client_secret"],
        b_user_id=b_user["user_id"], connection_id=created.json()["id"],
    )


def _submit_b_login(browser: Browser, b: LiveServer, login_url: str, email: str) -> httpx.Response:
    page = browser.get(login_url)
    assert page.status_code == 200, page.text
    return browser.post(login_url, {"state": hidden_field(page.text, "state"), "csrf_token": hidden_field(page.text, "csrf_token"),
                                    "username": email, "password": PASSWORD})


def _to_upstream(fed: Federation, browser: Browser, oauth: OAuth2Client, *, button: bool, connection: str = "bastion-b",
                 **extra) -> tuple[httpx.Response, str, str, str]:
    """From the relying party to B's authorization endpoint. Returns (B's /authorize response, RP state, nonce, verifier)."""
    verifier, nonce = generate_token(48), generate_token(20)
    params = {} if button else {"connection": connection}
    url, state = oauth.create_authorization_url(fed.a_discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce,
                                                **params, **extra)
    response = browser.get(url)
    assert response.status_code == 302, response.text
    if button:
        login = browser.get(fed.a.url(response.headers["location"]))
        assert login.status_code == 200, login.text
        assert "Continue with Bastion B" in login.text and 'id="username"' in login.text
        href = button_href(login.text)
        response = browser.get(fed.a.url(href))
    else:  # connection=: straight to B, no page of A's on the way
        response = browser.follow(response, until=fed.b.base_url)
    assert response.status_code == 302, response.text
    upstream = response.headers["location"]
    assert upstream.startswith(fed.b.url("/authorize?")), upstream
    sent = query_params(upstream)
    assert sent["client_id"] == fed.b_client_id and sent["redirect_uri"] == f"{fed.a.issuer}/login/callback"
    assert sent["response_type"] == "code" and sent["code_challenge_method"] == "S256" and sent["code_challenge"]
    assert sent["state"] and sent["nonce"] and sent["scope"].split()[0] == "openid"
    return browser.get(upstream), state, nonce, verifier


def button_href(html: str) -> str:
    match = re.search(r'<a class="button upstream" href="([^"]+)">Continue with Bastion B</a>', html)
    assert match, html[:2000]
    return match.group(1).replace("&amp;", "&")


def _log_in(fed: Federation, browser: Browser, oauth: OAuth2Client, *, button: bool = True, email: str = EMAIL,
            connection: str = "bastion-b") -> tuple[dict, dict, str]:
    """A whole login through B. Returns (tokens, verified ID token claims, A's callback URL)."""
    response, state, nonce, verifier = _to_upstream(fed, browser, oauth, button=button, connection=connection)
    assert response.status_code == 302 and urlsplit(response.headers["location"]).path == "/u/login"
    response = _submit_b_login(browser, fed.b, fed.b.url(response.headers["location"]), email)
    assert response.status_code == 302, response.text
    callback = response.headers["location"]
    assert callback.startswith(f"{fed.a.issuer}/login/callback?"), callback
    response = browser.get(callback)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(fed.rp_callback + "?"), location
    assert query_params(location)["state"] == state and "code" in query_params(location), location
    tokens = oauth.fetch_token(fed.a_discovery["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier)
    return tokens, fed.id_token_claims(tokens["id_token"], nonce), callback


def test_login_through_an_upstream_oidc_provider(federation: Federation):
    fed = federation
    browser = Browser()
    try:
        with fed.oauth() as oauth:
            _tokens, claims, _callback = _log_in(fed, browser, oauth)
    finally:
        browser.close()

    # The user is A's, for B's identity, with Auth0's identifiers and B's profile.
    assert claims["sub"] == f"oidc|bastion-b|{fed.b_user_id}"
    assert claims["email"] == EMAIL and claims["email_verified"] is True and claims["name"] == "Upstream User"
    # The rules ran with the upstream connection and the identity's upstream profile.
    assert claims[f"{CLAIM}strategy"] == "oidc" and claims[f"{CLAIM}connection"] == "bastion-b"
    assert claims[f"{CLAIM}upstream_email"] == EMAIL
    assert claims[f"{CLAIM}methods"] == ["federated"]

    user = management(fed.a, "GET", f"/users/{claims['sub']}")
    assert user.status_code == 200, user.text
    [identity] = user.json()["identities"]
    assert identity["provider"] == "oidc" and identity["connection"] == "bastion-b"
    assert identity["user_id"] == f"bastion-b|{fed.b_user_id}" and identity["isSocial"] is False
    assert identity["profileData"]["email"] == EMAIL and identity["profileData"]["sub"] == fed.b_user_id
    assert not {"nonce", "iss", "aud", "exp", "iat", "at_hash"} & set(identity["profileData"])
    assert identity["access_token"]  # the caller has read:user_idp_tokens
    without = management(fed.a, "GET", f"/users/{claims['sub']}", scope="read:users read:connections")
    assert "access_token" not in json.dumps(without.json()), "the upstream access token is never shown without read:user_idp_tokens"

    # The connection's secret is sealed and never shown.
    connection = management(fed.a, "GET", f"/connections/{fed.connection_id}").json()
    assert connection["display_name"] == "Bastion B" and connection["strategy"] == "oidc"
    assert fed.b_client_secret not in json.dumps(connection)


def test_a_second_login_updates_the_profile_and_connection_skips_the_page(federation: Federation):
    fed = federation
    with fed.oauth() as oauth:
        browser = Browser()
        try:
            _tokens, first, _ = _log_in(fed, browser, oauth)
        finally:
            browser.close()
        renamed = management(fed.b, "PATCH", f"/users/{fed.b_user_id}", json={"name": "Renamed At B", "given_name": "Renamed"})
        assert renamed.status_code == 200, renamed.text
        browser = Browser()  # no SSO session at A or B: both ask again
        try:
            _tokens, second, _ = _log_in(fed, browser, oauth, button=False)
        finally:
            browser.close()
    assert second["sub"] == first["sub"]
    assert second["name"] == "Renamed At B" and second["given_name"] == "Renamed"
    user = management(fed.a, "GET", f"/users/{second['sub']}").json()
    assert user["name"] == "Renamed At B" and user["logins_count"] == 2
    assert user["identities"][0]["profileData"]["name"] == "Renamed At B"
    users = management(fed.a, "GET", "/users", params={"q": 'identities.connection:"bastion-b"'}).json()
    assert len(users) == 1, "the second login found the same user"


def test_a_forged_or_replayed_state_is_refused(federation: Federation):
    fed = federation
    browser = Browser()
    try:
        with fed.oauth() as oauth:
            _tokens, _claims, callback = _log_in(fed, browser, oauth)
        replay = browser.get(callback)
        assert replay.status_code == 400 and "location" not in replay.headers, replay.text
        params = query_params(callback)
        forged = browser.get(fed.a.url(f"/login/callback?code={params['code']}&state=forged-{params['state'][:30]}"))
        assert forged.status_code == 400 and "location" not in forged.headers
        assert "Traceback" not in forged.text and "Invalid state" in forged.text
        missing = browser.get(fed.a.url("/login/callback?code=abc"))
        assert missing.status_code == 400
    finally:
        browser.close()


def test_the_callback_only_works_in_the_browser_that_started_the_login(federation: Federation):
    fed = federation
    browser, other = Browser(), Browser()
    try:
        with fed.oauth() as oauth:
            response, _state, _nonce, _verifier = _to_upstream(fed, browser, oauth, button=True)
            response = _submit_b_login(browser, fed.b, fed.b.url(response.headers["location"]), EMAIL)
            callback = response.headers["location"]
            stolen = other.get(callback)  # another browser (an attacker pushing their login on a victim)
            assert stolen.status_code == 400 and "location" not in stolen.headers
            answer = browser.get(callback)  # the state was not spent by the other browser
            assert answer.status_code == 302 and answer.headers["location"].startswith(fed.rp_callback + "?")
            assert "code" in query_params(answer.headers["location"])
    finally:
        browser.close()
        other.close()


def test_an_upstream_denial_reaches_the_relying_party_as_access_denied(federation: Federation):
    fed = federation
    browser = Browser()
    try:
        with fed.oauth() as oauth:
            response, state, _nonce, _verifier = _to_upstream(fed, browser, oauth, button=True)
            response = _submit_b_login(browser, fed.b, fed.b.url(response.headers["location"]), DENIED_EMAIL)
            assert response.status_code == 302, response.text
            callback = response.headers["location"]
            assert callback.startswith(f"{fed.a.issuer}/login/callback?") and query_params(callback)["error"] == "access_denied"
            answer = browser.get(callback)
    finally:
        browser.close()
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(fed.rp_callback + "?")
    returned = query_params(location)
    assert returned["error"] == "access_denied" and returned["state"] == state and "code" not in returned
    assert returned["error_description"] == "Not allowed at B"
    logs = management(fed.a, "GET", "/logs", params={"q": "type:f"}).json()
    assert any(event.get("connection") == "bastion-b" for event in logs), logs


def test_a_waad_connection_maps_azure_claims(federation: Federation):
    fed = federation
    created = management(fed.a, "POST", "/connections", json={
        "name": "contoso-azure", "strategy": "waad", "enabled_clients": [fed.rp_client_id],
        "options": {
            "client_id": fed.b_client_id, "client_secret": fed.b_client_secret, "tenant_domain": "contoso.onmicrosoft.com",
            "waad_protocol": "openid-connect", "discovery_url": fed.b.url("/.well-known/openid-configuration"),
        },
    })
    assert created.status_code == 201, created.text
    browser = Browser()
    try:
        with fed.oauth() as oauth:
            _tokens, claims, _ = _log_in(fed, browser, oauth, button=False, connection="contoso-azure")
    finally:
        browser.close()
    local_id = fed.b_user_id.split("|")[-1]
    assert claims["sub"] == f"waad|contoso-azure|oid-{local_id}"  # Azure's oid, not sub, names the user
    assert claims[f"{CLAIM}strategy"] == "waad" and claims[f"{CLAIM}upn"] == EMAIL
    assert claims["email"] == EMAIL and claims["email_verified"] is False  # Azure's email is not verified
    user = management(fed.a, "GET", f"/users/{claims['sub']}").json()
    [identity] = user["identities"]
    assert identity["provider"] == "waad" and identity["user_id"] == f"contoso-azure|oid-{local_id}"
    profile = identity["profileData"]
    assert profile["upn"] == EMAIL and profile["tenantid"] == "72f988bf-0000-0000-0000-2d7cd011db47"
    assert profile["oid"] == f"oid-{local_id}" and profile["groups"] == ["engineering", "on-call"]
