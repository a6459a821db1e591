"""Upstream OpenID Connect connections in process: the relying-party checks of login/upstream.py
against a fake provider (httpx.MockTransport), the Management API's rules for `oidc` and `waad`
options, and a whole login from one app to another (B's ASGI app as A's upstream, on SQLite and
PostgreSQL). tests/e2e/test_upstream_oidc.py does the same with two `bastion serve` processes.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import PASSWORD, form_field, query_of
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy import select

from bastion.login.upstream import (
    RelyingParty,
    UpstreamError,
    UpstreamProviders,
    new_pkce_pair,
)
from bastion.storage.tables import ConnectionRow, IdentityRow

ISSUER = "https://idp.test/"
DISCOVERY = "https://idp.test/.well-known/openid-configuration"
PARTY = RelyingParty("client-1", "secret/with:chars", "https://bastion.test/login/callback")
NONCE = "nonce-123"


class FakeProvider:
    """An OpenID provider answering through httpx.MockTransport; each test sets what it needs."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
        self.discovery = {
            "issuer": ISSUER, "authorization_endpoint": "https://idp.test/authorize", "token_endpoint": "https://idp.test/token",
            "jwks_uri": "https://idp.test/jwks", "userinfo_endpoint": "https://idp.test/userinfo",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        self.keys = [self.key]
        self.userinfo = {"sub": "user-1", "email": "u@example.com"}
        self.requests: list[httpx.Request] = []
        self.id_token = ""

    def claims(self, **changes) -> dict:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": PARTY.client_id, "sub": "user-1", "exp": now + 300, "iat": now, "nonce": NONCE}
        return {k: v for k, v in {**claims, **changes}.items() if v is not None}

    def sign(self, claims: dict, key=None, alg: str = "RS256") -> str:
        key = key or self.key
        header = {"alg": alg, "kid": key.kid} if key.kid else {"alg": alg}
        return jwt.encode(header, claims, key, algorithms=[alg])

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.keys]})
        if path == "/token":
            return httpx.Response(200, json={"access_token": "at-1", "token_type": "Bearer", "id_token": self.id_token})
        if path == "/userinfo":
            return httpx.Response(200, json=self.userinfo)
        return httpx.Response(404)

    def providers(self) -> UpstreamProviders:
        return UpstreamProviders(transport=httpx.MockTransport(self.handler))


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


async def _verify(provider: FakeProvider, token: str, **kwargs) -> dict:
    providers = provider.providers()
    try:
        metadata = await providers.discover(DISCOVERY)
        return await providers.verify_id_token(metadata, PARTY, token, nonce=NONCE, **kwargs)
    finally:
        await providers.aclose()


async def test_a_good_id_token_verifies(provider):
    claims = await _verify(provider, provider.sign(provider.claims(email="u@example.com")))
    assert claims["sub"] == "user-1" and claims["email"] == "u@example.com"


@pytest.mark.parametrize("changes, problem", [
    ({"iss": "https://evil.test/"}, "iss"),
    ({"aud": "another-client"}, "aud"),
    ({"aud": ["client-1", "another"]}, "azp"),
    ({"azp": "another-client"}, "azp"),
    (lambda: {"exp": int(time.time()) - 120}, "expired"),  # times taken when the test runs, not when collected
    (lambda: {"iat": int(time.time()) + 600}, "iat"),
    ({"nonce": "another-nonce"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"sub": None}, "sub"),
])
async def test_id_token_claims_are_checked(provider, changes, problem):
    changes = changes() if callable(changes) else changes
    with pytest.raises(UpstreamError, match=problem):
        await _verify(provider, provider.sign(provider.claims(**changes)))


async def test_a_token_signed_by_another_key_or_algorithm_is_refused(provider):
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"})
    with pytest.raises(UpstreamError, match="signature"):
        await _verify(provider, provider.sign(provider.claims(), key=stranger))
    # HS256 with the client secret (or anything else the provider's metadata does not list) is refused.
    mac = OctKey.import_key(PARTY.client_secret.encode())
    with pytest.raises(UpstreamError, match="signature"):
        await _verify(provider, jwt.encode({"alg": "HS256"}, provider.claims(), mac, algorithms=["HS256"]))
    unsigned = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                        for part in ({"alg": "none"}, provider.claims())) + "."
    with pytest.raises(UpstreamError, match="signature"):
        await _verify(provider, unsigned)


