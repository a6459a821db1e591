"""Put the user's roles into both tokens as a namespaced claim.

What it does
    Collects the roles from ``app_metadata["roles"]`` and from
    ``context.authorization.roles`` (roles assigned through Bastion's authorization
    core, when available), keeps each role once in first-seen order, and sets the list
    as ``<CLAIMS_NAMESPACE>roles`` in the ID token and the access token. A user without
    roles gets an empty list, so applications can rely on the claim being present.

Replaces the Auth0 use case
    "Sample Use Cases: Rules with Authorization" - add user roles to tokens. Auth0
    docs: authorization/concepts/sample-use-cases-rules, which copies
    ``context.authorization.roles`` into ``context.idToken[namespace + 'roles']`` and
    ``context.accessToken[namespace + 'roles']``; also "Update user permissions"
    (users/references/user-data-storage-scenario), rule B, which exposes
    ``app_metadata.roles``.

Configuration (api.configuration)
    CLAIMS_NAMESPACE  required. A URL you control, e.g. ``https://example.com/`` (a
                      missing trailing ``/`` is added). ``roles`` without a namespace
                      is a reserved claim name and would be dropped.

Adapt
    Roles come from ``app_metadata`` only, never ``user_metadata`` (users can edit
    that). Roles in tokens are a snapshot: a change takes effect at the next login or
    token refresh. APIs should check scopes or this claim, not the user's email.
"""


def rule(user, context, api):
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"

    roles = []
    for source in (user.app_metadata.get("roles"), context.authorization.roles):
        if isinstance(source, list):
            for role in source:
                if isinstance(role, str) and role and role not in roles:
                    roles.append(role)

    context.id_token[namespace + "roles"] = roles
    context.access_token[namespace + "roles"] = roles
