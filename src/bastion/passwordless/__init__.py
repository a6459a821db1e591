"""Passwordless login: a one-time code (email or SMS) or a magic link (email).

    channels.py        the `email` and `sms` connections, and their recipients (address, E.164 number)
    codes.py           issue, verify and rate-limit codes (table one_time_codes, purpose `passwordless`)
    senders.py         delivery: SMTP (mail.py) and a Twilio-compatible SMS provider
    accounts.py        the connection's user for a recipient, created on first login
    login.py           the two steps every edge shares: send a code or link; redeem it for a user
    routes.py          POST /passwordless/start, GET /passwordless/verify_redirect
    pages.py           /u/passwordless, /u/passwordless/verify, /u/passwordless/link (universal login)
    grant.py           /oauth/token grant http://auth0.com/oauth/grant-type/passwordless/otp

This module imports nothing, so `oidc/grants.py` can import `grant.py` without a cycle.
"""
