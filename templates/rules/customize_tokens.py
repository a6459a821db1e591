"""Customize tokens: custom claims in the ID and access tokens, and new access-token scopes.

What it does
    Adds the user's plan (``app_metadata["plan"]``, ``"free"`` when unset) as the
    namespaced claim ``<CLAIMS_NAMESPACE>plan`` to both the ID token and the access
    token, and, when ``CUSTOMIZE_TOKENS_SCOPES`` is configured, replaces the access
    token's granted scopes with that list (the ID token and its standard claims keep
    following the scopes the application asked for).

Replaces the Auth0 use case
    "Change the returned scopes of the Access Token and/or add claims to it (and the
    ID Token)" - Auth0 docs: flows/guides/auth-code/includes/sample-use-cases-call-api
    (#customize-tokens), which sets ``context.accessToken['http://foo/bar']``,
    ``context.idToken['http://fiz/baz']`` and ``context.accessToken.scope``.

Configuration (api.configuration)
    CLAIMS_NAMESPACE           required. A URL you control, e.g. ``https://example.com/``;
                               every claim name starts with it (a missing trailing
                               ``/`` is added).
    CUSTOMIZE_TOKENS_SCOPES    optional. Space- or comma-separated scopes that replace
                               the access token's scopes, e.g. ``openid read:things``.
                               Unset: the granted scopes are kept.
    CUSTOMIZE_TOKENS_AUDIENCE  optional. Replace the scopes only for access tokens of
                               this API identifier (exact match). Unset: every
                               audience.

Adapt
    Put your own claims in ``rule`` (values must be JSON: strings, numbers, lists,
    dicts). Reserved claims (iss, sub, aud, exp, jti, scope as a claim, ...) are ignored
    by Bastion and logged as warnings on the execution. Scopes you inject should be
    registered on the API, or refresh-token exchanges may refuse them later. Do not
    derive scopes from an unverified email address.
"""


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def rule(user, context, api):
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"

    plan = user.app_metadata.get("plan")
    if not isinstance(plan, str) or not plan:
        plan = "free"
    context.id_token[namespace + "plan"] = plan
    context.access_token[namespace + "plan"] = plan

    scopes = _split(api.configuration.get("CUSTOMIZE_TOKENS_SCOPES", ""))
    audience = api.configuration.get("CUSTOMIZE_TOKENS_AUDIENCE", "").strip()
    if scopes and (not audience or context.audience == audience):
        context.access_token["scope"] = scopes
