"""A SAML application's settings: Auth0's `samlp` addon, and what rules see and change.

Two spellings of one thing:
- the addon, stored on the client as `addons.samlp` with Auth0's camelCase names
  (`lifetimeInSeconds`, `signResponse`, ...) and Auth0's addon direction for `mappings`:
  `{user attribute: SAML attribute name}`;
- the rules' `context.saml_configuration`, in the contract's snake_case, with `mappings` in
  the direction Auth0's rules write it: `{SAML attribute name: user attribute}`.

`effective_configuration` turns the first into the second (defaults filled in, the
request's ACS URL and issuer applied); `rule_overrides` reads what the rules left,
accepting Auth0's camelCase names too, so a rule ported from Auth0 that sets
`context.saml_configuration["lifetimeInSeconds"]` works.
"""

from __future__ import annotations

from typing import Any

from bastion.saml.keys import load_certificate

__all__ = [
    "ADDON_FIELDS",
    "DEFAULT_MAPPINGS",
    "SIGNATURE_ALGORITHMS",
    "DIGEST_ALGORITHMS",
    "AddonError",
    "check_addon",
    "effective_configuration",
    "rule_overrides",
]

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
AC_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"

# Auth0's default output attributes, in the rules' direction (SAML attribute -> user attribute).
DEFAULT_MAPPINGS = {
    f"{CLAIMS}/nameidentifier": "user_id",
    f"{CLAIMS}/emailaddress": "email",
    f"{CLAIMS}/name": "name",
    f"{CLAIMS}/givenname": "given_name",
    f"{CLAIMS}/surname": "family_name",
    f"{CLAIMS}/upn": "upn",
    "http://schemas.xmlsoap.org/claims/Group": "groups",
}
DEFAULT_PROBES = [f"{CLAIMS}/nameidentifier", f"{CLAIMS}/emailaddress", f"{CLAIMS}/name"]

# SHA-1 is refused: a SHA-1 signature can be forged (SHAttered, 2017). Auth0 still offers it;
# service providers verify the algorithm a signature names, so SHA-256 works with them.
SIGNATURE_ALGORITHMS = ("rsa-sha256", "rsa-sha512")
DIGEST_ALGORITHMS = ("sha256", "sha512")

# snake_case (rules) <-> camelCase (addon, Auth0), with each setting's type and default.
ADDON_FIELDS: dict[str, tuple[str, type | tuple[type, ...], Any]] = {
    "audience": ("audience", str, None),
    "recipient": ("recipient", str, None),
    "destination": ("destination", str, None),
    "issuer": ("issuer", str, None),
    "mappings": ("mappings", dict, None),
    "create_upn_claim": ("createUpnClaim", bool, True),
    "passthrough_claims_with_no_mapping": ("passthroughClaimsWithNoMapping", bool, True),
    "map_unknown_claims_as_is": ("mapUnknownClaimsAsIs", bool, False),
    "map_identities": ("mapIdentities", bool, True),
    "signature_algorithm": ("signatureAlgorithm", str, "rsa-sha256"),
    "digest_algorithm": ("digestAlgorithm", str, "sha256"),
    "lifetime_in_seconds": ("lifetimeInSeconds", int, 3600),
    "sign_response": ("signResponse", bool, False),
    "name_identifier_format": ("nameIdentifierFormat", str, NAMEID_UNSPECIFIED),
    "name_identifier_probes": ("nameIdentifierProbes", list, None),
    "authn_context_class_ref": ("authnContextClassRef", str, AC_UNSPECIFIED),
    "typed_attributes": ("typedAttributes", bool, True),
    "include_attribute_name_format": ("includeAttributeNameFormat", bool, True),
    "logout": ("logout", dict, None),
    "binding": ("binding", str, HTTP_POST),
    "signing_cert": ("signingCert", str, None),
    "relay_state": ("RelayState", str, None),
    # Rules only: sign this response with another key pair (Auth0's `cert` and `key`).
    "cert": ("cert", str, None),
    "key": ("key", str, None),
}
_RULE_ONLY = {"cert", "key", "relay_state"}
_CAMEL = {camel: snake for snake, (camel, _, _) in ADDON_FIELDS.items()}
MAX_LIFETIME = 7 * 86400


class AddonError(ValueError):
    """An addon setting, or a rule's change to it, that cannot be used; the message says which."""


