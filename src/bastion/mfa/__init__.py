"""Second factors: what a rule's `context.multifactor` asks for.

    factors.py   enrolled authenticators: TOTP (with a recovery code), replay-safe checks
    remember.py  the 30-day remember-browser cookie, bound to user and browser
    pages.py     /u/mfa: enrol, challenge, pick a factor (browser logins)
    webauthn.py  security keys and passkeys (WebAuthn)
    duo.py       Duo's Universal Prompt (OIDC-like redirect to Duo)
    tokens.py    the password grant's `mfa_token`
    api.py       Auth0's MFA API: /mfa/associate, /mfa/authenticators, /mfa/challenge
"""
