"""Restrict one application to an allow-list of users (verified emails or roles).

What it does
    For the protected application (matched by its ``client_id`` or its name, exactly),
    the login is allowed only if the user holds one of the allowed roles in
    ``app_metadata["roles"]`` or has a **verified** email address that is on the
    allow-list (whole address, compared case-insensitively after trimming). Everyone
    else gets ``error=unauthorized``. Other applications are not affected.

Replaces the Auth0 use case
    "Restrict users from accessing an application" - Auth0 docs:
    api-auth/restrict-access-api (deny when ``context.clientID`` is a given client),
    combined with the allow-list pattern the Auth0 security bulletin 2019-01-10
    (security/bulletins/2019-01-10_rules) says to write with a verified email.

Configuration (api.configuration)
    RESTRICTED_APP_CLIENT_ID       the protected application's client_id (preferred:
                                   names are not unique).
    RESTRICTED_APP_CLIENT_NAME     or its name, exactly as registered. At least one of
                                   the two is required; either one matching makes the
                                   rule apply.
    RESTRICTED_APP_ALLOWED_EMAILS  optional. Comma- or space-separated email addresses.
    RESTRICTED_APP_ALLOWED_ROLES   optional. Comma- or space-separated roles (exact,
                                   case-sensitive). With neither list, nobody may use
                                   the application.

Adapt
    Never match on part of an address (``"@example.com" in email`` also matches
    ``user@example.com@evil.test``), and never trust an unverified email: the same
    address can be registered on another connection. Roles come from ``app_metadata``
    only. To allow a whole domain, compare the part after the last ``@`` exactly, and
    still require ``email_verified``.
"""


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _is_protected_app(context, api):
    client_id = api.configuration.get("RESTRICTED_APP_CLIENT_ID", "").strip()
    client_name = api.configuration.get("RESTRICTED_APP_CLIENT_NAME", "").strip()
    if not client_id and not client_name:
        raise ValueError("set RESTRICTED_APP_CLIENT_ID or RESTRICTED_APP_CLIENT_NAME")
    return (client_id and context.client_id == client_id) or (client_name and context.client_name == client_name)


def rule(user, context, api):
    if not _is_protected_app(context, api):
        return

    allowed_roles = set(_split(api.configuration.get("RESTRICTED_APP_ALLOWED_ROLES", "")))
    roles = user.app_metadata.get("roles")
    if isinstance(roles, list) and any(isinstance(role, str) and role in allowed_roles for role in roles):
        return

    allowed_emails = {email.lower() for email in _split(api.configuration.get("RESTRICTED_APP_ALLOWED_EMAILS", ""))}
    email = user.email.strip().lower() if isinstance(user.email, str) else ""
    if email and user.email_verified is True and email in allowed_emails:
        return

    raise UnauthorizedError("You are not allowed to use this application.")
