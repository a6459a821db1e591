"""Restrict access to one API to users holding one of the allowed roles.

What it does
    When the login asks for an access token for the protected API (its ``audience``,
    taken from ``context.audience``, else the ``audience`` parameter of the
    authorization request (``context.request.query``) or of the token request
    (``context.request.body``)), the login is denied unless ``app_metadata["roles"]``
    holds one of the allowed roles. Logins for other APIs, or without an audience, are
    not affected. The application receives ``error=unauthorized`` (a 401 JSON error on
    the password and refresh-token grants).

Replaces the Auth0 use case
    "Restrict users from calling an API" - Auth0 docs: api-auth/restrict-access-api,
    which denies ``UnauthorizedError('end_users_not_allowed')`` when
    ``context.request.query.audience`` / ``context.request.body.audience`` is the
    protected API.

Configuration (api.configuration)
    RESTRICTED_API_AUDIENCE  required. The API identifier to protect, compared exactly
                             (e.g. ``https://api.example.com``).
    RESTRICTED_API_ROLES     required. Space- or comma-separated roles that may call it
                             (exact, case-sensitive match), e.g. ``api-user, admin``.

Adapt
    Roles are read from ``app_metadata`` (set by your administrators or the Management
    API), never from ``user_metadata``, which users can edit. Rules do not run for the
    client-credentials grant: machine-to-machine clients are governed by client grants.
    Auth0's sample also denied an empty audience because its tenants could have a
    default audience; Bastion has none, so a login without ``audience`` gets no token
    for the API and is let through.
"""


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _requested_audience(context):
    if context.audience:
        return context.audience
    return context.request.query.get("audience") or context.request.body.get("audience") or ""


def rule(user, context, api):
    protected = api.configuration["RESTRICTED_API_AUDIENCE"].strip()
    allowed_roles = set(_split(api.configuration["RESTRICTED_API_ROLES"]))
    if not protected or not allowed_roles:
        raise ValueError("RESTRICTED_API_AUDIENCE and RESTRICTED_API_ROLES must not be empty")

    if _requested_audience(context) != protected:
        return

    roles = user.app_metadata.get("roles")
    if isinstance(roles, list) and any(isinstance(role, str) and role in allowed_roles for role in roles):
        return
    raise UnauthorizedError("You are not allowed to access this API.")