async def test_rotated_provider_keys_are_read_again(provider):
    providers = provider.providers()
    try:
        metadata = await providers.discover(DISCOVERY)
        await providers.verify_id_token(metadata, PARTY, provider.sign(provider.claims()), nonce=NONCE)
        new_key = RSAKey.generate_key(2048, parameters={"kid": "k2", "alg": "RS256", "use": "sig"})
        provider.keys = [provider.key, new_key]
        claims = await providers.verify_id_token(metadata, PARTY, provider.sign(provider.claims(), key=new_key), nonce=NONCE)
        assert claims["sub"] == "user-1"
        jwks_reads = [r for r in provider.requests if r.url.path == "/jwks"]
        assert len(jwks_reads) == 2
        # An unknown key does not make every request fetch the JWKS again.
        stranger = RSAKey.generate_key(2048, parameters={"kid": "k3", "alg": "RS256"})
        with pytest.raises(UpstreamError):
            await providers.verify_id_token(metadata, PARTY, provider.sign(provider.claims(), key=stranger), nonce=NONCE)
        assert len([r for r in provider.requests if r.url.path == "/jwks"]) == 2
    finally:
        await providers.aclose()


async def test_discovery_is_cached_and_its_issuer_checked(provider):
    providers = provider.providers()
    try:
        await providers.discover(DISCOVERY)
        await providers.discover(DISCOVERY)
        assert len([r for r in provider.requests if r.url.path.endswith("openid-configuration")]) == 1
        with pytest.raises(UpstreamError, match="issuer"):
            await providers.discover(DISCOVERY, expected_issuer="https://other.test/")
        provider.discovery.pop("token_endpoint")
        providers.forget()
        with pytest.raises(UpstreamError, match="token_endpoint"):
            await providers.discover(DISCOVERY)
    finally:
        await providers.aclose()


async def test_an_unreachable_provider_is_an_upstream_error():
    def refuse(request):
        raise httpx.ConnectError("refused")

    providers = UpstreamProviders(transport=httpx.MockTransport(refuse))
    with pytest.raises(UpstreamError, match="could not be fetched"):
        await providers.discover(DISCOVERY)
    await providers.aclose()


