"""The rule templates shipped in templates/rules/, each proven end to end.

Every template is loaded from its file and stored as a rule, its configuration values
are sealed into the rule configuration store, and each login is a real one driven by a
real OpenID Connect relying party: Authlib's AsyncOAuth2Client builds the authorization
request (PKCE S256, nonce) from the discovery document, a separate httpx "browser" posts
the login form, Authlib exchanges the code, and every token is verified against the
published JWKS before its claims are looked at.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, OctKey
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import update

from bastion.storage import rules as rule_store
from bastion.storage.tables import IdentityRow, UserRow
from bastion.tenant.cache import RULE_CONFIG_PURPOSE

from conftest import ISSUER, PASSWORD, Bastion, add_rule

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "rules"
NS = "https://example.com/"
CLIENT_IP = ("203.0.113.7", 5000)
ACCESS_TOKEN_ALGS = ["RS256", "ES256", "EdDSA"]
API = "https://api.test"
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# -- installing templates ----------------------------------------------------------


def template(name: str) -> str:
    return (TEMPLATES / f"{name}.py").read_text()


async def configure(bastion: Bastion, **values: str) -> None:
    """Rule configuration values, sealed as the Management API stores them."""
    async with bastion.services.database.transaction() as session:
        for key, value in values.items():
            sealed = bastion.services.sealer.seal(value, purpose=RULE_CONFIG_PURPOSE)
            await rule_store.put_rule_config(session, key=key, value_sealed=sealed)
    bastion.services.tenant.invalidate()


async def install(bastion: Bastion, name: str, **configuration: str) -> str:
    await configure(bastion, **configuration)
    return await add_rule(bastion, template(name), name=name)


async def executions(bastion: Bastion) -> list:
    async with bastion.services.database.reader() as session:
        return (await rule_store.list_rule_executions(session, page=0, per_page=50)).items


# -- the relying party ---------------------------------------------------------------


def query_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Login:
    """What the relying party ended up with: verified tokens, or the error at its redirect URI."""

    token: dict | None = None
    id_claims: dict | None = None
    access_claims: dict | None = None
    error: dict | None = None  # the redirect URI's query, or the token endpoint's error

    @property
    def scope(self) -> list[str]:
        assert self.token is not None, self.error
        assert self.access_claims["scope"] == self.token["scope"]
        return self.token["scope"].split()


class RelyingParty:
    """An OIDC relying party for one client, talking to the app through its own ASGI transport."""

    def __init__(self, bastion: Bastion, client: dict):
        self.bastion = bastion
        self.client = client
        self.redirect_uri = client["callbacks"][0]
        self.transport = httpx.ASGITransport(app=bastion.http._transport.app, client=CLIENT_IP)
        self._discovery: dict | None = None

    async def discovery(self) -> dict:
        if self._discovery is None:
            async with httpx.AsyncClient(transport=self.transport, base_url=ISSUER) as http:
                response = await http.get("/.well-known/openid-configuration")
            assert response.status_code == 200, response.text
            self._discovery = response.json()
        return self._discovery

    def oauth(self, scope: str | None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client["client_id"], client_secret=self.client["client_secret"], scope=scope,
            redirect_uri=self.redirect_uri, code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post", transport=self.transport, base_url=ISSUER,
        )

    async def keyset(self) -> KeySet:
        discovery = await self.discovery()
        async with httpx.AsyncClient(transport=self.transport, base_url=ISSUER) as http:
            response = await http.get(discovery["jwks_uri"])
        assert response.status_code == 200, response.text
        assert not any("d" in key for key in response.json()["keys"])
        return KeySet.import_key_set(response.json())

    async def verified(self, token: dict, *, nonce: str | None, audience: str | None) -> Login:
        """Both tokens' signatures against the JWKS, then the claim checks an RP makes."""
        discovery = await self.discovery()
        keys = await self.keyset()
        access = jwt.decode(token["access_token"], keys, algorithms=ACCESS_TOKEN_ALGS)
        JWTClaimsRegistry(
            iss={"essential": True, "value": discovery["issuer"]}, sub={"essential": True},
            exp={"essential": True}, iat={"essential": True}, jti={"essential": True},
        ).validate(access.claims)
        if audience:
            audiences = access.claims["aud"] if isinstance(access.claims["aud"], list) else [access.claims["aud"]]
            assert audience in audiences, access.claims["aud"]
        assert access.claims["azp"] == self.client["client_id"]
        id_claims = None
        if "id_token" in token:
            decoded = jwt.decode(token["id_token"], keys, algorithms=discovery["id_token_signing_alg_values_supported"])
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                options={"iss": {"essential": True, "value": discovery["issuer"]},
                         "aud": {"essential": True, "value": self.client["client_id"]},
                         "sub": {"essential": True}, "exp": {"essential": True}, "iat": {"essential": True}},
                params={"nonce": nonce, "client_id": self.client["client_id"], "access_token": token["access_token"]},
            )
            claims.validate(leeway=5)
            if nonce:
                assert claims["nonce"] == nonce
            assert claims["sub"] == access.claims["sub"]
            id_claims = dict(claims)
        return Login(token=dict(token), id_claims=id_claims, access_claims=dict(access.claims))

    async def login(self, email: str = "alice@example.com", password: str = PASSWORD,
                    scope: str = "openid profile email", **params) -> Login:
        """Authorization code flow with PKCE, in a fresh browser (no SSO session)."""
        discovery = await self.discovery()
        verifier, nonce = generate_token(48), generate_token(20)
        async with self.oauth(scope) as oauth, httpx.AsyncClient(transport=self.transport, base_url=ISSUER) as browser:
            url, state = oauth.create_authorization_url(
                discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **params)
            sent = query_params(url)
            assert sent["code_challenge_method"] == "S256" and verifier not in url

            response = await browser.get(url)
            assert response.status_code == 302, response.text
            login_page = response.headers["location"]
            assert login_page.startswith("/u/login"), login_page
            page = await browser.get(login_page)
            assert page.status_code == 200, page.text
            response = await browser.post(login_page, data={
                "state": _form_field(page.text, "state"), "csrf_token": _form_field(page.text, "csrf_token"),
                "username": email, "password": password,
            })
            assert response.status_code == 302, response.text
            location = response.headers["location"]
            assert location.startswith(self.redirect_uri + "?"), location
            returned = query_params(location)
            assert returned.get("state") == state, returned
            if "error" in returned:
                assert "code" not in returned
                return Login(error=returned)
            token = await oauth.fetch_token(
                discovery["token_endpoint"], authorization_response=location, state=state, code_verifier=verifier)
        return await self.verified(token, nonce=nonce, audience=params.get("audience"))

    async def password(self, email: str = "alice@example.com", password: str = PASSWORD,
                       scope: str = "openid profile email", **params) -> Login:
        """The resource-owner password grant, as Authlib sends it."""
        discovery = await self.discovery()
        async with self.oauth(scope) as oauth:
            try:
                token = await oauth.fetch_token(
                    discovery["token_endpoint"], grant_type="password", username=email, password=password, **params)
            except OAuthError as error:
                return Login(error={"error": error.error, "error_description": error.description})
        return await self.verified(token, nonce=None, audience=params.get("audience"))

    async def refresh(self, refresh_token: str, scope: str | None, audience: str | None = None) -> Login:
        discovery = await self.discovery()
        async with self.oauth(scope) as oauth:
            try:
                token = await oauth.refresh_token(discovery["token_endpoint"], refresh_token=refresh_token)
            except OAuthError as error:
                return Login(error={"error": error.error, "error_description": error.description})
        return await self.verified(token, nonce=None, audience=audience)


