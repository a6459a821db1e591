"""Customize SAML responses: a longer assertion lifetime, the UPN as NameID, a user_metadata attribute.

What it does
    On SAML logins (to the listed applications, or to every SAML application), changes
    that one response, overriding the application's ``samlp`` addon settings:

    - the assertion is valid for ``SAML_LIFETIME_SECONDS`` (36000 s, ten hours, by
      default): ``context.saml_configuration["lifetime_in_seconds"]``;
    - when the user has a UPN (``user.upn``, set by an enterprise connection or an
      earlier rule, else ``app_metadata["upn"]``), the nameidentifier claim carries it
      instead of the user_id, and so does the NameID (the nameidentifier claim is the
      first of ``name_identifier_probes``); the UPN claim carries it too. Users without
      a UPN keep the application's NameID;
    - when ``SAML_METADATA_FIELD`` is set, the attribute ``SAML_METADATA_ATTRIBUTE`` is
      mapped to ``user_metadata.<SAML_METADATA_FIELD>`` (a dotted path may reach into
      nested objects). With ``SAML_METADATA_DEFAULT``, a user who has no value there gets
      that one, set by this rule on ``user.user_metadata`` and seen by the mapping in the
      same response; it is not saved (``api.users.update_user_metadata`` would save it).

    Non-SAML logins are left alone.

Replaces the Auth0 use case
    "Customize SAML responses" - Auth0 docs: protocols/saml/saml-configuration/
    saml-assertions (``context.samlConfiguration.lifetimeInSeconds = 36000``; "if the
    user has a UPN, map the NameID claim to it"; map a claim to a ``user_metadata``
    path, with a value the same rule set). Rule settings override the addon's.

Configuration (api.configuration)
    SAML_CUSTOMIZE_CLIENT_IDS  optional. Comma- or space-separated client_ids; unset:
                               every SAML application.
    SAML_LIFETIME_SECONDS      optional. Whole seconds, 1 to 604800 (7 days). Default 36000.
    SAML_METADATA_FIELD        optional. The ``user_metadata`` key (or dotted path) to
                               send, e.g. ``favorite_color`` or ``preferences.color``.
    SAML_METADATA_ATTRIBUTE    optional. The SAML attribute name it is sent as. Default
                               ``http://schemas.xmlsoap.org/ws/2005/05/identity/claims/``
                               followed by the field's last part.
    SAML_METADATA_DEFAULT      optional. The value sent for users who have none.

Adapt
    Users can change their own ``user_metadata``: send it for display, never as
    something the service provider authorizes on (use ``app_metadata`` for that, as the
    UPN here). A longer lifetime lets a stolen assertion be replayed longer at service
    providers that do not track assertion IDs: keep it as short as your users allow.
    NameIDs should not change for a user: switch to the UPN before users first sign in.
"""

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
NAME_IDENTIFIER = CLAIMS + "/nameidentifier"
MAX_LIFETIME = 7 * 86400


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _is_saml_login(context):
    return context.protocol == "samlp" or (
        context.protocol == "redirect-callback" and context.original_protocol == "samlp"
    )


def _lifetime(api):
    lifetime = int(api.configuration.get("SAML_LIFETIME_SECONDS", "").strip() or "36000")
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"SAML_LIFETIME_SECONDS must be between 1 and {MAX_LIFETIME}")
    return lifetime


def _upn(user):
    for value in (user.upn, user.app_metadata.get("upn")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _set_default(metadata, path, value):
    """Set `value` at the dotted `path` of `metadata` unless something is there already."""
    parts = path.split(".")
    node = metadata
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return
        node = child
    if node.get(parts[-1]) in (None, ""):
        node[parts[-1]] = value


def rule(user, context, api):
    if not _is_saml_login(context):
        return
    clients = _split(api.configuration.get("SAML_CUSTOMIZE_CLIENT_IDS", ""))
    if clients and context.client_id not in clients:
        return

    saml = context.saml_configuration
    saml["lifetime_in_seconds"] = _lifetime(api)
    mappings = dict(saml.get("mappings") or {})

    upn = _upn(user)
    if upn:
        user.upn = upn
        mappings[NAME_IDENTIFIER] = "upn"
        mappings[CLAIMS + "/upn"] = "upn"
        probes = saml.get("name_identifier_probes") or []
        saml["name_identifier_probes"] = [NAME_IDENTIFIER] + [p for p in probes if p != NAME_IDENTIFIER]

    field = api.configuration.get("SAML_METADATA_FIELD", "").strip()
    if field:
        attribute = api.configuration.get("SAML_METADATA_ATTRIBUTE", "").strip() or CLAIMS + "/" + field.split(".")[-1]
        default = api.configuration.get("SAML_METADATA_DEFAULT", "")
        if default:
            _set_default(user.user_metadata, field, default)
        mappings[attribute] = "user_metadata." + field

    saml["mappings"] = mappings
