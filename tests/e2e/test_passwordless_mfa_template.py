"""templates/rules/mfa_passwordless_outside_network.py in a real browser: a passwordless email
login from outside the configured corporate network must pass a second factor (here an
authenticator app enrolled on the spot); from inside it goes straight through, and a password
login is never asked.

Chromium (Playwright) drives the demo application of `bastion serve`; codes arrive at a real
SMTP server (aiosmtpd); pyotp plays the authenticator app.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
from playwright.sync_api import Browser, expect

from bastion.demo import DEMO_EMAIL, DEMO_PASSWORD

from .test_passwordless_browser import (  # noqa: F401 (fixtures)
    EMAIL,
    TIMEOUT_MS,
    ask_for_code,
    browser,
    code_in,
    expect_logged_in,
    mailbox,
    open_code_page,
    page,
    start_server,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "rules" / "mfa_passwordless_outside_network.py"


def enrol_authenticator_app(page) -> None:
    page.wait_for_url(re.compile(r"/u/mfa\?state="))
    page.click("#enroll-otp")
    secret = page.locator("#otp-secret").inner_text()
    expect(page.locator("#qr-code")).to_be_visible()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    expect(page.locator("#recovery-code")).to_be_visible()
    page.click("#saved")


def test_passwordless_login_from_outside_the_network_needs_a_second_factor(live_server, sqlite_url, mailbox, browser: Browser):
    server = start_server(live_server, sqlite_url, mailbox)
    server.cli("rules", "add", str(TEMPLATE), "--order", "1")
    server.cli("rules", "config", "set", "CORPORATE_CIDRS", "10.0.0.0/8, 192.168.0.0/16")  # 127.0.0.1 is outside

    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    outside = context.new_page()
    open_code_page(outside, server)
    ask_for_code(outside)
    outside.fill("#code", code_in(mailbox.wait_for(1)))
    outside.click("#verify")
    enrol_authenticator_app(outside)
    expect_logged_in(outside)
    expect(outside.locator("#claims")).to_contain_text("amr")
    expect(outside.locator("#claims")).to_contain_text("mfa")
    context.close()
    # The account's owner is told that a second factor was added (the enrollment_email).
    assert "authenticator app" in mailbox.wait_for(2) and "second factor" in mailbox.wait_for(2)

    # A password login from the same place is not the rule's business.
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    by_password = context.new_page()
    by_password.goto(server.url("/demo"))
    by_password.click("#login")
    by_password.fill("#username", DEMO_EMAIL)
    by_password.fill("#password", DEMO_PASSWORD)
    by_password.click("button[type=submit]")
    expect_logged_in(by_password, DEMO_EMAIL)
    context.close()

    # From inside the network (127.0.0.0/8 added), the passwordless login goes straight through.
    server.cli("rules", "config", "set", "CORPORATE_CIDRS", "10.0.0.0/8, 127.0.0.0/8")
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    inside = context.new_page()
    open_code_page(inside, server)
    ask_for_code(inside, EMAIL)
    inside.fill("#code", code_in(mailbox.wait_for(3)))
    inside.click("#verify")
    expect_logged_in(inside)
    expect(inside.locator("#claims")).not_to_contain_text("amr")
    context.close()
