"""Delegated Administration: tell the dashboard which of its roles the user has.

What it does
    Only for the Delegated Administration application (``DELEGATED_ADMIN_CLIENT_ID``): collects
    the user's Delegated Administration roles, "Delegated Admin - Administrator", "Delegated
    Admin - User", "Delegated Admin - Operator" and "Delegated Admin - Auditor" (exact names),
    from ``user.roles`` (the roles Bastion gives the user directly or through their groups) and
    from ``app_metadata["roles"]``, and sets the object claim
    ``<DELEGATED_ADMIN_NAMESPACE>auth0-delegated-admin`` = ``{"roles": [...]}`` in the ID
    token, which the dashboard reads. A user with none of them is denied: "You do not have
    permission to access this application." Other applications are not affected.

Replaces the Auth0 use case
    Delegated Administration extension, "Set user roles" (Auth0 docs:
    extensions/delegated-admin/v3/index, .../manage-users-using-delegated-admin): the rule sets
    ``context.idToken['<extension URL>/auth0-delegated-admin'] = {roles: [...]}`` for the
    extension's client, from roles kept in ``app_metadata`` or given by the Authorization
    Extension, and denies users who have none.

Configuration (api.configuration)
    DELEGATED_ADMIN_CLIENT_ID  required. The client_id of the Delegated Administration application.
    DELEGATED_ADMIN_NAMESPACE  required. The namespace the dashboard expects, usually its own URL
                               (e.g. ``https://admin.example.com/``; a missing trailing ``/`` is
                               added).

Adapt
    Give the roles with Bastion's roles or groups (a "Delegated Admins" group holding the role
    "Delegated Admin - Administrator"), or in ``app_metadata.roles``, never in
    ``user_metadata``, which users can edit. Administrators can manage every user, Users only
    those the dashboard's filter hook allows, Operators can also block and reset, Auditors
    only read logs: the dashboard enforces what each role may do; this rule only says which
    roles the user has.
"""

ROLES = (
    "Delegated Admin - Administrator",
    "Delegated Admin - User",
    "Delegated Admin - Operator",
    "Delegated Admin - Auditor",
)


def _delegated_admin_roles(user):
    found = []
    for source in (user.roles, user.app_metadata.get("roles")):
        if isinstance(source, list):
            for role in source:
                if role in ROLES and role not in found:
                    found.append(role)
    return sorted(found, key=ROLES.index)


def rule(user, context, api):
    client_id = api.configuration.get("DELEGATED_ADMIN_CLIENT_ID", "").strip()
    namespace = api.configuration.get("DELEGATED_ADMIN_NAMESPACE", "").strip()
    if not client_id or not namespace:
        raise ValueError("DELEGATED_ADMIN_CLIENT_ID and DELEGATED_ADMIN_NAMESPACE are required")
    if context.client_id != client_id:
        return

    roles = _delegated_admin_roles(user)
    if not roles:
        raise UnauthorizedError("You do not have permission to access this application.")
    context.id_token[namespace.rstrip("/") + "/auth0-delegated-admin"] = {"roles": roles}
