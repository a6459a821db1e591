"""Passwordless login in a real browser (Chromium through Playwright) against `bastion serve`
seeded with `bastion demo`, with an `email` connection enabled for the demo application and
a real SMTP server (aiosmtpd) on loopback receiving the codes and links.

    /demo -> /u/login -> "Email me a code" -> /u/passwordless -> the code page -> /demo/callback
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bastion.demo import DEMO_CLIENT_ID
from conftest import MGMT_ID, MGMT_SECRET

from .conftest import free_port, poll

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
EMAIL = "browser-user@example.com"


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def wait_for(self, count: int, timeout: float = 10.0) -> str:
        """The text of message number `count` (1-based), once it has arrived."""
        poll(lambda: len(self.messages) >= count, timeout=timeout, interval=0.05, message=f"email {count} arrives")
        return self.messages[count - 1].get_body(("plain",)).get_content()


def code_in(text: str) -> str:
    match = re.search(r"^[ ]+(\d{6})\s*$", text, re.M)
    assert match, text
    return match.group(1)


def link_in(text: str) -> str:
    match = re.search(r"(https?://\S+)", text)
    assert match, text
    return match.group(1)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.port = port
    try:
        yield box
    finally:
        controller.stop()


def start_server(live_server, sqlite_url, mailbox: Mailbox, **env: str):
    """`bastion serve` with the demo, its SMTP server at the mailbox, and the `email` connection enabled for the demo app."""
    server = live_server(sqlite_url, env={
        "BASTION_SMTP_HOST": "127.0.0.1", "BASTION_SMTP_PORT": str(mailbox.port),
        "BASTION_CACHE_TTL": "0",  # the new connection counts at once
        **env,
    })
    server.cli("demo")
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        token = http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
            "audience": f"{server.issuer}/api/v2/",
        }).json()["access_token"]
        created = http.post("/api/v2/connections", headers={"Authorization": f"Bearer {token}"},
                            json={"name": "email", "strategy": "email", "enabled_clients": [DEMO_CLIENT_ID]})
        assert created.status_code == 201, created.text
    return server


@pytest.fixture
def server(live_server, sqlite_url, mailbox):
    return start_server(live_server, sqlite_url, mailbox)


def open_code_page(page: Page, server) -> None:
    page.goto(server.url("/demo"))
    page.click("#login")
    page.wait_for_url(re.compile(r"/u/login\?state="))
    expect(page.locator("#passwordless-email")).to_have_text("Email me a code")
    expect(page.locator("#passwordless-sms")).to_have_count(0)
    page.click("#passwordless-email")
    page.wait_for_url(re.compile(r"/u/passwordless\?state=.*connection=email"))
    expect(page.locator(".app")).to_have_text("Bastion Demo App")


def ask_for_code(page: Page, email: str = EMAIL) -> None:
    page.fill("#email", email)
    page.click("#send-code")
    expect(page.locator("#code")).to_be_visible()
    expect(page.locator("#recipient")).to_have_text(email)


def expect_logged_in(page: Page, email: str = EMAIL) -> None:
    page.wait_for_url(re.compile(r"/demo/callback\?"))
    expect(page.locator("#claims")).to_contain_text(email)
    expect(page.locator("#error")).to_have_count(0)


def test_email_code_login_then_the_session_logs_in_again(page: Page, server, mailbox: Mailbox):
    open_code_page(page, server)
    ask_for_code(page)
    code = code_in(mailbox.wait_for(1))
    page.fill("#code", code)
    page.click("#verify")
    expect_logged_in(page)
    # The SSO session works like a password login's.
    page.goto(server.url("/demo?login=1"))
    expect_logged_in(page)


def test_wrong_code_shows_an_error_then_the_right_one_logs_in(page: Page, server, mailbox: Mailbox):
    open_code_page(page, server)
    ask_for_code(page)
    code = code_in(mailbox.wait_for(1))
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("#verify")
    expect(page.locator("#error")).to_contain_text("not right")
    assert "/u/passwordless/verify" in page.url
    page.fill("#code", code)
    page.click("#verify")
    expect_logged_in(page)


def test_a_code_works_once(page: Page, server, mailbox: Mailbox):
    open_code_page(page, server)
    ask_for_code(page)
    form = {name: page.locator(f"form:has(#code) input[name={name}]").get_attribute("value")
            for name in ("state", "csrf_token", "connection", "recipient")}
    code = code_in(mailbox.wait_for(1))
    page.fill("#code", code)
    page.click("#verify")
    expect_logged_in(page)
    # The same form posted again, from the same browser: the login is over and the code spent.
    again = page.request.post(server.url("/u/passwordless/verify"), form={**form, "code": code}, max_redirects=0)
    assert again.status == 400 and "Login expired" in again.text()


def test_magic_link_logs_in_once_in_the_same_browser(page: Page, browser: Browser, server, mailbox: Mailbox):
    open_code_page(page, server)
    page.fill("#email", EMAIL)
    page.click("#send-link")
    expect(page.locator("h1")).to_have_text("Check your email")
    link = link_in(mailbox.wait_for(1))
    assert "/u/passwordless/link?" in link

    # Another browser cannot use the link (and does not spend it).
    other = browser.new_context()
    try:
        elsewhere = other.new_page()
        elsewhere.goto(link)
        expect(elsewhere.locator("h1")).to_have_text("Link not usable here")
    finally:
        other.close()

    page.goto(link)
    expect_logged_in(page)
    page.goto(link)
    expect(page.locator("h1")).to_have_text("Link not usable here")
    expect(page.locator("#claims")).to_have_count(0)


def test_an_expired_code_asks_for_a_new_one(page: Page, live_server, sqlite_url, mailbox: Mailbox):
    server = start_server(live_server, sqlite_url, mailbox, BASTION_PASSWORDLESS_CODE_LIFETIME="0")
    open_code_page(page, server)
    ask_for_code(page)
    page.fill("#code", code_in(mailbox.wait_for(1)))
    page.click("#verify")
    expect(page.locator("#error")).to_contain_text("expired")
    expect(page.locator("#code")).to_have_count(0)
    expect(page.locator("#resend")).to_be_visible()
    page.click("#resend")
    expect(page.locator("#code")).to_be_visible()
    code_in(mailbox.wait_for(2))
