"""Validate the access token's scopes against the user's permissions.

What it does
    For the configured applications (all of them when none is configured), the access
    token's scopes become: the standard OpenID Connect scopes the application requested
    (``openid profile email address phone offline_access``, exact names), followed by the
    user's permissions from ``app_metadata["permissions"]``. API scopes that were
    requested but that the user does not hold are removed. The requested scopes are
    read from ``context.request.body["scope"]`` (password and refresh-token grants)
    or ``context.request.query["scope"]`` (authorization code flow).

Replaces the Auth0 use case
    "Validate token scopes" - Auth0 docs: architecture-scenarios/mobile-api/part-2
    (#create-a-rule-to-validate-token-scopes), which for ``context.clientName ===
    'Timesheets SPA'`` keeps the requested scopes without ``:`` and appends
    ``user.permissions``.

Configuration (api.configuration)
    VALIDATE_SCOPES_CLIENT_IDS  optional. Comma- or space-separated client_ids the rule
                                applies to (exact match). Unset: every application.

Adapt
    As in Auth0's sample, the user's permissions are granted whether or not the
    application asked for them. To grant only the permissions the application
    requested, replace ``permissions`` in the last line by
    ``[p for p in permissions if p in requested]``. Permissions are read from
    ``app_metadata`` (administrator-controlled); they should be scopes registered on
    the API. Auth0's sample kept every requested scope without ``:``; this one keeps
    only the standard OIDC scope names, so a custom API scope such as ``admin``
    cannot slip through. The ID token's standard claims still follow the requested
    OIDC scopes.
    On a refresh-token request without a ``scope`` parameter the rule cannot see
    which OIDC scopes were originally requested, so the refreshed access token carries
    the user's permissions only (send ``scope`` when refreshing to keep ``openid``).
"""

OIDC_SCOPES = ("openid", "profile", "email", "address", "phone", "offline_access")


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def rule(user, context, api):
    client_ids = _split(api.configuration.get("VALIDATE_SCOPES_CLIENT_IDS", ""))
    if client_ids and context.client_id not in client_ids:
        return

    requested = (context.request.body.get("scope") or context.request.query.get("scope") or "").split()
    oidc = [scope for scope in requested if scope in OIDC_SCOPES]

    held = user.app_metadata.get("permissions")
    permissions = [p for p in held if isinstance(p, str) and p] if isinstance(held, list) else []

    context.access_token["scope"] = list(dict.fromkeys(oidc + permissions))
