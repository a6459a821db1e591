"""Step-up authentication for an API: a high-value scope needs a second factor.

What it does
    When a login asks for an access token for the configured API
    (``STEP_UP_API_AUDIENCE``) with one of the configured high-value scopes
    (``STEP_UP_API_SCOPES``, e.g. ``transfer:funds``), and the user has not passed a
    second factor in this session yet (no ``mfa`` among
    ``context.authentication.methods``), the rule asks for one, never letting a
    remembered browser skip it (``allow_remember_browser: False``). The access token
    then carries the scope only after the user passed MFA; a login that does not ask
    for the scope is not challenged. The requested scopes are read from
    ``context.request.query["scope"]`` (authorization code flow) or
    ``context.request.body["scope"]`` (password grant: Bastion answers ``403
    mfa_required`` with an ``mfa_token`` for Auth0's MFA API).

Replaces the Auth0 use case
    "Require users to authenticate with MFA whenever a specific scope is requested" -
    Auth0 docs: multifactor-authentication/step-up-authentication/step-up-for-apis
    (#sample-scenario), which for listed ``context.clientID`` values sets
    ``context.multifactor = {provider: 'any', allowRememberBrowser: false}`` when
    ``context.request.query.scope`` includes ``transfer:funds``.

Configuration (api.configuration)
    STEP_UP_API_AUDIENCE    required. The API's identifier (its ``audience``), exactly.
    STEP_UP_API_SCOPES      required. Comma- or space-separated scopes that need the
                            second factor, e.g. ``transfer:funds``.
    STEP_UP_API_CLIENT_IDS  optional. Comma- or space-separated client_ids the rule
                            applies to (exact match). Unset: every application.

Adapt
    The API must still check the scope in each access token it receives, and should
    treat such tokens as short-lived and single-use (give the API a short token
    lifetime). Keep ``allow_offline_access`` off on that API (Auth0's and Bastion's
    default): a refresh token issued after the step-up would otherwise renew the
    scope without a new second factor, since a rule on the refresh-token grant cannot
    see which scopes the refresh token carries (only a refresh request that names the
    scope in its ``scope`` parameter is seen, and stopped with ``interaction_required``). Order this
    rule after every rule that changes the access token's scopes, so the scope
    cannot be added after the check. Within one SSO session the second factor is asked
    once: to ask at every step-up, drop the ``methods`` test below (and expect the
    user to be asked again on each authorization request that names the scope).
"""


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def rule(user, context, api):
    audience = api.configuration.get("STEP_UP_API_AUDIENCE", "").strip()
    protected = set(_split(api.configuration.get("STEP_UP_API_SCOPES", "")))
    if not audience or not protected:
        raise ValueError("set STEP_UP_API_AUDIENCE and STEP_UP_API_SCOPES")

    client_ids = _split(api.configuration.get("STEP_UP_API_CLIENT_IDS", ""))
    if client_ids and context.client_id not in client_ids:
        return
    requested_audience = context.audience or context.request.body.get("audience") or context.request.query.get("audience")
    if requested_audience != audience:
        return

    requested = set((context.request.body.get("scope") or context.request.query.get("scope") or "").split())
    if not requested & protected:
        return

    # A refresh request that names the scope cannot show a page: asking stops it.
    methods = [method.get("name") for method in context.authentication.methods or []]
    if "mfa" not in methods or context.protocol == "oauth2-refresh-token":
        context.multifactor = {"provider": "any", "allow_remember_browser": False}
