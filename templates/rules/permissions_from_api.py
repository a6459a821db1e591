"""Load the user's roles from your permissions service, save them and put them in the tokens.

What it does
    Calls your permissions service (``GET PERMISSIONS_API_URL``) with an
    ``Authorization: Bearer <JWT>`` header; the JWT is HS256-signed with
    ``PERMISSIONS_API_SECRET``, names the user (``sub`` = user_id, ``email`` only when
    verified), the service (``aud`` = the URL), the application (``client_id``) and this
    server (``iss`` = the tenant's host name) and expires after 60 seconds. The service answers ``{"roles": ["...", ...]}``. The
    roles are saved in ``app_metadata["roles"]`` with ``api.users.update_app_metadata``
    (only when they changed) and set as ``<CLAIMS_NAMESPACE>roles`` in the ID token and
    the access token. If the service fails (network error, non-2xx status, an answer
    without a list of strings) the login fails closed with a generic error, and the
    reason goes to the rule's execution log.

Replaces the Auth0 use case
    "Update user permissions" - Auth0 docs: users/references/user-data-storage-scenario
    (#user-data-permission-rules), whose rule signs a JWT with
    ``configuration.AUTH0_CLIENT_SECRET``, calls the application's API and stores the
    resulting role in ``app_metadata.roles``, and whose second rule exposes those
    roles.

Configuration (api.configuration)
    PERMISSIONS_API_URL     required. The service's URL, e.g.
                            ``https://permissions.example.com/v1/roles``. Bastion's
                            outbound HTTP rules apply (allowed hosts, no private
                            addresses unless the operator allowed them).
    PERMISSIONS_API_SECRET  required. The shared HS256 secret the service verifies the
                            JWT with (at least 32 random characters). Never put it in
                            the rule's code.
    CLAIMS_NAMESPACE        required. A URL you control, e.g. ``https://example.com/``.

Adapt
    Map your service's answer in ``_roles_from``. The service must verify the JWT's
    signature, ``exp``, ``aud`` and ``iss`` before answering. Rules run on every login and token
    refresh: if the service is slow, cache the answer per user with ``api.cache``
    (a per-worker cache that may be empty at any time) for a short while. To keep
    users logging in while the service is down, fall back to the saved
    ``app_metadata["roles"]`` instead of raising, knowing it may be stale.
"""

ROLES_CLAIM = "roles"


def _roles_from(body):
    roles = body.get("roles") if isinstance(body, dict) else None
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise ValueError("the permissions service did not answer {\"roles\": [strings]}")
    return list(dict.fromkeys(roles))


async def rule(user, context, api):
    url = api.configuration["PERMISSIONS_API_URL"]
    secret = api.configuration["PERMISSIONS_API_SECRET"]
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"

    payload = {"sub": user.user_id, "aud": url, "client_id": context.client_id, "iss": context.tenant}
    if user.email and user.email_verified is True:
        payload["email"] = user.email
    token = api.jwt.sign(payload, secret, expires_in=60)

    response = await api.http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if not response.ok:
        raise RuntimeError(f"the permissions service answered HTTP {response.status_code}")
    roles = _roles_from(response.json())

    if user.app_metadata.get("roles") != roles:
        await api.users.update_app_metadata(user.user_id, {"roles": roles})

    context.id_token[namespace + ROLES_CLAIM] = roles
    context.access_token[namespace + ROLES_CLAIM] = roles