def _form_field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in the login page"
    return match.group(1).replace("&amp;", "&")


def denied(login: Login, message: str, error: str = "unauthorized") -> None:
    assert login.token is None, "the login should have been denied"
    assert login.error is not None
    assert login.error["error"] == error, login.error
    if message:
        assert login.error["error_description"] == message, login.error


async def user_json(bastion: Bastion, user_id: str) -> dict:
    response = await bastion.management("GET", f"/users/{user_id}")
    assert response.status_code == 200, response.text
    return response.json()


# -- 1. customize_tokens ---------------------------------------------------------------


async def test_customize_tokens_adds_claims_to_both_tokens_and_replaces_the_api_scopes(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user(app_metadata={"plan": "pro"})
    await bastion.create_user(email="bob@example.com")
    await install(bastion, "customize_tokens", CLAIMS_NAMESPACE="https://example.com",
                  CUSTOMIZE_TOKENS_SCOPES="openid read:things", CUSTOMIZE_TOKENS_AUDIENCE=API)
    rp = RelyingParty(bastion, client)

    login = await rp.login(scope="openid profile email write:things", audience=API)
    assert login.id_claims[NS + "plan"] == "pro" and login.access_claims[NS + "plan"] == "pro"
    assert login.scope == ["openid", "read:things"]  # replaced: write:things is gone, read:things added
    assert login.id_claims["email"] == "alice@example.com" and "name" in login.id_claims  # the ID token keeps its scopes

    # Another audience (here: none) keeps its granted scopes; the claims are still added.
    plain = await rp.login(email="bob@example.com")
    assert plain.scope == ["openid", "profile", "email"]
    assert plain.id_claims[NS + "plan"] == "free" and plain.access_claims[NS + "plan"] == "free"


# -- 2. set_jti ------------------------------------------------------------------------------


async def test_set_jti_gives_each_access_token_a_fresh_uuid4(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    rp = RelyingParty(bastion, client)

    before = (await rp.login()).access_claims["jti"]
    with pytest.raises(ValueError):
        uuid.UUID(before)  # Bastion's own jti is not a UUID: what follows is the rule's doing

    await install(bastion, "set_jti")
    first, second = (await rp.login()).access_claims["jti"], (await rp.login()).access_claims["jti"]
    for jti in (first, second):
        assert str(uuid.UUID(jti)) == jti and uuid.UUID(jti).version == 4
    assert first != second


# -- 3. restrict_api_by_audience ------------------------------------------------------------------


async def test_restrict_api_by_audience_needs_an_allowed_role_for_that_api_only(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_api("https://other-api.test")
    await bastion.create_user()
    await bastion.create_user(email="bob@example.com", app_metadata={"roles": ["viewer", "api-user"]})
    await bastion.create_user(email="carol@example.com", app_metadata={"roles": ["API-USER"]})
    await install(bastion, "restrict_api_by_audience", RESTRICTED_API_AUDIENCE=API, RESTRICTED_API_ROLES="api-user, admin")
    rp = RelyingParty(bastion, client)

    denied(await rp.login(audience=API), "You are not allowed to access this API.")
    denied(await rp.login(email="carol@example.com", audience=API), "You are not allowed to access this API.")  # exact case
    allowed = await rp.login(email="bob@example.com", audience=API, scope="openid read:things")
    assert API in allowed.access_claims["aud"] and allowed.scope == ["openid", "read:things"]

    # Other APIs and logins without an audience are not this rule's business.
    assert "https://other-api.test" in (await rp.login(audience="https://other-api.test")).access_claims["aud"]
    assert (await rp.login()).id_claims["email"] == "alice@example.com"

    # The back channel too: the password grant reads the audience of the token request.
    denied(await rp.password(audience=API), "You are not allowed to access this API.")
    assert API in (await rp.password(email="bob@example.com", audience=API)).access_claims["aud"]


# -- 4. restrict_application_by_client -----------------------------------------------------------


async def test_restrict_application_allows_verified_listed_emails_and_listed_roles(bastion):
    hr = await bastion.create_client(name="HR Portal")
    other = await bastion.create_client(name="Intranet")
    await bastion.create_user(email="alice@example.com", email_verified=True)
    await bastion.create_user(email="bob@example.com", email_verified=False)
    await bastion.create_user(email="carol@example.com", email_verified=True, app_metadata={"roles": ["hr"]})
    await bastion.create_user(email="alice@example.com.evil.test", email_verified=True)
    await install(bastion, "restrict_application_by_client", RESTRICTED_APP_CLIENT_ID=hr["client_id"],
                  RESTRICTED_APP_ALLOWED_EMAILS="Alice@Example.com, bob@example.com, example.com",
                  RESTRICTED_APP_ALLOWED_ROLES="hr")
    hr_rp, other_rp = RelyingParty(bastion, hr), RelyingParty(bastion, other)
    message = "You are not allowed to use this application."

    assert (await hr_rp.login()).id_claims["email"] == "alice@example.com"  # verified, listed (case-insensitive)
    denied(await hr_rp.login(email="bob@example.com"), message)  # listed, but not verified
    assert (await hr_rp.login(email="carol@example.com")).id_claims["email"] == "carol@example.com"  # by role
    denied(await hr_rp.login(email="alice@example.com.evil.test"), message)  # no substring matches

    # Other applications are open to everyone.
    assert (await other_rp.login(email="bob@example.com")).id_claims["email"] == "bob@example.com"
    # The password grant is held to the same list.
    denied(await hr_rp.password(email="bob@example.com"), message)


async def test_restrict_application_matches_the_client_name_exactly(bastion):
    hr = await bastion.create_client(name="HR Portal")
    lookalike = await bastion.create_client(name="HR Portal (staging)")
    await bastion.create_user(email="alice@example.com", email_verified=True)
    await install(bastion, "restrict_application_by_client", RESTRICTED_APP_CLIENT_NAME="HR Portal",
                  RESTRICTED_APP_ALLOWED_ROLES="hr")
    denied(await RelyingParty(bastion, hr).login(), "You are not allowed to use this application.")
    assert (await RelyingParty(bastion, lookalike).login()).id_claims["email"] == "alice@example.com"


# -- 5. namespaced_id_token_claim -------------------------------------------------------------------


async def test_namespaced_id_token_claims_come_from_metadata_and_stay_out_of_the_access_token(bastion):
    client = await bastion.create_client()
    await bastion.create_user(user_metadata={"favorite_color": "teal", "preferred_contact": "phone"})
    await bastion.create_user(email="bob@example.com")
    await install(bastion, "namespaced_id_token_claim", CLAIMS_NAMESPACE=NS)
    rp = RelyingParty(bastion, client)

    login = await rp.login()
    assert login.id_claims[NS + "favorite_color"] == "teal"
    assert login.id_claims[NS + "preferred_contact"] == "phone"
    assert not any(name.startswith(NS) for name in login.access_claims)
    assert "favorite_color" not in login.id_claims  # never un-namespaced

    bare = await rp.login(email="bob@example.com")
    assert not any(name.startswith(NS) for name in bare.id_claims)


async def test_namespaced_id_token_claim_prefers_a_root_attribute_set_by_an_earlier_rule(bastion):
    client = await bastion.create_client()
    await bastion.create_user(user_metadata={"favorite_color": "teal"})
    await add_rule(bastion, "def rule(user, context, api):\n    user.favorite_color = 'crimson'\n", order=1)
    await configure(bastion, CLAIMS_NAMESPACE=NS)
    await add_rule(bastion, template("namespaced_id_token_claim"), order=2)
    login = await RelyingParty(bastion, client).login()
    assert login.id_claims[NS + "favorite_color"] == "crimson"
    assert NS + "preferred_contact" not in login.id_claims


# -- 6. weekdays_only_for_app ----------------------------------------------------------------------


def _offsets_by_local_day() -> dict[int, list[int]]:
    """UTC offsets (-12..+14) grouped by the weekday they give now, keeping only offsets whose local
    time is between 01:00 and 22:59, so no midnight passes between this computation and the login."""
    now = datetime.now(timezone.utc)
    days: dict[int, list[int]] = {}
    for offset in range(-12, 15):
        local = now + timedelta(hours=offset)
        if 1 <= local.hour <= 22:
            days.setdefault(local.weekday(), []).append(offset)
    return days


async def test_weekdays_only_denies_on_the_configured_weekend_in_the_configured_offset(bastion):
    """Always exercises both branches: the weekend is set to the day one offset gives today, and
    another offset, on another day, must then be let through - which also proves the offset is used."""
    target = await bastion.create_client(name="Timesheets")
    other = await bastion.create_client(name="Wiki")
    await bastion.create_user()
    by_day = _offsets_by_local_day()
    assert len(by_day) >= 2, by_day  # 26 hours of offsets always cover two calendar days
    closed_day, open_day = sorted(by_day)[:2]
    closed_offset, open_offset = by_day[closed_day][0], by_day[open_day][0]

    await install(bastion, "weekdays_only_for_app", WEEKDAYS_ONLY_CLIENT_ID=target["client_id"],
                  WEEKDAYS_WEEKEND_DAYS=DAY_NAMES[closed_day][:3], WEEKDAYS_UTC_OFFSET_HOURS=str(closed_offset))
    target_rp, other_rp = RelyingParty(bastion, target), RelyingParty(bastion, other)
    denied(await target_rp.login(), "This app is only available during the week.")
    denied(await target_rp.password(), "This app is only available during the week.")
    assert (await other_rp.login()).id_claims["email"] == "alice@example.com"  # other apps are open

    await configure(bastion, WEEKDAYS_UTC_OFFSET_HOURS=str(open_offset))
    assert (await target_rp.login()).id_claims["email"] == "alice@example.com"


async def test_weekdays_only_defaults_to_a_saturday_and_sunday_weekend_matched_by_client_name(bastion):
    target = await bastion.create_client(name="Timesheets")
    await bastion.create_user()
    await install(bastion, "weekdays_only_for_app", WEEKDAYS_ONLY_CLIENT_NAME="Timesheets")
    rp = RelyingParty(bastion, target)
    by_day = _offsets_by_local_day()
    weekend = [offsets[0] for day, offsets in by_day.items() if day >= 5]
    weekdays = [offsets[0] for day, offsets in by_day.items() if day < 5]
    assert weekend or weekdays
    for offset in weekend:  # when some time zone is in its weekend right now
        await configure(bastion, WEEKDAYS_UTC_OFFSET_HOURS=str(offset))
        denied(await rp.login(), "This app is only available during the week.")
    for offset in weekdays:  # when some time zone is in a working day right now
        await configure(bastion, WEEKDAYS_UTC_OFFSET_HOURS=str(offset))
        assert (await rp.login()).id_claims["email"] == "alice@example.com"


async def test_weekdays_only_fails_closed_on_an_impossible_offset(bastion):
    target = await bastion.create_client(name="Timesheets")
    await bastion.create_user()
    await install(bastion, "weekdays_only_for_app", WEEKDAYS_ONLY_CLIENT_NAME="Timesheets", WEEKDAYS_UTC_OFFSET_HOURS="15")
    login = await RelyingParty(bastion, target).login()
    denied(login, "", error="access_denied")
    assert "between -12 and 14" in (await executions(bastion))[0].rules[0]["error"]


# -- 7. ip_range ----------------------------------------------------------------------------------


async def test_ip_range_lets_the_app_in_only_from_the_listed_networks(bastion):
    target = await bastion.create_client(name="Payroll")
    other = await bastion.create_client(name="Wiki")
    await bastion.create_user()
    await install(bastion, "ip_range", IP_RANGE_CLIENT_ID=target["client_id"], IP_RANGE_ALLOWED_CIDRS="10.0.0.0/8, 2001:db8::/32")
    target_rp = RelyingParty(bastion, target)
    message = "Access to this application is not allowed from your network."

    denied(await target_rp.login(), message)  # the client is 203.0.113.7
    denied(await target_rp.password(), message)
    assert (await RelyingParty(bastion, other).login()).id_claims["email"] == "alice@example.com"

    await configure(bastion, IP_RANGE_ALLOWED_CIDRS="10.0.0.0/8 203.0.113.0/25")
    assert (await target_rp.login()).id_claims["email"] == "alice@example.com"
    await configure(bastion, IP_RANGE_ALLOWED_CIDRS="203.0.113.7")
    assert (await target_rp.password()).id_claims["email"] == "alice@example.com"
    await configure(bastion, IP_RANGE_ALLOWED_CIDRS="203.0.113.8/29")  # 203.0.113.8-15: a neighbour, not us
    denied(await target_rp.login(), message)


# -- 8. roles_into_claims -------------------------------------------------------------------------------


async def test_roles_into_claims_puts_app_metadata_roles_into_both_tokens(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user(app_metadata={"roles": ["admin", "editor", "admin", 7]}, user_metadata={"roles": ["owner"]})
    await bastion.create_user(email="bob@example.com", user_metadata={"roles": ["admin"]})
    await install(bastion, "roles_into_claims", CLAIMS_NAMESPACE=NS)
    rp = RelyingParty(bastion, client)

    login = await rp.login(audience=API)
    assert login.id_claims[NS + "roles"] == ["admin", "editor"]
    assert login.access_claims[NS + "roles"] == ["admin", "editor"]
    assert "roles" not in login.id_claims and "roles" not in login.access_claims

    bob = await rp.login(email="bob@example.com", audience=API)  # user_metadata is not a source of roles
    assert bob.id_claims[NS + "roles"] == [] and bob.access_claims[NS + "roles"] == []


# -- 9. disable_flagged_users ---------------------------------------------------------------------------


async def test_disable_flagged_users_denies_users_whose_flag_is_true(bastion):
    client = await bastion.create_client()
    await bastion.create_user(app_metadata={"deleted": True})
    await bastion.create_user(email="bob@example.com", app_metadata={"deleted": False})
    await bastion.create_user(email="carol@example.com", app_metadata={"deleted": "true"}, user_metadata={"deleted": True})
    await install(bastion, "disable_flagged_users")
    rp = RelyingParty(bastion, client)
    message = "Access denied (account disabled)"

    denied(await rp.login(), message)
    denied(await rp.password(), message)
    assert (await rp.login(email="bob@example.com")).id_claims["email"] == "bob@example.com"
    assert (await rp.login(email="carol@example.com")).id_claims["email"] == "carol@example.com"  # only app_metadata, only true


async def test_disable_flagged_users_reads_the_configured_flags(bastion):
    client = await bastion.create_client()
    await bastion.create_user(app_metadata={"blocked_by_consent": True})
    await bastion.create_user(email="bob@example.com", app_metadata={"deleted": True})
    await install(bastion, "disable_flagged_users", DISABLE_FLAGGED_USERS_KEYS="blocked_by_consent")
    rp = RelyingParty(bastion, client)
    denied(await rp.login(), "Access denied (account disabled)")
    assert (await rp.login(email="bob@example.com")).id_claims["email"] == "bob@example.com"  # "deleted" is not configured


# -- 10. email_in_access_token ---------------------------------------------------------------------------


async def test_email_in_access_token_only_for_verified_addresses(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user(email_verified=True)
    await bastion.create_user(email="bob@example.com", email_verified=False)
    await install(bastion, "email_in_access_token", CLAIMS_NAMESPACE=NS)
    rp = RelyingParty(bastion, client)

    verified = await rp.login(audience=API)
    assert verified.access_claims[NS + "email"] == "alice@example.com"
    assert NS + "email" not in verified.id_claims

    unverified = await rp.login(email="bob@example.com", audience=API)
    assert NS + "email" not in unverified.access_claims
    assert unverified.id_claims["email"] == "bob@example.com" and unverified.id_claims["email_verified"] is False


# -- 11. validate_token_scopes ---------------------------------------------------------------------------


async def test_validate_token_scopes_on_the_code_flow(bastion):
    client = await bastion.create_client(name="Timesheets SPA")
    other = await bastion.create_client(name="Reports")
    await bastion.create_api()
    await bastion.create_user(app_metadata={"permissions": ["read:things"]})
    await bastion.create_user(email="bob@example.com")
    await install(bastion, "validate_token_scopes", VALIDATE_SCOPES_CLIENT_IDS=client["client_id"])
    rp = RelyingParty(bastion, client)

    login = await rp.login(scope="openid profile read:things write:things", audience=API)
    assert login.scope == ["openid", "profile", "read:things"]  # write:things is not held
    assert login.id_claims["name"]  # the ID token still follows the requested OIDC scopes

    granted = await rp.login(scope="openid write:things", audience=API)
    assert granted.scope == ["openid", "read:things"]  # as Auth0's sample: the user's permissions are added

    bob = await rp.login(email="bob@example.com", scope="openid email read:things write:things", audience=API)
    assert bob.scope == ["openid", "email"]

    # Another application is not validated by this rule.
    unchecked = await RelyingParty(bastion, other).login(scope="openid read:things write:things", audience=API)
    assert unchecked.scope == ["openid", "read:things", "write:things"]


async def test_validate_token_scopes_on_the_password_and_refresh_token_grants(bastion):
    client = await bastion.create_client(name="Timesheets SPA")
    await bastion.create_api(allow_offline_access=True)
    await bastion.create_user(app_metadata={"permissions": ["read:things"]})
    await install(bastion, "validate_token_scopes")
    rp = RelyingParty(bastion, client)
    scope = "openid offline_access read:things write:things"

    login = await rp.password(scope=scope, audience=API)
    assert login.scope == ["openid", "offline_access", "read:things"]
    assert login.token["refresh_token"]

    # Rules run again on refresh: the refreshed token is validated too (Authlib resends the scope).
    refreshed = await rp.refresh(login.token["refresh_token"], scope=scope, audience=API)
    assert refreshed.scope == ["openid", "offline_access", "read:things"]
    # Without a scope parameter the rule cannot see the OIDC scopes: only permissions remain, never write:things.
    bare = await rp.refresh(refreshed.token["refresh_token"], scope=None, audience=API)
    assert bare.scope == ["read:things"]


# -- 12. fill_profile_from_identities ---------------------------------------------------------------------


async def test_fill_profile_from_identities_fills_only_what_is_missing(bastion):
    client = await bastion.create_client()
    alice = await bastion.create_user()
    bob = await bastion.create_user(email="bob@example.com", given_name="Robert")
    carol = await bastion.create_user(email="carol@example.com")
    async with bastion.services.database.transaction() as session:
        for user in (alice, bob):
            await session.execute(update(UserRow).where(UserRow.user_id == user["user_id"]).values(
                given_name=None if user is alice else "Robert", family_name=None, name=None, picture=None))
            session.add(IdentityRow(user_id=user["user_id"], provider="github", connection="github",
                                    external_id=f"gh-{user['user_id'][-6:]}", is_social=True,
                                    profile_data={"nickname": "no-names-here"}))
            session.add(IdentityRow(user_id=user["user_id"], provider="google-oauth2", connection="google-oauth2",
                                    external_id=f"g-{user['user_id'][-6:]}", is_social=True,
                                    profile_data={"given_name": "Bob", "family_name": "Builder", "name": "Bob Builder",
                                                  "picture": "https://lh3.example.com/bob.png"}))
            session.add(IdentityRow(user_id=user["user_id"], provider="linkedin", connection="linkedin",
                                    external_id=f"li-{user['user_id'][-6:]}", is_social=True,
                                    profile_data={"given_name": "Roberto", "family_name": "Costruttore"}))
    await install(bastion, "fill_profile_from_identities")
    rp = RelyingParty(bastion, client)

    alice_claims = (await rp.login()).id_claims  # the first identity that has a value wins
    assert (alice_claims["given_name"], alice_claims["family_name"], alice_claims["name"], alice_claims["picture"]) == (
        "Bob", "Builder", "Bob Builder", "https://lh3.example.com/bob.png")

    bob_claims = (await rp.login(email="bob@example.com")).id_claims
    assert bob_claims["given_name"] == "Robert"  # already set: kept
    assert bob_claims["family_name"] == "Builder"

    carol_claims = (await rp.login(email="carol@example.com")).id_claims  # no secondary identity
    assert "given_name" not in carol_claims and "family_name" not in carol_claims
    assert carol_claims["name"] == carol["name"] and carol_claims["picture"] == carol["picture"]

    assert (await user_json(bastion, alice["user_id"])).get("given_name") is None  # tokens only, not saved


# -- 13. picture_from_metadata ------------------------------------------------------------------------------


async def test_picture_from_metadata_uses_an_https_url_from_user_metadata(bastion):
    client = await bastion.create_client()
    alice = await bastion.create_user(user_metadata={"picture": "https://img.example.com/alice.png"})
    bob = await bastion.create_user(email="bob@example.com", user_metadata={"picture": "javascript:alert(1)"})
    carol = await bastion.create_user(email="carol@example.com", user_metadata={"picture": "http://img.example.com/c.png"})
    dave = await bastion.create_user(email="dave@example.com")
    await install(bastion, "picture_from_metadata")
    rp = RelyingParty(bastion, client)

    assert (await rp.login()).id_claims["picture"] == "https://img.example.com/alice.png"
    assert (await user_json(bastion, alice["user_id"]))["picture"] == alice["picture"] != "https://img.example.com/alice.png"
    for user in (bob, carol, dave):
        assert (await rp.login(email=user["email"])).id_claims["picture"] == user["picture"]


# -- 14. default_user_metadata -------------------------------------------------------------------------------


async def test_default_user_metadata_saves_missing_defaults_once(bastion):
    client = await bastion.create_client()
    alice = await bastion.create_user(user_metadata={"theme": "dark"})
    bob = await bastion.create_user(email="bob@example.com", user_metadata={"preferred_language": "fr"})
    await install(bastion, "default_user_metadata")
    rp = RelyingParty(bastion, client)

    await rp.login()
    assert (await user_json(bastion, alice["user_id"]))["user_metadata"] == {"theme": "dark", "preferred_language": "en"}
    assert [e["type"] for e in (await executions(bastion))[0].effects] == ["users.update_user_metadata"]

    await rp.login()  # nothing missing any more: no second write
    await rp.login(email="bob@example.com")
    assert (await user_json(bastion, bob["user_id"]))["user_metadata"] == {"preferred_language": "fr"}
    assert [e.effects for e in (await executions(bastion))[:2]] == [[], []]


async def test_default_user_metadata_takes_its_defaults_from_configuration(bastion):
    client = await bastion.create_client()
    alice = await bastion.create_user(user_metadata={"newsletter": True})
    await install(bastion, "default_user_metadata", DEFAULT_USER_METADATA=json.dumps({"preferred_language": "de", "newsletter": False}))
    await RelyingParty(bastion, client).login()
    assert (await user_json(bastion, alice["user_id"]))["user_metadata"] == {"newsletter": True, "preferred_language": "de"}


# -- 15. permissions_from_api ------------------------------------------------------------------------------------


async def test_permissions_from_api_calls_the_service_with_a_signed_jwt_and_saves_the_roles(bastion_with, http_peer):
    secret = secrets.token_urlsafe(32)
    async with bastion_with(rules_http_allow_private=True) as bastion:
        client = await bastion.create_client()
        await bastion.create_api()
        alice = await bastion.create_user(email_verified=True, app_metadata={"plan": "pro"})
        await install(bastion, "permissions_from_api", PERMISSIONS_API_URL=f"{http_peer.url}/v1/roles",
                      PERMISSIONS_API_SECRET=secret, CLAIMS_NAMESPACE=NS)
        rp = RelyingParty(bastion, client)

        http_peer.respond("/v1/roles", 200, {"roles": ["editor", "viewer"]})
        login = await rp.login(audience=API)
        assert login.id_claims[NS + "roles"] == ["editor", "viewer"]
        assert login.access_claims[NS + "roles"] == ["editor", "viewer"]
        assert (await user_json(bastion, alice["user_id"]))["app_metadata"] == {"plan": "pro", "roles": ["editor", "viewer"]}

        [call] = http_peer.requests
        assert call["method"] == "GET" and call["path"] == "/v1/roles"
        scheme, _, presented = call["headers"]["Authorization"].partition(" ")
        assert scheme == "Bearer"
        token = jwt.decode(presented, OctKey.import_key(secret), algorithms=["HS256"])
        assert token.claims["sub"] == alice["user_id"] and token.claims["email"] == "alice@example.com"
        assert token.claims["aud"] == f"{http_peer.url}/v1/roles" and token.claims["client_id"] == client["client_id"]
        assert 0 < token.claims["exp"] - token.claims["iat"] <= 60
        with pytest.raises(BadSignatureError):
            jwt.decode(presented, OctKey.import_key(secrets.token_urlsafe(32)), algorithms=["HS256"])

        # The roles follow the service: an empty answer clears them.
        http_peer.respond("/v1/roles", 200, {"roles": []})
        cleared = await rp.password(audience=API)
        assert cleared.id_claims[NS + "roles"] == [] and cleared.access_claims[NS + "roles"] == []
        assert (await user_json(bastion, alice["user_id"]))["app_metadata"] == {"plan": "pro", "roles": []}


async def test_permissions_from_api_fails_closed_when_the_service_fails(bastion_with, http_peer):
    async with bastion_with(rules_http_allow_private=True) as bastion:
        client = await bastion.create_client()
        alice = await bastion.create_user(app_metadata={"roles": ["editor"]})
        await install(bastion, "permissions_from_api", PERMISSIONS_API_URL=f"{http_peer.url}/v1/roles",
                      PERMISSIONS_API_SECRET=secrets.token_urlsafe(32), CLAIMS_NAMESPACE=NS)
        rp = RelyingParty(bastion, client)

        http_peer.respond("/v1/roles", 503, {"error": "down"})
        login = await rp.login()
        denied(login, "", error="access_denied")
        assert "503" not in login.error["error_description"]  # the reason stays in the execution log
        assert "HTTP 503" in (await executions(bastion))[0].rules[0]["error"]

        http_peer.respond("/v1/roles", 200, {"roles": "admin"})  # not a list of strings
        denied(await rp.login(), "", error="access_denied")
        assert (await user_json(bastion, alice["user_id"]))["app_metadata"] == {"roles": ["editor"]}
        assert len(http_peer.requests) == 2