def check_addon(addon: Any) -> dict[str, Any]:
    """Validate `addons.samlp` as the Management API receives it (Auth0's camelCase names)."""
    if not isinstance(addon, dict):
        raise AddonError("addons.samlp must be an object")
    checked: dict[str, Any] = {}
    for name, value in addon.items():
        snake = _CAMEL.get(name)
        if snake is None or snake in _RULE_ONLY:
            raise AddonError(f"addons.samlp.{name} is not a SAML setting Bastion knows")
        checked[name] = _checked(snake, value, f"addons.samlp.{name}")
    mappings = checked.get("mappings")
    if mappings is not None:
        for attribute, saml_name in mappings.items():
            if not isinstance(saml_name, (str, list)) or (isinstance(saml_name, list) and not all(isinstance(n, str) for n in saml_name)):
                raise AddonError(f"addons.samlp.mappings.{attribute} must name a SAML attribute (a string or a list of strings)")
    return checked


def _checked(snake: str, value: Any, label: str) -> Any:
    _, kind, _ = ADDON_FIELDS[snake]
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise AddonError(f"{label} must be a whole number")
    if kind is not int and not isinstance(value, kind):
        raise AddonError(f"{label} must be a {kind.__name__ if isinstance(kind, type) else kind}")
    if snake == "signature_algorithm" and value not in SIGNATURE_ALGORITHMS:
        raise AddonError(f"{label} must be one of {', '.join(SIGNATURE_ALGORITHMS)} (SHA-1 signatures are refused)")
    if snake == "digest_algorithm" and value not in DIGEST_ALGORITHMS:
        raise AddonError(f"{label} must be one of {', '.join(DIGEST_ALGORITHMS)} (SHA-1 digests are refused)")
    if snake == "lifetime_in_seconds" and not 1 <= value <= MAX_LIFETIME:
        raise AddonError(f"{label} must be between 1 and {MAX_LIFETIME} seconds")
    if snake == "binding" and value not in (HTTP_POST, HTTP_REDIRECT):
        raise AddonError(f"{label} must be {HTTP_POST} or {HTTP_REDIRECT}")
    if snake == "name_identifier_probes" and not all(isinstance(p, str) for p in value):
        raise AddonError(f"{label} must be a list of attribute names")
    if snake == "signing_cert" and not _is_certificate(value):
        raise AddonError(f"{label} must be a PEM X.509 certificate")
    if snake == "logout":  # the callback becomes a LogoutResponse's Destination and the form's action
        callback = value.get("callback")
        if callback is not None and not (isinstance(callback, str) and "://" in callback and len(callback) <= 2048):
            raise AddonError(f"{label}.callback must be an absolute URL")
        if not isinstance(value.get("slo_enabled", True), bool):
            raise AddonError(f"{label}.slo_enabled must be true or false")
    return value


def _is_certificate(pem: str) -> bool:
    try:
        load_certificate(pem)
    except ValueError:
        return False
    return True


def effective_configuration(addon: dict[str, Any], *, acs_url: str, sp_entity_id: str | None) -> dict[str, Any]:
    """What rules see as `context.saml_configuration` at the start of a SAML login."""
    config: dict[str, Any] = {}
    for snake, (camel, _, default) in ADDON_FIELDS.items():
        if snake in _RULE_ONLY:
            continue
        value = addon.get(camel)
        config[snake] = default if value is None else value
    mappings = dict(DEFAULT_MAPPINGS)
    for attribute, saml_names in (addon.get("mappings") or {}).items():  # the addon's direction: attribute -> SAML name(s)
        for saml_name in saml_names if isinstance(saml_names, list) else [saml_names]:
            mappings[saml_name] = attribute
    config["mappings"] = mappings
    config["name_identifier_probes"] = list(addon.get("nameIdentifierProbes") or DEFAULT_PROBES)
    config["audience"] = addon.get("audience") or sp_entity_id
    config["recipient"] = addon.get("recipient") or acs_url
    config["destination"] = addon.get("destination") or addon.get("recipient") or acs_url
    config["logout"] = {"slo_enabled": True, **(addon.get("logout") or {})}
    return config


def rule_overrides(start: dict[str, Any], final: Any) -> tuple[dict[str, Any], list[str]]:
    """The configuration a response is built with: `start` changed by what the rules left.

    Accepts snake_case and Auth0's camelCase names. Returns the configuration and warnings
    for changes that were ignored (unknown names, wrong types, SHA-1).
    """
    config = dict(start)
    warnings: list[str] = []
    if not isinstance(final, dict):
        return config, ["context.saml_configuration must be a dict; it was ignored"]
    for name, value in final.items():
        snake = name if name in ADDON_FIELDS else _CAMEL.get(name)
        if snake is None:
            warnings.append(f"context.saml_configuration[{name!r}] is not a SAML setting; ignored")
            continue
        if value == start.get(snake):
            continue
        try:
            value = _checked(snake, value, f"context.saml_configuration[{name!r}]")
        except AddonError as problem:
            warnings.append(f"{problem}; ignored")
            continue
        if snake == "mappings" and value is not None:
            value = {str(k): v for k, v in value.items() if isinstance(v, str)}
        config[snake] = value
    return config, warnings
