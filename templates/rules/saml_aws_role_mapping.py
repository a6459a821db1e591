"""AWS single sign-on over SAML: send the user's AWS roles, session name and session duration.

What it does
    On SAML logins to the AWS application only (its ``client_id``, exactly), the
    assertion carries what AWS's SAML federation reads:

    - ``https://aws.amazon.com/SAML/Attributes/Role``: one value per role the user may
      assume, each ``"<role ARN>,<SAML provider ARN>"`` (AWS accepts either order). The
      roles are the user's ``app_metadata["aws_roles"]`` (a list of such strings), plus
      the roles of the user's ``app_metadata["ad_groups"]`` whose name starts with
      ``AWS_GROUP_PREFIX`` and which ``AWS_GROUP_ROLES`` maps to roles. Duplicates are
      sent once; malformed entries in ``app_metadata`` are skipped (and printed to the
      execution record).
    - ``https://aws.amazon.com/SAML/Attributes/RoleSessionName``: the user's email,
      else name, else user_id (AWS allows 2 to 64 characters of ``[A-Za-z0-9_+=,.@-]``;
      others become ``-``).
    - ``https://aws.amazon.com/SAML/Attributes/SessionDuration``: ``AWS_SESSION_DURATION``
      seconds (3600 by default).
    - the NameID is the user_id, in the ``persistent`` format.

    The values are set on ``user`` (``user.awsRole``, ``user.awsRoleSession``,
    ``user.awsSessionDuration``, for this response only) and mapped with
    ``context.saml_configuration["mappings"]``; the application's other attributes stay.
    A user with no AWS role is denied (``UnauthorizedError``): the service provider
    receives a SAML error Response whose StatusMessage says "You have no AWS role...".
    Other applications, and non-SAML logins, are left alone.

Replaces the Auth0 use case
    "AWS: map a role for SAML SSO" - Auth0 docs:
    customize/integrations/aws/configure-amazon-web-services-for-sso (the rule that sets
    ``user.awsRole``, ``user.awsRoleSession``, ``user.time`` and
    ``context.samlConfiguration.mappings``, and its variant deriving several roles from
    ``app_metadata.ad_groups`` named ``aws_...``).

Configuration (api.configuration)
    AWS_SAML_CLIENT_ID     required. The client_id of the SAML application for AWS.
    AWS_SESSION_DURATION   optional. Seconds, 900 to 43200 (AWS's limits; the role's own
                           maximum applies too). Default 3600.
    AWS_GROUP_ROLES        optional. A JSON object: group name -> role string (or a list
                           of role strings), e.g. ``{"aws_admins":
                           "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/Bastion"}``.
    AWS_GROUP_PREFIX       optional. Only groups whose name starts with it are looked up
                           in AWS_GROUP_ROLES. Default ``aws_``.

Adapt
    Roles come from ``app_metadata`` (which users cannot edit), never from
    ``user_metadata``. Register the application's ACS URL
    (``https://signin.aws.amazon.com/saml``) as its callback and its audience as
    ``urn:amazon:webservices`` in the ``samlp`` addon. The SAML provider ARN must name
    the identity provider you created in IAM from Bastion's metadata
    (``/samlp/metadata/<client_id>``).
"""

import json
import re

ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_NAME_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
SESSION_DURATION_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
NAME_IDENTIFIER = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:saml-provider/[\w.-]+$")
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")


def _is_saml_login(context):
    return context.protocol == "samlp" or (
        context.protocol == "redirect-callback" and context.original_protocol == "samlp"
    )


def _valid_role(value):
    """A "role ARN,provider ARN" pair (either order), trimmed; None when malformed."""
    if not isinstance(value, str):
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2:
        return None
    roles = [p for p in parts if _ROLE_ARN.match(p)]
    providers = [p for p in parts if _PROVIDER_ARN.match(p)]
    if len(roles) != 1 or len(providers) != 1:
        return None
    return roles[0] + "," + providers[0]


def _group_roles(api):
    """AWS_GROUP_ROLES, checked: {group: [role, ...]}. A bad value stops the login (fail closed)."""
    raw = api.configuration.get("AWS_GROUP_ROLES", "").strip()
    if not raw:
        return {}
    mapping = json.loads(raw)
    if not isinstance(mapping, dict):
        raise ValueError("AWS_GROUP_ROLES must be a JSON object: group name -> role string(s)")
    checked = {}
    for group, roles in mapping.items():
        roles = roles if isinstance(roles, list) else [roles]
        valid = [_valid_role(role) for role in roles]
        if not valid or None in valid:
            raise ValueError(f"AWS_GROUP_ROLES[{group!r}]: each role must be 'roleArn,samlProviderArn'")
        checked[group] = valid
    return checked


def _session_duration(api):
    raw = api.configuration.get("AWS_SESSION_DURATION", "").strip() or "3600"
    duration = int(raw)
    if not 900 <= duration <= 43200:
        raise ValueError("AWS_SESSION_DURATION must be between 900 and 43200 seconds")
    return duration


def _session_name(user):
    for value in (user.email, user.name, user.user_id):
        if isinstance(value, str) and value.strip():
            name = _SESSION_NAME_UNSAFE.sub("-", value.strip())[:64]
            if len(name) >= 2:
                return name
    return None


def _user_roles(user, api):
    roles = []
    listed = user.app_metadata.get("aws_roles")
    for entry in listed if isinstance(listed, list) else []:
        role = _valid_role(entry)
        if role is None:
            print(f"skipped a malformed app_metadata.aws_roles entry: {entry!r}")
        else:
            roles.append(role)

    prefix = api.configuration.get("AWS_GROUP_PREFIX", "").strip() or "aws_"
    group_roles = _group_roles(api)
    groups = user.app_metadata.get("ad_groups")
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, str) and group.startswith(prefix):
            if group in group_roles:
                roles.extend(group_roles[group])
            else:
                print(f"group {group!r} has no role in AWS_GROUP_ROLES")

    unique = []
    for role in roles:
        if role not in unique:
            unique.append(role)
    return unique


async def rule(user, context, api):
    client_id = api.configuration.get("AWS_SAML_CLIENT_ID", "").strip()
    if not client_id:
        raise ValueError("set AWS_SAML_CLIENT_ID to the client_id of the AWS SAML application")
    if context.client_id != client_id or not _is_saml_login(context):
        return

    roles = _user_roles(user, api)
    if not roles:
        raise UnauthorizedError("You have no AWS role: ask your administrator for access to AWS.")
    session_name = _session_name(user)
    if session_name is None:
        raise UnauthorizedError("Your profile has no email or name to name your AWS session.")

    user.awsRole = roles  # a list: one Role attribute value per role
    user.awsRoleSession = session_name
    user.awsSessionDuration = str(_session_duration(api))

    saml = context.saml_configuration
    mappings = dict(saml.get("mappings") or {})
    mappings[ROLE_ATTRIBUTE] = "awsRole"
    mappings[SESSION_NAME_ATTRIBUTE] = "awsRoleSession"
    mappings[SESSION_DURATION_ATTRIBUTE] = "awsSessionDuration"
    mappings[NAME_IDENTIFIER] = "user_id"
    saml["mappings"] = mappings
    saml["name_identifier_format"] = PERSISTENT
    saml["name_identifier_probes"] = [NAME_IDENTIFIER]