async def test_code_exchange_authenticates_as_the_provider_asks(provider):
    provider.id_token = provider.sign(provider.claims())
    providers = provider.providers()
    try:
        metadata = await providers.discover(DISCOVERY)
        verifier, _ = new_pkce_pair()
        tokens = await providers.exchange_code(metadata, PARTY, code="c-1", code_verifier=verifier)
        assert tokens.access_token == "at-1"
        request = provider.requests[-1]
        basic = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        assert basic == "client-1:secret%2Fwith%3Achars"  # RFC 6749 §2.3.1: form-encoded, then Base64
        form = parse_qs(request.content.decode())
        assert form["code_verifier"] == [verifier] and "client_secret" not in form
        assert form["redirect_uri"] == [PARTY.redirect_uri]

        provider.discovery["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
        providers.forget()
        metadata = await providers.discover(DISCOVERY)
        await providers.exchange_code(metadata, PARTY, code="c-2", code_verifier=verifier)
        request = provider.requests[-1]
        assert "authorization" not in request.headers
        assert parse_qs(request.content.decode())["client_secret"] == [PARTY.client_secret]
    finally:
        await providers.aclose()


async def test_userinfo_about_another_subject_is_refused(provider):
    providers = provider.providers()
    try:
        metadata = await providers.discover(DISCOVERY)
        assert (await providers.fetch_userinfo(metadata, "at-1", subject="user-1"))["email"] == "u@example.com"
        provider.userinfo = {"sub": "someone-else", "email": "evil@example.com"}
        with pytest.raises(UpstreamError, match="another subject"):
            await providers.fetch_userinfo(metadata, "at-1", subject="user-1")
    finally:
        await providers.aclose()


async def test_upstream_params_never_replace_the_flows_protections(provider):
    providers = provider.providers()
    metadata = await providers.discover(DISCOVERY)
    url = providers.authorization_url(
        metadata, PARTY, scope="openid email", state="s-1", nonce="n-1", code_challenge="c-1",
        extra={"state": "evil", "redirect_uri": "https://evil.test/", "domain_hint": "contoso.com"},
    )
    sent = query_of(url)
    assert sent["state"] == "s-1" and sent["redirect_uri"] == PARTY.redirect_uri and sent["domain_hint"] == "contoso.com"
    assert sent["code_challenge_method"] == "S256" and sent["response_type"] == "code"
    await providers.aclose()


# -- the Management API -----------------------------------------------------------------


def _oidc_options(**changes) -> dict:
    options = {"discovery_url": DISCOVERY, "client_id": "client-1", "client_secret": "s3cret-value", "type": "back_channel"}
    return {k: v for k, v in {**options, **changes}.items() if v is not None}


@pytest.mark.parametrize("strategy, options, problem", [
    ("oidc", _oidc_options(client_secret=None), "client_secret"),
    ("oidc", _oidc_options(client_id=None), "client_id"),
    ("oidc", _oidc_options(discovery_url=None), "discovery_url"),
    ("oidc", _oidc_options(type="front_channel"), "back_channel"),
    ("oidc", _oidc_options(discovery_url="javascript:alert(1)"), "discovery_url"),
    ("waad", {"client_id": "c", "client_secret": "s", "waad_protocol": "openid-connect"}, "tenant_domain"),
    ("waad", {"client_id": "c", "client_secret": "s", "tenant_domain": "x.onmicrosoft.com", "waad_protocol": "ws-federation"}, "openid-connect"),
])
async def test_upstream_connection_options_are_checked(bastion, strategy, options, problem):
    response = await bastion.management("POST", "/connections", json={"name": "upstream", "strategy": strategy, "options": options})
    assert response.status_code == 400, response.text
    assert problem in response.json()["message"]


async def test_the_client_secret_is_sealed_and_never_shown(bastion):
    response = await bastion.management("POST", "/connections", json={
        "name": "upstream", "display_name": "Upstream IdP", "strategy": "oidc", "options": _oidc_options(scope="openid email"),
    })
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["display_name"] == "Upstream IdP" and created["options"]["client_id"] == "client-1"
    assert "s3cret-value" not in response.text and "client_secret" not in json.dumps(created)
    listed = await bastion.management("GET", "/connections", params={"strategy": "oidc"})
    assert "s3cret-value" not in listed.text and "client_secret" not in listed.text
    async with bastion.services.database.reader() as session:
        stored = await session.scalar(select(ConnectionRow.options).where(ConnectionRow.name == "upstream"))
    assert "s3cret-value" not in json.dumps(stored) and stored["client_secret_sealed"].startswith("v1.")

    # A PATCH of the options without the secret keeps it; with one, replaces it.
    patched = await bastion.management("PATCH", f"/connections/{created['id']}", json={"options": _oidc_options(client_secret=None, scope="openid")})
    assert patched.status_code == 200, patched.text
    assert patched.json()["options"]["scope"] == "openid" and patched.json()["display_name"] == "Upstream IdP"
    async with bastion.services.database.reader() as session:
        kept = await session.scalar(select(ConnectionRow.options).where(ConnectionRow.name == "upstream"))
    assert kept["client_secret_sealed"] == stored["client_secret_sealed"]
    forged = await bastion.management("PATCH", f"/connections/{created['id']}", json={"options": {**_oidc_options(client_secret=None), "client_secret_sealed": "v1.forged"}})
    assert forged.status_code == 200
    async with bastion.services.database.reader() as session:
        kept = await session.scalar(select(ConnectionRow.options).where(ConnectionRow.name == "upstream"))
    assert kept["client_secret_sealed"] == stored["client_secret_sealed"]


# -- a whole login, app A through app B ---------------------------------------------------

UPSTREAM_ISSUER = "https://upstream.test"


def _through(b) -> httpx.MockTransport:
    """A's outbound HTTP, answered by B's app (in process)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        response = await b.http.request(request.method, str(request.url), headers=request.headers, content=request.content)
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)

    return httpx.MockTransport(handler)


@pytest.mark.postgres
async def test_login_from_one_app_through_another(bastion, bastion_with):
    a = bastion
    async with bastion_with(issuer=UPSTREAM_ISSUER) as b:
        b_client = await b.create_client(callbacks=[f"{a.settings.issuer}/login/callback"])
        b_user = await b.create_user(email="fed@example.com", name="Fed User")
        a_client = await a.create_client()
        created = await a.management("POST", "/connections", json={
            "name": "upstream-b", "strategy": "oidc", "enabled_clients": [a_client["client_id"]],
            "options": {"issuer": f"{UPSTREAM_ISSUER}/", "client_id": b_client["client_id"], "client_secret": b_client["client_secret"]},
        })
        assert created.status_code == 201, created.text
        await a.services.upstream.aclose()
        a.services.upstream = UpstreamProviders(transport=_through(b))

        page = await a.http.get((await a.authorize(a_client)).headers["location"])
        assert page.status_code == 200 and "Continue with upstream-b" in page.text
        response = await a.authorize(a_client, connection="upstream-b", state="rp-state")
        response = await a.http.get(response.headers["location"])  # /u/login -> /u/login/upstream
        response = await a.http.get(response.headers["location"])  # -> B's /authorize
        upstream = response.headers["location"]
        assert upstream.startswith(f"{UPSTREAM_ISSUER}/authorize?"), upstream
        response = await b.http.get(upstream)
        login = UPSTREAM_ISSUER + response.headers["location"]  # B's cookies are for B's host
        page = await b.http.get(login)
        response = await b.http.post(login, data={"state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
                                                  "username": "fed@example.com", "password": PASSWORD})
        callback = response.headers["location"]
        assert callback.startswith(f"{a.settings.issuer}/login/callback?"), callback
        response = await a.http.get(callback)
        assert response.status_code == 302, response.text
        answer = query_of(response.headers["location"])
        assert answer["state"] == "rp-state" and answer["code"]
        assert (await a.http.get(callback)).status_code == 400  # spent

        user_id = f"oidc|upstream-b|{b_user['user_id']}"
        user = (await a.management("GET", f"/users/{user_id}")).json()
        assert user["name"] == "Fed User" and user["email"] == "fed@example.com"
        async with a.services.database.reader() as session:
            identity = await session.scalar(select(IdentityRow).where(IdentityRow.user_id == user_id))
        assert identity.external_id == f"upstream-b|{b_user['user_id']}"
        assert identity.access_token_sealed and identity.access_token_sealed.startswith("v1.")
        assert identity.profile_data["email"] == "fed@example.com" and "nonce" not in identity.profile_data

        # The upstream access token is shown to read:user_idp_tokens callers only, and it is B's own token.
        shown = {}
        for scope in ("read:users read:user_idp_tokens", "read:users"):
            token = await a.management_token(scope=scope)
            body = (await a.http.get(f"/api/v2/users/{user_id}", headers={"Authorization": f"Bearer {token}"})).json()
            shown[scope] = body["identities"][0].get("access_token")
        assert shown["read:users"] is None
        userinfo = await b.http.get("/userinfo", headers={"Authorization": f"Bearer {shown['read:users read:user_idp_tokens']}"})
        assert userinfo.status_code == 200 and userinfo.json()["sub"] == b_user["user_id"], userinfo.text


async def test_a_provider_that_cannot_be_reached_gets_a_page(bastion):
    client = await bastion.create_client()
    await bastion.management("POST", "/connections", json={
        "name": "down", "strategy": "oidc", "enabled_clients": [client["client_id"]], "options": _oidc_options(),
    })

    def refuse(request):
        raise httpx.ConnectError("refused")

    bastion.services.upstream = UpstreamProviders(transport=httpx.MockTransport(refuse))
    response = await bastion.authorize(client, connection="down")
    response = await bastion.http.get(response.headers["location"])
    response = await bastion.http.get(response.headers["location"])
    assert response.status_code == 502 and "down is unavailable" in response.text
    assert "Traceback" not in response.text and "refused" not in response.text


async def test_a_callback_whose_code_does_not_verify_answers_access_denied(bastion, provider):
    client = await bastion.create_client()
    await bastion.management("POST", "/connections", json={
        "name": "fake", "strategy": "oidc", "enabled_clients": [client["client_id"]],
        "options": _oidc_options(client_id=PARTY.client_id),
    })
    bastion.services.upstream = provider.providers()
    response = await bastion.authorize(client, connection="fake", state="rp-state")
    response = await bastion.http.get(response.headers["location"])
    response = await bastion.http.get(response.headers["location"])
    sent = query_of(response.headers["location"])
    provider.id_token = provider.sign(provider.claims(nonce="not-the-one-sent"))  # e.g. a replayed ID token
    response = await bastion.http.get(f"/login/callback?code=c-1&state={sent['state']}")
    assert response.status_code == 302, response.text
    answer = query_of(response.headers["location"])
    assert answer["error"] == "access_denied" and answer["state"] == "rp-state" and "code" not in answer
    assert "nonce" not in answer["error_description"]  # the detail stays in the server's log
    token_request = parse_qs(next(r for r in provider.requests if r.url.path == "/token").content.decode())
    assert token_request["code_verifier"] and urlsplit(token_request["redirect_uri"][0]).path == "/login/callback"
