"""Auth0's Authorization Extension rule: groups, roles and permissions in the tokens, and
application access by role.

What it does
    Bastion gives every rule the user's groups, roles and permissions as ``user.groups``,
    ``user.roles`` and ``user.permissions`` (names, sorted): the groups the user was added to,
    those mapped from the upstream groups of the login's connection, and the groups those are
    nested in; the user's roles and those of all these groups; the permissions of all these
    roles and the user's own (docs/access-control.md, "Groups"). This rule, in order:

    1. denies end users a token for the extension's own API (audience ``urn:auth0-authz-api``
       by default), with ``no_end_users``, as the extension's rule does;
    2. denies the application to users without one of the roles its
       ``client_metadata["required_roles"]`` lists (comma-separated, exact names), with "You
       do not have the required role to access <application name>"; an application without
       ``required_roles`` is open to everyone;
    3. adds ``<AUTHZ_NAMESPACE>groups``, ``roles`` and ``permissions`` (those of
       ``AUTHZ_CLAIMS``) to the ID token and the access token (those of ``AUTHZ_TOKENS``),
       when ``AUTHZ_NAMESPACE`` is set;
    4. with ``AUTHZ_PERSIST`` set to ``true``, stores them as
       ``app_metadata["authorization"] = {"groups", "roles", "permissions"}``, written only when
       they changed since the last login.

Replaces the Auth0 use case
    The rule the Authorization Extension generates (``auth0-authorization-extension``; Auth0
    docs: extensions/authorization-extension/v2/rules and .../configure-authorization-extension:
    "Token Contents" and "Persistence"), which calls the extension's policy endpoint and sets
    ``user.groups/roles/permissions``, plus the customer rules Auth0 documents after it: the
    namespaced claims, and "Control application access" with ``required_roles``. Bastion
    computes the policy itself, in the login's own transaction: there is no extension URL,
    API key or HTTP call.

Configuration (api.configuration)
    AUTHZ_NAMESPACE     optional. A URL you control (``https://example.com/``; a missing
                        trailing ``/`` is added). Unset: no claims are added.
    AUTHZ_CLAIMS        optional. Which of ``groups roles permissions`` become claims
                        (comma- or space-separated). Unset: all three.
    AUTHZ_TOKENS        optional. ``id_token``, ``access_token`` or both (the default).
    AUTHZ_PERSIST       optional. ``true`` stores them in ``app_metadata.authorization``.
    AUTHZ_API_AUDIENCE  optional. The audience no end user may get a token for.
                        Unset: ``urn:auth0-authz-api``.

Adapt
    Put this rule first, so later rules see the same values (and the denials run before any
    other work). Roles and permissions in tokens are a snapshot: a change takes effect at the
    next login or token refresh. ``required_roles`` lives in the application's metadata
    (``PATCH /api/v2/clients/{id}`` ``{"client_metadata": {"required_roles": "Admin, Editor"}}``),
    which only administrators can change. ``permissions`` without a namespace is a reserved
    claim: Bastion's own ``permissions`` claim comes from an API's RBAC settings instead.
"""

KINDS = ("groups", "roles", "permissions")
TOKENS = ("id_token", "access_token")
DEFAULT_AUDIENCE = "urn:auth0-authz-api"


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _names(value):
    """A list of names, each once, in order; anything else is an empty list."""
    if not isinstance(value, list):
        return []
    names = []
    for name in value:
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def _requested_audience(context):
    if context.audience:
        return context.audience
    return context.request.query.get("audience") or context.request.body.get("audience") or ""


def _chosen(api, key, allowed, default):
    chosen = _split(api.configuration.get(key, "")) or list(default)
    unknown = [item for item in chosen if item not in allowed]
    if unknown:
        raise ValueError(f"{key} may name only {', '.join(allowed)}, not {', '.join(unknown)}")
    return chosen


async def rule(user, context, api):
    audience = api.configuration.get("AUTHZ_API_AUDIENCE", "").strip() or DEFAULT_AUDIENCE
    if _requested_audience(context) == audience:
        raise UnauthorizedError("no_end_users")

    held = {"groups": _names(user.groups), "roles": _names(user.roles), "permissions": _names(user.permissions)}

    required = _split(str(context.client_metadata.get("required_roles") or ""))
    if required and not set(required) & set(held["roles"]):
        raise UnauthorizedError("You do not have the required role to access " + str(context.client_name))

    namespace = api.configuration.get("AUTHZ_NAMESPACE", "").strip()
    kinds = _chosen(api, "AUTHZ_CLAIMS", KINDS, KINDS)
    tokens = _chosen(api, "AUTHZ_TOKENS", TOKENS, TOKENS)
    if api.configuration.get("AUTHZ_CLAIMS", "").strip() and not namespace:
        raise ValueError("AUTHZ_CLAIMS is set but AUTHZ_NAMESPACE is not")
    if namespace:
        namespace = namespace.rstrip("/") + "/"
        for token in tokens:
            claims = context.id_token if token == "id_token" else context.access_token
            for kind in kinds:
                claims[namespace + kind] = held[kind]

    if api.configuration.get("AUTHZ_PERSIST", "").strip().lower() == "true":
        if user.app_metadata.get("authorization") != held:
            await api.users.update_app_metadata(user.user_id, {"authorization": held})
