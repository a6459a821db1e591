"""Require multi-factor authentication for some applications, and for flagged users everywhere.

What it does
    Asks for a second factor (``context.multifactor = {"provider": "any", ...}``) when
    the login is for one of the listed applications (``MFA_CLIENT_IDS``), or when the
    user's ``app_metadata["use_mfa"]`` is exactly ``true`` (whatever the application).
    Other logins are left alone. A user without a second factor yet enrols one on the
    spot (an authenticator app: QR code, first code, recovery code); the login then
    completes with ``amr: ["mfa"]`` in the ID token.

    By default a browser is never remembered: every new login session asks again
    (Auth0's sample sets ``allowRememberBrowser: false``). Within one SSO session
    Bastion asks once: a later login of that session (another listed application,
    silent authentication) already has ``mfa`` among
    ``context.authentication.methods``, and Bastion counts that factor (Auth0's
    ``require-mfa-once-per-session`` template checks these methods for the same
    effect). On the password grant Bastion answers
    ``403 mfa_required`` with an ``mfa_token``, and the application continues with
    Auth0's MFA API (``/mfa/challenge``, the ``mfa-otp`` grant).

    The refresh-token grant is skipped: the refresh token was issued by a login that
    already passed this rule, and a rule asking for MFA there would stop every
    refresh (a token request cannot show a page).

Replaces the Auth0 use case
    "Define the conditions that trigger additional authentication challenges" -
    Auth0 docs: multifactor-authentication/custom (and
    mfa/guides/customize-mfa-universal-login), which sets ``context.multifactor =
    {provider: 'any', allowRememberBrowser: false}`` for listed ``context.clientID``
    values and for users with ``user_metadata.use_mfa``.

Configuration (api.configuration)
    MFA_CLIENT_IDS               optional. Comma- or space-separated client_ids that
                                 always require MFA (exact match). Unset: only
                                 flagged users are asked.
    MFA_ALLOW_REMEMBER_BROWSER   optional, ``false`` by default. ``true`` lets a
                                 browser that passed MFA skip it for 30 days.

Adapt
    The flag is read from ``app_metadata`` (set it with the Management API:
    ``PATCH /api/v2/users/{id}`` ``{"app_metadata": {"use_mfa": true}}``), not from
    ``user_metadata`` as in Auth0's sample: users can edit their ``user_metadata``
    and would switch MFA off themselves. When you add an application to the list or
    flag a user, revoke their existing refresh tokens if those must not outlive the
    change. Order this rule after the rules that can deny the login, so a login that
    is refused anyway does not ask for a second factor first.
"""


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def rule(user, context, api):
    if context.protocol == "oauth2-refresh-token":
        return

    listed_app = context.client_id in _split(api.configuration.get("MFA_CLIENT_IDS", ""))
    flagged_user = user.app_metadata.get("use_mfa") is True
    if not listed_app and not flagged_user:
        return

    remember = api.configuration.get("MFA_ALLOW_REMEMBER_BROWSER", "").strip().lower()
    if remember not in ("", "true", "false"):
        raise ValueError("MFA_ALLOW_REMEMBER_BROWSER must be true or false")
    context.multifactor = {"provider": "any", "allow_remember_browser": remember == "true"}
