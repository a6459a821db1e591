"""From the rules' final `user` to an assertion's attributes and NameID, as Auth0 maps them.

- `mappings` `{SAML attribute: user attribute}`: the user attribute may be a dotted path
  into metadata (`user_metadata.favorite_food`) or an ad-hoc attribute a rule set on `user`
  (`awsRole`); a list becomes a multi-valued attribute; a missing or empty value is left out.
- `create_upn_claim`: without a mapped UPN, the UPN claim carries the email (Auth0).
- `passthrough_claims_with_no_mapping`: the user's other top-level scalar (or list of
  scalars) attributes are sent too, named `http://schemas.auth0.com/<name>` (or as is with
  `map_unknown_claims_as_is`). Objects (metadata, identities) are not passed through.
- `map_identities`: the first identity's provider, connection, isSocial and user_id, as
  `http://schemas.auth0.com/identities/default/...` (upstream access tokens never).
- NameID: the first of `name_identifier_probes` with a value, else the user id.
"""

from __future__ import annotations

import json
from typing import Any

from bastion.saml.configuration import CLAIMS

__all__ = ["Attribute", "assertion_attributes", "name_identifier"]

AUTH0_SCHEMA = "http://schemas.auth0.com"
UPN = f"{CLAIMS}/upn"
_NOT_PASSED_THROUGH = {"identities", "app_metadata", "user_metadata", "multifactor", "jti"}

Attribute = tuple[str, list[Any]]


def _lookup(user: dict[str, Any], path: str) -> Any:
    if path in user:  # an attribute whose own name has a dot
        return user[path]
    value: Any = user
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _values(value: Any) -> list[Any]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if item is None or item == "":
            continue
        out.append(json.dumps(item, sort_keys=True) if isinstance(item, (dict, list)) else item)
    return out


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def assertion_attributes(user: dict[str, Any], config: dict[str, Any]) -> list[Attribute]:
    attributes: dict[str, list[Any]] = {}
    mappings = config.get("mappings") or {}
    for saml_name, path in mappings.items():
        values = _values(_lookup(user, path)) if isinstance(path, str) else []
        if values:
            attributes[saml_name] = values
    if config.get("create_upn_claim", True) and UPN not in attributes and user.get("email"):
        attributes[UPN] = [user["email"]]
    if config.get("passthrough_claims_with_no_mapping", True):
        mapped = {path.split(".", 1)[0] for path in mappings.values() if isinstance(path, str)}
        for name, value in user.items():
            if name in mapped or name in _NOT_PASSED_THROUGH:
                continue
            if _is_scalar(value) or (isinstance(value, list) and value and all(_is_scalar(v) for v in value)):
                saml_name = name if config.get("map_unknown_claims_as_is") else f"{AUTH0_SCHEMA}/{name}"
                attributes.setdefault(saml_name, _values(value))
    identities = user.get("identities") or []
    if config.get("map_identities", True) and identities and isinstance(identities[0], dict):
        first = identities[0]
        for field, key in (("provider", "provider"), ("connection", "connection"), ("isSocial", "is_social"), ("user_id", "user_id")):
            if first.get(key) is not None:
                attributes.setdefault(f"{AUTH0_SCHEMA}/identities/default/{field}", [first[key]])
    return [(name, values) for name, values in attributes.items() if values]


def name_identifier(user: dict[str, Any], attributes: list[Attribute], config: dict[str, Any]) -> str:
    found = dict(attributes)
    for probe in config.get("name_identifier_probes") or []:
        values = found.get(probe)
        if values:
            return str(values[0])
    return str(user.get("user_id"))
