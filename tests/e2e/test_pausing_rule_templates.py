"""The rule templates that pause a login, each proven end to end in a real browser:
templates/rules/consent_redirect.py, mfa_for_some_apps_or_users.py, step_up_for_api_scope.py
and step_up_for_web_apps.py.

`bastion serve` runs on SQLite; each template is stored from its file with `bastion rules add`
and configured with `bastion rules config set` or the Management API (PUT
/api/v2/rules-configs/{key}). Headless Chromium (Debian's, through Playwright) does what a user
does: the login form, a third-party consent page, an authenticator app's enrolment (pyotp
computes the codes from the secret the page shows) and its challenges.

The application is a small site the test serves on 127.0.0.1 in a thread: its callback page,
and the consent page of the consent template, which posts the answer back to Bastion's
/continue. Authlib builds the application's authorization requests (PKCE S256, nonce) and
exchanges its codes; every token is verified against the published JWKS before its claims
are looked at.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pyotp
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bastion.login.flow import REMEMBER_COOKIE
from conftest import MGMT_ID, MGMT_SECRET

from .conftest import LiveServer, query_params

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "rules"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
PASSWORD = "Pausing-Templates-Passw0rd!"
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
BANK_API = "https://bank.example.com/api"
ACCESS_TOKEN_ALGS = ["RS256", "ES256", "EdDSA"]


# -- the third-party site: the application's callback page and a consent page -----------------


class Site:
    """A small site on 127.0.0.1, served from a thread.

    GET /callback  the application's redirect URI: a plain page (the test reads the URL).
    GET /terms     a consent page: the terms, and a form that POSTs `confirm=yes|no` to
                   `<issuer>/continue?state=<the state Bastion added>`. The issuer is this
                   site's own configuration, never taken from the request.
    """

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.consent_pages: list[dict[str, str]] = []  # the query of every consent page served
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                if parts.path == "/callback":
                    self._answer(200, '<p id="callback">Back at the application.</p>')
                elif parts.path == "/terms":
                    query = query_params(self.path)
                    with site._lock:
                        site.consent_pages.append(query)
                    self._answer(200, site.terms_page(query.get("state", "")))
                else:
                    self._answer(404, "<p>Not found</p>")

            def _answer(self, status: int, body: str) -> None:
                data = f"<!doctype html><html><head><meta charset=utf-8><title>Example Corp</title></head><body>{body}</body></html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="third-party-site", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    @property
    def callback(self) -> str:
        return self.url("/callback")

    def terms_page(self, state: str) -> str:
        action = html.escape(f"{self.issuer}/continue?{urlencode({'state': state})}")
        return f"""<h1>Terms of service</h1>
<p id="terms">Example Corp keeps your name and email address to run this service.</p>
<form method="post" action="{action}">
  <button type="submit" name="confirm" value="yes" id="accept">I accept</button>
  <button type="submit" name="confirm" value="no" id="decline">I do not accept</button>
