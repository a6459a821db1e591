"""A real browser (Debian's Chromium through Playwright) against `bastion serve` seeded with `bastion demo`.

The demo relying party at /demo sends the browser to /authorize, Bastion's login page
takes the credentials, and the demo's callback exchanges the code over HTTP and
shows the verified ID token's claims.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bastion.demo import DEMO_EMAIL, DEMO_PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def demo_server(live_server, sqlite_url):
    server = live_server(sqlite_url)
    output = server.cli("demo")
    assert f"{server.issuer}/demo" in output and DEMO_EMAIL in output
    return server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()  # a fresh cookie jar for every test
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def _open_login_page(page: Page, server) -> None:
    page.goto(server.url("/demo"))
    page.click("#login")
    page.wait_for_url(re.compile(r"/u/login\?state="))
    expect(page.locator("#username")).to_be_visible()
    expect(page.locator("#password")).to_be_visible()
    expect(page.locator(".app")).to_have_text("Bastion Demo App")


def _submit_login(page: Page, email: str, password: str) -> None:
    page.fill("#username", email)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_demo_login_shows_claims_then_logout_requires_login_again(page: Page, demo_server, tmp_path):
    _open_login_page(page, demo_server)
    screenshot = tmp_path / "login-page.png"
    page.screenshot(path=str(screenshot))
    data = screenshot.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")

    _submit_login(page, DEMO_EMAIL, DEMO_PASSWORD)
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    claims = page.locator("#claims")
    expect(claims).to_be_visible()
    expect(claims).to_contain_text(DEMO_EMAIL)
    expect(claims.locator("tr", has=page.locator("th", has_text=re.compile(r"^iss$")))).to_contain_text(
        demo_server.issuer + "/"
    )
    expect(page.locator("#scope")).to_contain_text("openid")
    expect(page.locator("#error")).to_have_count(0)

    # Still logged in: a new login goes straight back to the application, without the login page.
    page.goto(demo_server.url("/demo?login=1"))
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    expect(page.locator("#claims")).to_contain_text(DEMO_EMAIL)

    page.click("#logout")
    page.wait_for_url(demo_server.url("/demo"))
    expect(page.locator("#login")).to_be_visible()

    page.goto(demo_server.url("/demo?login=1"))
    page.wait_for_url(re.compile(r"/u/login\?state="))
    expect(page.locator("#username")).to_be_visible()
    expect(page.locator("#claims")).to_have_count(0)


def test_wrong_password_shows_an_error_on_the_login_page(page: Page, demo_server):
    _open_login_page(page, demo_server)
    _submit_login(page, DEMO_EMAIL, "Not-The-Passw0rd!")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("Wrong email or password")
    assert "/u/login" in page.url
    expect(page.locator("#username")).to_have_value(DEMO_EMAIL)
    expect(page.locator("#claims")).to_have_count(0)

    # The form still works after the error: the right password logs in.
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    expect(page.locator("#claims")).to_contain_text(DEMO_EMAIL)


def test_signup_creates_an_account_and_logs_in(page: Page, demo_server):
    email = f"new-{secrets.token_hex(4)}@example.com"
    _open_login_page(page, demo_server)
    page.click("text=Sign up")
    page.wait_for_url(re.compile(r"/u/signup\?state="))
    page.fill("#email", email)
    page.fill("#password", "Fresh-Signup-Passw0rd!")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    claims = page.locator("#claims")
    expect(claims).to_contain_text(email)
    expect(claims).not_to_contain_text(DEMO_EMAIL)
    expect(page.locator("#error")).to_have_count(0)
