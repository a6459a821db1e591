"""Security keys and passkeys, end to end: Chromium (through Playwright) with its virtual
authenticator (CDP `WebAuthn` domain), against `bastion serve` seeded with `bastion demo` and
a rule that asks for MFA.

WebAuthn needs a secure context and an RP id that is a domain: the server's issuer is
http://localhost:<port> (localhost is a secure context in Chromium; 127.0.0.1 is not a valid RP id).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect, sync_playwright

from bastion.demo import DEMO_EMAIL, DEMO_PASSWORD

from conftest import MGMT_ID, MGMT_SECRET

from .conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
MFA_RULE = 'async def rule(user, context, api):\n    context.multifactor = {"provider": "any"}\n'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def mfa_server(live_server, sqlite_url, tmp_path: Path):
    port = free_port()
    server = live_server(sqlite_url, port=port, issuer=f"http://localhost:{port}")
    server.cli("demo")
    rule = tmp_path / "require_mfa.py"
    rule.write_text(MFA_RULE)
    server.cli("rules", "add", str(rule))
    return server


class Browsing:
    """One browser profile (cookie jar) with its own virtual authenticator."""

    def __init__(self, browser: Browser, transport: str = "usb"):
        self.context: BrowserContext = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.cdp: CDPSession = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable")
        self.authenticator = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": transport, "hasResidentKey": True, "hasUserVerification": True,
            "isUserVerified": True, "automaticPresenceSimulation": True,
        }})["authenticatorId"]

    def credentials(self) -> list[dict]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})["credentials"]

    def add_credential(self, credential: dict) -> None:
        """The same key plugged into this browser: its private key and counter."""
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.authenticator, "credential": credential})

    def log_in(self, server) -> None:
        self.page.goto(f"{server.issuer}/demo")
        self.page.click("#login")
        self.page.wait_for_url(re.compile(r"/u/login\?state="))
        self.page.fill("#username", DEMO_EMAIL)
        self.page.fill("#password", DEMO_PASSWORD)
        self.page.click("button[type=submit]")

    def expect_mfa_claims(self) -> None:
        self.page.wait_for_url(re.compile(r"/demo/callback\?"))
        claims = self.page.locator("#claims")
        expect(claims).to_contain_text(DEMO_EMAIL)
        expect(claims.locator("tr", has=self.page.locator("th", has_text=re.compile(r"^amr$")))).to_contain_text("mfa")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def browsing(browser: Browser) -> Iterator[Callable[..., Browsing]]:
    expect.set_options(timeout=TIMEOUT_MS)
    opened: list[Browsing] = []

    def open_profile(transport: str = "usb") -> Browsing:
        opened.append(Browsing(browser, transport))
        return opened[-1]

    yield open_profile
    for profile in opened:
        profile.close()


def _enrolments(server) -> list[dict]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        token = http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
            "audience": f"{server.issuer}/api/v2/",
        }).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        user = http.get("/api/v2/users-by-email", params={"email": DEMO_EMAIL}, headers=headers).json()[0]
        return http.get(f"/api/v2/users/{user['user_id']}/enrollments", headers=headers).json()


def _enrol_security_key(profile: Browsing, server) -> None:
    profile.log_in(server)
    page = profile.page
    page.wait_for_url(re.compile(r"/u/mfa\?state="))
    page.click("#enroll-webauthn")
    page.wait_for_url(re.compile(r"/u/mfa/webauthn/enroll\?state="))
    expect(page.locator("#error")).to_be_hidden()
    page.click("#webauthn-start")
    expect(page.locator("#recovery-code")).to_have_text(re.compile(r"^[A-Z0-9]{24}$"))
    page.click("#saved")
    profile.expect_mfa_claims()


def test_enrol_a_security_key_then_log_in_with_it(browsing, mfa_server):
    first = browsing()
    _enrol_security_key(first, mfa_server)
    [credential] = first.credentials()
    assert credential["rpId"] == "localhost" and credential["isResidentCredential"] is True
    enrolments = _enrolments(mfa_server)
    assert [e["type"] for e in enrolments] == ["webauthn-roaming"] and enrolments[0]["status"] == "confirmed"

    # A fresh browser (no cookies, nothing remembered) with the same key: challenged with it.
    second = browsing()
    second.add_credential(credential)
    second.log_in(mfa_server)
    page = second.page
    page.wait_for_url(re.compile(r"/u/mfa/webauthn\?state="))
    expect(page.locator("#use-recovery")).to_be_visible()
    page.click("#webauthn-start")
    second.expect_mfa_claims()
    [used] = second.credentials()
    assert used["signCount"] > credential["signCount"]
    assert "last_auth" in _enrolments(mfa_server)[0]

    # A clone of the key as it was at enrolment: its counter is behind the server's, so it is refused.
    clone = browsing()
    clone.add_credential(credential)
    clone.log_in(mfa_server)
    clone.page.wait_for_url(re.compile(r"/u/mfa/webauthn\?state="))
    clone.page.click("#webauthn-start")
    expect(clone.page.locator("#error")).to_contain_text("could not be verified")
    expect(clone.page.locator("#claims")).to_have_count(0)


def test_a_wrong_or_cancelled_assertion_shows_an_error(browsing, mfa_server):
    first = browsing()
    _enrol_security_key(first, mfa_server)
    [credential] = first.credentials()

    # A key that answers with a bad signature: the server refuses it and says so.
    profile = browsing()
    profile.add_credential(credential)
    profile.cdp.send("WebAuthn.setResponseOverrideBits", {"authenticatorId": profile.authenticator, "isBogusSignature": True})
    profile.log_in(mfa_server)
    page = profile.page
    page.wait_for_url(re.compile(r"/u/mfa/webauthn\?state="))
    page.click("#webauthn-start")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("could not be verified")
    expect(page.locator("#claims")).to_have_count(0)

    # The key answers properly: the login goes on. Posting that answer again afterwards is refused.
    profile.cdp.send("WebAuthn.setResponseOverrideBits", {"authenticatorId": profile.authenticator, "isBogusSignature": False})
    answers: list[str] = []
    page.on("request", lambda request: answers.append(request.post_data or "") if request.method == "POST" else None)
    page.click("#webauthn-start")
    profile.expect_mfa_claims()
    form = next(a for a in answers if "credential=" in a)
    replay = page.request.post(f"{mfa_server.issuer}/u/mfa/webauthn", data=form,
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, max_redirects=0)
    assert replay.status == 400 and "expired" in replay.text()  # the login is over: nothing more is issued

    # No key answers (this browser's authenticator holds no registered key): the page says so.
    other = browsing()
    other.log_in(mfa_server)
    page = other.page
    page.wait_for_url(re.compile(r"/u/mfa/webauthn\?state="))
    page.click("#webauthn-start")
    expect(page.locator("#error")).to_be_visible(timeout=60_000)
    expect(page.locator("#error")).to_contain_text("cancelled or timed out")
    expect(page.locator("#webauthn-start")).to_be_enabled()


def test_the_pages_allow_only_their_own_nonced_script(browsing, mfa_server):
    profile = browsing()
    profile.log_in(mfa_server)
    page = profile.page
    page.wait_for_url(re.compile(r"/u/mfa\?state="))
    page.click("#enroll-webauthn")
    page.wait_for_url(re.compile(r"/u/mfa/webauthn/enroll\?state="))
    again = page.request.get(page.url)
    policy = again.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]+)'", policy).group(1)
    assert "default-src 'none'" in policy and "unsafe" not in policy.split("script-src")[1].split(";")[0]
    assert f'<script nonce="{nonce}">' in again.text() and again.text().count("<script nonce=") == 1
    other = page.request.get(page.url).headers["content-security-policy"]
    assert other != policy  # a new nonce for every response
    # Other pages still allow no script at all.
    assert "script-src" not in page.request.get(f"{mfa_server.issuer}/demo").headers["content-security-policy"]