</form>"""

    def consent_pages_served(self) -> int:
        with self._lock:
            return len(self.consent_pages)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# -- the tenant, set up with the CLI and the Management API --------------------------------------


@dataclass
class Result:
    """What the application ended up with: verified tokens, or the error at its redirect URI."""

    id_claims: dict | None = None
    access_claims: dict | None = None
    token: dict | None = None
    error: dict | None = None

    @property
    def scope(self) -> list[str]:
        assert self.token is not None, self.error
        assert self.access_claims["scope"] == self.token["scope"]
        return self.token["scope"].split()


@dataclass
class Attempt:
    """One authorization request, as the application keeps it until the browser comes back."""

    url: str
    state: str
    verifier: str
    nonce: str
    scope: str
    audience: str | None


class Tenant:
    def __init__(self, server: LiveServer):
        self.server = server
        self.discovery = server.discovery()
        self.http = httpx.Client(base_url=server.base_url, timeout=15)
        token = self.http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
            "audience": f"{server.issuer}/api/v2/",
        })
        assert token.status_code == 200, token.text
        self.bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def management(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, "/api/v2" + path, headers=self.bearer, **kwargs)

    def create_app(self, name: str, callback: str, *grant_types: str) -> App:
        grants = grant_types or ("authorization_code",)
        created = json.loads(self.server.cli(
            "clients", "create", "--name", name, "--callback", callback, *(a for g in grants for a in ("--grant-type", g))))
        return App(self, created["client_id"], created["client_secret"], callback)

    def create_user(self, email: str, app_metadata: dict | None = None) -> str:
        user_id = json.loads(self.server.cli("users", "create", "--email", email, "--password", PASSWORD, "--verified"))["user_id"]
        if app_metadata:
            patched = self.management("PATCH", f"/users/{quote(user_id, safe='')}", json={"app_metadata": app_metadata})
            assert patched.status_code == 200, patched.text
        return user_id

    def user(self, user_id: str) -> dict:
        response = self.management("GET", f"/users/{quote(user_id, safe='')}")
        assert response.status_code == 200, response.text
        return response.json()

    def create_api(self, identifier: str, scopes: list[str]) -> None:
        response = self.management("POST", "/resource-servers", json={
            "identifier": identifier, "name": "Bank API", "allow_offline_access": False,
            "skip_consent_for_verifiable_first_party_clients": True,
            "scopes": [{"value": s, "description": s} for s in scopes],
        })
        assert response.status_code == 201, response.text

    def install(self, template: str) -> None:
        """The template's file, stored as a rule by the CLI (which checks the script first)."""
        rule = json.loads(self.server.cli("rules", "add", str(TEMPLATES / f"{template}.py")))
        assert rule["enabled"] is True, rule

    def configure(self, key: str, value: str) -> None:
        assert f"rules config {key} set" in self.server.cli("rules", "config", "set", key, value)

    def configure_by_api(self, key: str, value: str) -> None:
        response = self.management("PUT", f"/rules-configs/{key}", json={"value": value})
        assert response.status_code == 200, response.text

    def password_grant(self, app: App, scope: str, **params: str) -> httpx.Response:
        return self.http.post("/oauth/token", data={
            "grant_type": "password", "username": ALICE, "password": PASSWORD, "scope": scope,
            "client_id": app.client_id, "client_secret": app.client_secret, **params,
        })

    def close(self) -> None:
        self.http.close()


