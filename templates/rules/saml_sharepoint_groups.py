"""SharePoint over SAML: the standard claims, and the user's groups as role claims.

What it does
    On SAML logins to the SharePoint application (matched by its ``client_id`` or its
    name, exactly), replaces ``context.saml_configuration["mappings"]`` with the claims a
    SharePoint trusted identity provider expects:

    - ``http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier``: user_id (or upn)
    - ``http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress``: email
    - ``http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name``: name
    - ``http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn``: upn
    - ``http://schemas.microsoft.com/ws/2008/06/identity/claims/role``: groups

    The role claim has one value per group: ``user.groups`` when the connection
    provided it (an enterprise directory), else ``app_metadata["groups"]``; a user
    without groups gets no role claim. The NameID is the nameidentifier claim. Without a
    ``upn`` the UPN claim carries the email (Bastion's ``createUpnClaim``). Other
    applications, and non-SAML logins, are left alone.

Replaces the Auth0 use case
    "SharePoint: groups -> role claim" - Auth0 docs:
    customize/integrations/sharepoint-2010-2013 (the rule replacing
    ``context.samlConfiguration.mappings`` for the SharePoint client so that SharePoint
    can authorize on role claims).

Configuration (api.configuration)
    SHAREPOINT_CLIENT_ID          the SharePoint application's client_id (preferred:
                                  names are not unique).
    SHAREPOINT_CLIENT_NAME        or its name, exactly as registered. At least one of the
                                  two is required; either one matching makes the rule apply.
    SHAREPOINT_NAME_IDENTIFIER    optional. ``user_id`` (default) or ``upn``: what the
                                  nameidentifier claim (and the NameID) carries. With
                                  ``upn``, a user without one is identified by email.
                                  SharePoint keys its users on this claim: choose once.

Adapt
    Groups decide what users may do in SharePoint: keep them in ``app_metadata`` (which
    users cannot edit) or let your directory connection provide them, never
    ``user_metadata``. The claim names must match the trusted identity provider's
    claim mappings in SharePoint (``New-SPClaimTypeMapping``).
"""

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
NAME_IDENTIFIER = CLAIMS + "/nameidentifier"
ROLE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


def _is_saml_login(context):
    return context.protocol == "samlp" or (
        context.protocol == "redirect-callback" and context.original_protocol == "samlp"
    )


def _is_sharepoint(context, api):
    client_id = api.configuration.get("SHAREPOINT_CLIENT_ID", "").strip()
    client_name = api.configuration.get("SHAREPOINT_CLIENT_NAME", "").strip()
    if not client_id and not client_name:
        raise ValueError("set SHAREPOINT_CLIENT_ID or SHAREPOINT_CLIENT_NAME")
    return (client_id and context.client_id == client_id) or (client_name and context.client_name == client_name)


def _groups(user):
    groups = user.groups
    if groups is None:
        groups = user.app_metadata.get("groups")
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        return []
    unique = []
    for group in groups:
        if isinstance(group, str) and group.strip() and group.strip() not in unique:
            unique.append(group.strip())
    return unique


def rule(user, context, api):
    if not _is_sharepoint(context, api) or not _is_saml_login(context):
        return

    identifier = api.configuration.get("SHAREPOINT_NAME_IDENTIFIER", "").strip() or "user_id"
    if identifier not in ("user_id", "upn"):
        raise ValueError("SHAREPOINT_NAME_IDENTIFIER must be user_id or upn")
    if identifier == "upn" and not user.upn:
        user.upn = user.email

    user.groups = _groups(user)  # a list: one role claim value per group
    context.saml_configuration["mappings"] = {
        NAME_IDENTIFIER: identifier,
        CLAIMS + "/emailaddress": "email",
        CLAIMS + "/name": "name",
        CLAIMS + "/upn": "upn",
        ROLE: "groups",
    }
    context.saml_configuration["name_identifier_probes"] = [NAME_IDENTIFIER]
