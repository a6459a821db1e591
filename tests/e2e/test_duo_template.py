"""templates/rules/duo_every_login.py in a real browser: every login passes Duo's Universal Prompt.

Chromium (Playwright) logs in to the demo application of `bastion serve`; Duo is the local
HTTPS server of tests/test_mfa_duo.py, which implements Duo's documented endpoints (health
check, authorize, token with HS512 JWTs) and approves or denies. Bastion trusts its test CA
through BASTION_DUO_CA_FILE; the browser, which never sees a real Duo either, ignores the
certificate.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from bastion.demo import DEMO_EMAIL, DEMO_PASSWORD
from test_mfa_duo import IKEY, SKEY, FakeDuo, serve_duo
from tests.certificates import ca_and_server_certificate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "rules" / "duo_every_login.py"


@pytest.fixture
def duo(tmp_path: Path):
    ca, cert, key = ca_and_server_certificate(tmp_path, "duo")
    fake = FakeDuo(ca_file=ca)
    server = serve_duo(fake, cert, key)
    yield fake
    server.shutdown()
    server.server_close()
    assert not fake.errors, fake.errors


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page, server) -> None:
    page.goto(server.url("/demo"))
    page.click("#login")
    page.fill("#username", DEMO_EMAIL)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")


def test_every_login_passes_duo(live_server, sqlite_url, duo: FakeDuo, browser: Browser):
    server = live_server(sqlite_url, env={"BASTION_DUO_CA_FILE": str(duo.ca_file), "BASTION_CACHE_TTL": "0"})
    server.cli("demo")
    server.cli("rules", "add", str(TEMPLATE), "--order", "1")
    for key, value in (("DUO_IKEY", IKEY), ("DUO_SKEY", SKEY), ("DUO_HOST", duo.host)):
        server.cli("rules", "config", "set", key, value)

    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    log_in(page, server)
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    expect(page.locator("#claims")).to_contain_text(DEMO_EMAIL)
    expect(page.locator("#claims")).to_contain_text("mfa")
    assert [a["duo_uname"] for a in duo.authorizations] == [DEMO_EMAIL]
    assert len(duo.exchanges) == 1

    # Not remembered: the next login of the same session goes through Duo again.
    page.goto(server.url("/demo?login=1"))
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    assert len(duo.authorizations) == 2 and len(duo.exchanges) == 2

    # Duo denies: nothing reaches the application.
    duo.result = "deny"
    page.goto(server.url("/demo?login=1"))
    expect(page.locator("h1")).to_contain_text("Duo did not approve")
    assert "/demo/callback" not in page.url
    context.close()