@dataclass
class App:
    """A relying party: Authlib's OAuth2Client for the requests and the code exchange."""

    tenant: Tenant
    client_id: str
    client_secret: str
    callback: str
    _keys: KeySet | None = field(default=None, repr=False)

    def oauth(self, scope: str) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client_id, client_secret=self.client_secret, scope=scope, redirect_uri=self.callback,
            code_challenge_method="S256", token_endpoint_auth_method="client_secret_post", timeout=15,
        )

    def start(self, scope: str = "openid profile email", **params: str) -> Attempt:
        verifier, nonce = generate_token(48), generate_token(20)
        with self.oauth(scope) as oauth:
            url, state = oauth.create_authorization_url(
                self.tenant.discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **params)
        assert query_params(url)["code_challenge_method"] == "S256"
        return Attempt(url, state, verifier, nonce, scope, params.get("audience"))

    def finish(self, attempt: Attempt, location: str) -> Result:
        """The browser is back at the callback: the error it carries, or the exchanged and verified tokens."""
        assert location.startswith(self.callback + "?"), location
        returned = query_params(location)
        assert returned.get("state") == attempt.state, returned
        if "error" in returned:
            assert "code" not in returned, returned
            return Result(error=returned)
        with self.oauth(attempt.scope) as oauth:
            token = oauth.fetch_token(
                self.tenant.discovery["token_endpoint"], authorization_response=location, state=attempt.state,
                code_verifier=attempt.verifier)
        return self.verify(token, nonce=attempt.nonce, audience=attempt.audience)

    def keys(self) -> KeySet:
        if self._keys is None:
            response = httpx.get(self.tenant.discovery["jwks_uri"], timeout=10)
            assert response.status_code == 200, response.text
            assert not any("d" in key for key in response.json()["keys"])
            self._keys = KeySet.import_key_set(response.json())
        return self._keys

    def verify(self, token: dict, *, nonce: str | None, audience: str | None) -> Result:
        """Both tokens' signatures against the JWKS, then the claim checks a relying party makes."""
        issuer = self.tenant.discovery["issuer"]
        access = jwt.decode(token["access_token"], self.keys(), algorithms=ACCESS_TOKEN_ALGS)
        JWTClaimsRegistry(
            iss={"essential": True, "value": issuer}, sub={"essential": True}, exp={"essential": True},
            iat={"essential": True}, jti={"essential": True},
        ).validate(access.claims)
        audiences = access.claims["aud"] if isinstance(access.claims["aud"], list) else [access.claims["aud"]]
        assert (audience or f"{self.tenant.server.issuer}/userinfo") in audiences, access.claims["aud"]
        assert access.claims["azp"] == self.client_id
        id_claims = None
        if "id_token" in token:
            decoded = jwt.decode(token["id_token"], self.keys(), algorithms=self.tenant.discovery["id_token_signing_alg_values_supported"])
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                options={"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": self.client_id},
                         "sub": {"essential": True}, "exp": {"essential": True}, "iat": {"essential": True}},
                params={"nonce": nonce, "client_id": self.client_id, "access_token": token["access_token"]},
            )
            claims.validate(leeway=5)
            assert claims["sub"] == access.claims["sub"]
            if nonce:
                assert claims["nonce"] == nonce
            id_claims = dict(claims)
        return Result(id_claims=id_claims, access_claims=dict(access.claims), token=dict(token))


# -- the user's side: the browser and an authenticator app ------------------------------------


class Authenticator:
    """The user's authenticator app: pyotp on the secret the enrolment page showed.

    Bastion accepts each 30-second time step once, within one step of its clock, so every
    code comes from a step not used before: the current one, else the next one.
    """

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret)
        self.used: set[int] = set()

    def code(self) -> str:
        now = int(time.time()) // 30
        for step in (now, now + 1):
            if step not in self.used:
                self.used.add(step)
                return self.totp.at(step * 30)
        raise AssertionError("two codes already used in this window: the test asks for too many codes at once")


