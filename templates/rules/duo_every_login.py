"""Duo on every login.

What it does
    Every interactive login (authorization code flow, silent authentication included)
    must pass Duo's Universal Prompt: the browser goes to Duo after the password, and the
    login completes only when Duo answers "allow" for this user. By default no browser is
    remembered (Auth0's ``ignoreCookie: true``): every login asks. Back-channel grants
    cannot show Duo's page: the password grant answers ``interaction_required`` and the
    refresh-token grant is skipped (it renews a login that already passed Duo).

Replaces the Auth0 use case
    "Multifactor authentication: Duo Security on every login" (Rules Use Cases; Auth0
    template ``duo-multifactor``, which sets ``context.multifactor = {provider: 'duo',
    ikey, skey, host}``).

Configuration (api.configuration)
    DUO_IKEY                     required: the Duo application's client ID (integration key).
    DUO_SKEY                     required: its client secret (secret key).
    DUO_HOST                     required: its API hostname, ``api-XXXXXXXX.duosecurity.com``.
    DUO_USERNAME_FIELD           optional: ``email`` (default) or ``username``: which user
                                 attribute is the Duo username.
    DUO_ALLOW_REMEMBER_BROWSER   optional, ``true`` to let Duo be skipped for 30 days in a
                                 browser that passed it (Auth0's default for Duo).

Adapt
    Create a "Web SDK" application in Duo's Admin Panel and enrol your users there with
    the same usernames. The secret key is a rules configuration value: it never appears in
    the rule's source, logs or execution records.
"""


def rule(user, context, api):
    if context.protocol == "oauth2-refresh-token":
        return
    field = api.configuration.get("DUO_USERNAME_FIELD", "email").strip() or "email"
    username = user.get(field) or user.get("email") or user.user_id
    context.multifactor = {
        "provider": "duo",
        "ikey": api.configuration["DUO_IKEY"],
        "skey": api.configuration["DUO_SKEY"],
        "host": api.configuration["DUO_HOST"],
        "username": username,
        "allow_remember_browser": api.configuration.get("DUO_ALLOW_REMEMBER_BROWSER", "").strip().lower() == "true",
    }