def sign_in(page: Page, attempt: Attempt, email: str) -> None:
    """The application sends the browser to /authorize; the user fills Bastion's login form."""
    page.goto(attempt.url)
    page.wait_for_url(re.compile(r"/u/login\?state="))
    page.fill("#username", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def arrive(page: Page, app: App, attempt: Attempt) -> Result:
    """Wait for the browser at the application's callback; the application takes it from there."""
    page.wait_for_url(re.compile(re.escape(app.callback) + r"\?"))
    expect(page.locator("#callback")).to_be_visible()
    return app.finish(attempt, page.url)


def enrol_authenticator(page: Page) -> Authenticator:
    """On /u/mfa with no factor yet: enrol an authenticator app, note the recovery code, go on."""
    page.wait_for_url(re.compile(r"/u/mfa\?state="))
    page.click("#enroll-otp")
    page.wait_for_url(re.compile(r"/u/mfa/otp/enroll\?state="))
    expect(page.locator("#qr-code")).to_be_visible()
    assert page.locator("#qr-code").get_attribute("src").startswith("data:image/svg+xml")
    authenticator = Authenticator(page.locator("#otp-secret").inner_text().strip())
    page.fill("#code", authenticator.code())
    page.click("button[type=submit]")
    expect(page.locator("#recovery-code")).to_have_text(re.compile(r"^[A-Z0-9]{24}$"))
    page.click("#saved")
    return authenticator


def pass_challenge(page: Page, authenticator: Authenticator) -> None:
    """On /u/mfa with an authenticator enrolled: the challenge asks for its current code."""
    page.wait_for_url(re.compile(r"/u/mfa\?state="))
    expect(page.locator("#code")).to_be_visible()
    expect(page.locator("#otp-secret")).to_have_count(0)  # a challenge, not a new enrolment
    page.fill("#code", authenticator.code())
    page.click("button[type=submit]")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_browser(browser: Browser) -> Iterator[Callable[[], Page]]:
    """A factory of browser profiles: each has its own cookie jar (no session, nothing remembered)."""
    expect.set_options(timeout=TIMEOUT_MS)
    contexts = []

    def open_profile() -> Page:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_profile
    for context in contexts:
        context.close()


@pytest.fixture
def tenant(live_server, sqlite_url) -> Iterator[Tenant]:
    tenant = Tenant(live_server(sqlite_url))
    yield tenant
    tenant.close()


@pytest.fixture
def site(tenant: Tenant) -> Iterator[Site]:
    site = Site(tenant.server.issuer)
    yield site
    site.close()


def bastion_cookies(page: Page) -> set[str]:
    return {cookie["name"] for cookie in page.context.cookies()}


# -- 1. consent_redirect ----------------------------------------------------------------------


def test_consent_redirect_asks_once_on_the_third_party_page_and_saves_the_consent(tenant, site, new_browser):
    app = tenant.create_app("Consent App", site.callback)
    alice = tenant.create_user(ALICE)
    tenant.configure("CONSENT_FORM_URL", site.url("/terms?lang=en"))
    tenant.install("consent_redirect")

    page = new_browser()
    attempt = app.start()
    sign_in(page, attempt, ALICE)
    page.wait_for_url(re.compile(re.escape(site.url("/terms")) + r"\?"))
    expect(page.locator("#terms")).to_be_visible()
    assert sorted(query_params(page.url)) == ["lang", "state"]  # Bastion adds its state, nothing about the user
    assert "consentGiven" not in tenant.user(alice).get("user_metadata", {})  # nothing saved before the answer
    before = int(time.time() * 1000)
    page.click("#accept")  # the page's form POSTs confirm=yes to <issuer>/continue?state=...
    result = arrive(page, app, attempt)
    after = int(time.time() * 1000)
    assert result.id_claims["email"] == ALICE

    metadata = tenant.user(alice)["user_metadata"]
    assert metadata["consentGiven"] is True
    assert isinstance(metadata["consentTimestamp"], int) and before <= metadata["consentTimestamp"] <= after

    # The next login, in another browser (no session), goes straight back to the application.
    other = new_browser()
    attempt = app.start()
    sign_in(other, attempt, ALICE)
    assert arrive(other, app, attempt).id_claims["email"] == ALICE
    # Silent authentication in the first browser passes too, now that she has consented.
    attempt = app.start(prompt="none")
    page.goto(attempt.url)
    assert arrive(page, app, attempt).id_claims["email"] == ALICE
    assert site.consent_pages_served() == 1
    assert tenant.user(alice)["user_metadata"]["consentTimestamp"] == metadata["consentTimestamp"]  # not written again


def test_consent_redirect_refusal_reaches_the_application_and_no_token_is_issued_without_consent(tenant, site, new_browser):
    app = tenant.create_app("Consent App", site.callback, "authorization_code", "password")
    bob = tenant.create_user(BOB)
    tenant.create_user(ALICE)
    tenant.configure_by_api("CONSENT_FORM_URL", site.url("/terms"))
    tenant.install("consent_redirect")

    page = new_browser()
    attempt = app.start()
    sign_in(page, attempt, BOB)
    page.wait_for_url(re.compile(re.escape(site.url("/terms")) + r"\?state="))
    page.click("#decline")  # confirm=no
    result = arrive(page, app, attempt)
    assert result.error["error"] == "unauthorized"
    assert result.error["error_description"] == "User did not consent!"
    assert "consentGiven" not in tenant.user(bob)["user_metadata"]

    # Logins that cannot show the page are refused, never redirected: silent authentication...
    attempt = app.start(prompt="none")
    page.goto(attempt.url)
    result = arrive(page, app, attempt)
    assert result.error["error"] == "unauthorized"
    assert result.error["error_description"] == "Consent required: sign in to the application to accept the terms."
    # ... and the password grant (alice has not consented either).
    refused = tenant.password_grant(app, "openid")
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "unauthorized" and "Consent required" in refused.json()["error_description"]
    assert site.consent_pages_served() == 1

    # The next interactive login asks again; accepting lets him in.
    attempt = app.start(prompt="login")
    sign_in(page, attempt, BOB)
    page.wait_for_url(re.compile(re.escape(site.url("/terms")) + r"\?state="))
    page.click("#accept")
    assert arrive(page, app, attempt).id_claims["email"] == BOB
    assert tenant.user(bob)["user_metadata"]["consentGiven"] is True
    assert site.consent_pages_served() == 2


# -- 2. mfa_for_some_apps_or_users --------------------------------------------------------------


def test_mfa_for_listed_apps_and_flagged_users(tenant, site, new_browser):
    payroll = tenant.create_app("Payroll", site.callback)
    wiki = tenant.create_app("Wiki", site.callback)
    tenant.create_user(ALICE)
    tenant.create_user(CAROL, app_metadata={"use_mfa": True})
    tenant.configure_by_api("MFA_CLIENT_IDS", f"{payroll.client_id}, another-client-id")
    tenant.install("mfa_for_some_apps_or_users")

    # The wiki is not listed: alice goes straight back to it, without a second factor.
    page = new_browser()
    attempt = wiki.start()
    sign_in(page, attempt, ALICE)
    result = arrive(page, wiki, attempt)
    assert "amr" not in result.id_claims

    # Payroll is listed: her SSO session is not enough, she enrols an authenticator app.
    attempt = payroll.start()
    page.goto(attempt.url)
    authenticator = enrol_authenticator(page)
    result = arrive(page, payroll, attempt)
    assert result.id_claims["amr"] == ["mfa"] and "acr" not in result.id_claims
    assert REMEMBER_COOKIE not in bastion_cookies(page)  # the browser is not remembered

    # Enrolled now, but the wiki still does not ask her for it.
    other = new_browser()
    attempt = wiki.start()
    sign_in(other, attempt, ALICE)
    assert "amr" not in arrive(other, wiki, attempt).id_claims

    # A new login session in the first browser: Payroll challenges again.
    attempt = payroll.start(prompt="login")
    sign_in(page, attempt, ALICE)
    pass_challenge(page, authenticator)
    assert arrive(page, payroll, attempt).id_claims["amr"] == ["mfa"]

    # Carol is flagged in app_metadata: even the wiki asks her.
    flagged = new_browser()
    attempt = wiki.start()
    sign_in(flagged, attempt, CAROL)
    enrol_authenticator(flagged)
    result = arrive(flagged, wiki, attempt)
    assert result.id_claims["email"] == CAROL and result.id_claims["amr"] == ["mfa"]


# -- 3. step_up_for_api_scope -----------------------------------------------------------------------


def test_step_up_for_api_scope_needs_mfa_for_transfer_funds_only(tenant, site, new_browser):
    tenant.create_api(BANK_API, ["read:balance", "transfer:funds"])
    bank = tenant.create_app("Bank", site.callback, "authorization_code", "password")
    tenant.create_user(ALICE)
    tenant.configure("STEP_UP_API_AUDIENCE", BANK_API)
    tenant.configure("STEP_UP_API_SCOPES", "transfer:funds")
    tenant.install("step_up_for_api_scope")

    # Reading the balance: no second factor, and the access token does not carry transfer:funds.
    page = new_browser()
    attempt = bank.start(scope="openid profile read:balance", audience=BANK_API)
    sign_in(page, attempt, ALICE)
    result = arrive(page, bank, attempt)
    assert result.scope == ["openid", "profile", "read:balance"]
    assert "amr" not in result.id_claims

    # Asking for transfer:funds in the same session: MFA first (enrolment), then the scope.
    attempt = bank.start(scope="openid profile read:balance transfer:funds", audience=BANK_API)
    page.goto(attempt.url)
    authenticator = enrol_authenticator(page)
    result = arrive(page, bank, attempt)
    assert result.scope == ["openid", "profile", "read:balance", "transfer:funds"]
    assert result.id_claims["amr"] == ["mfa"]

    # Another browser asking for it straight away: challenged after the password; nothing remembered.
    other = new_browser()
    attempt = bank.start(scope="openid transfer:funds", audience=BANK_API)
    sign_in(other, attempt, ALICE)
    pass_challenge(other, authenticator)
    result = arrive(other, bank, attempt)
    assert result.scope == ["openid", "transfer:funds"]
    assert REMEMBER_COOKIE not in bastion_cookies(other)

    # The password grant reads the token request's scope: the scope needs Auth0's MFA API there.
    plain = tenant.password_grant(bank, "openid read:balance", audience=BANK_API)
    assert plain.status_code == 200, plain.text
    assert bank.verify(plain.json(), nonce=None, audience=BANK_API).scope == ["openid", "read:balance"]
    stepped = tenant.password_grant(bank, "openid transfer:funds", audience=BANK_API)
    assert stepped.status_code == 403, stepped.text
    assert stepped.json()["error"] == "mfa_required" and stepped.json()["mfa_token"]


# -- 4. step_up_for_web_apps ------------------------------------------------------------------------


def test_step_up_for_web_apps_with_acr_values(tenant, site, new_browser):
    portal = tenant.create_app("Portal", site.callback)
    blog = tenant.create_app("Blog", site.callback)
    tenant.create_user(ALICE)
    tenant.configure("STEP_UP_WEB_CLIENT_IDS", portal.client_id)
    tenant.install("step_up_for_web_apps")

    # An ordinary login: no second factor, neither amr nor acr.
    page = new_browser()
    attempt = portal.start()
    sign_in(page, attempt, ALICE)
    result = arrive(page, portal, attempt)
    assert "amr" not in result.id_claims and "acr" not in result.id_claims

    # The application steps up with acr_values: MFA (enrolment), then amr and the matching acr.
    attempt = portal.start(acr_values=MFA_ACR)
    page.goto(attempt.url)
    authenticator = enrol_authenticator(page)
    result = arrive(page, portal, attempt)
    assert result.id_claims["amr"] == ["mfa"] and result.id_claims["acr"] == MFA_ACR

    # Asked again in the same session: MFA is already among the session's methods.
    attempt = portal.start(acr_values=MFA_ACR)
    page.goto(attempt.url)
    result = arrive(page, portal, attempt)
    assert result.id_claims["amr"] == ["mfa"] and result.id_claims["acr"] == MFA_ACR

    # The blog is not listed: its acr_values are not honoured, and its ID token says so.
    other = new_browser()
    attempt = blog.start(acr_values=MFA_ACR)
    sign_in(other, attempt, ALICE)
    result = arrive(other, blog, attempt)
    assert "amr" not in result.id_claims and "acr" not in result.id_claims

    # In that session the portal's step-up challenges her enrolled authenticator.
    attempt = portal.start(acr_values=MFA_ACR)
    other.goto(attempt.url)
    pass_challenge(other, authenticator)
    result = arrive(other, portal, attempt)
    assert result.id_claims["amr"] == ["mfa"] and result.id_claims["acr"] == MFA_ACR
