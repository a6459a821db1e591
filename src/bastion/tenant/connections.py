"""Connections as the Management API accepts and shows them (Auth0's shape), and the options
an upstream OpenID Connect connection (strategies `oidc` and `waad`, docs/connections.md) must have.

An upstream connection's `client_secret` is Bastion's secret at the provider: it is sealed at
rest (as client secrets and rule configuration values are) and never shown again, not even to
a caller that can read connections. A PATCH whose `options` leave it out keeps the stored one,
so an administrator can change the other options without knowing it. (Auth0 returns it in
`options`; one leaked read token should not hand out a key to every upstream account.)

`display_name` (the login page's "Continue with ...") has no column: it is kept with the options
and shown at the top level, as Auth0 does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bastion.security.sealing import Sealer
from bastion.storage.records import Connection

__all__ = [
    "UPSTREAM_STRATEGIES",
    "InvalidOptions",
    "prepare_options",
    "connection_client_secret",
    "connection_to_json",
    "display_name",
]

UPSTREAM_STRATEGIES = ("oidc", "waad")
SECRET_PURPOSE = "connection-client-secret"
_SEALED_SECRET = "client_secret_sealed"
_DISPLAY_NAME = "display_name"
_INTERNAL_OPTIONS = (_SEALED_SECRET, _DISPLAY_NAME)


class InvalidOptions(Exception):
    """The options cannot work for the strategy; the message says why (Auth0's payload validation)."""


def prepare_options(
    sealer: Sealer, strategy: str, options: dict[str, Any] | None, *, current: dict[str, Any] | None = None,
    display_name: str | None = None,
) -> dict[str, Any]:
    """The options to store. `options` replaces `current` whole (Auth0's PATCH), except the sealed
    client secret and the display name, which stay unless given again. Raises InvalidOptions."""
    current = current or {}
    if options is None:
        stored = dict(current)
    else:  # a caller never sets the internal keys itself
        stored = {k: v for k, v in options.items() if k not in _INTERNAL_OPTIONS}
        stored.update({k: current[k] for k in _INTERNAL_OPTIONS if k in current})
    if display_name is not None:
        stored[_DISPLAY_NAME] = display_name
    if strategy not in UPSTREAM_STRATEGIES:
        return stored
    secret = stored.pop("client_secret", None)
    if secret is not None:
        if not isinstance(secret, str) or not secret:
            raise InvalidOptions("Payload validation error: 'options.client_secret' must be a non-empty string.")
        stored[_SEALED_SECRET] = sealer.seal(secret, purpose=SECRET_PURPOSE)
    check_upstream_options(strategy, stored)
    return stored


def check_upstream_options(strategy: str, options: dict[str, Any]) -> None:
    """What an `oidc` or `waad` connection needs to log anyone in (Auth0's option names)."""

    def fail(message: str) -> None:
        raise InvalidOptions(f"Payload validation error: {message}")

    if not isinstance(options.get("client_id"), str) or not options["client_id"]:
        fail("'Missing required property: options.client_id'.")
    if not options.get(_SEALED_SECRET):
        fail("'Missing required property: options.client_secret' (the code flow authenticates to the provider).")
    for key in ("discovery_url", "issuer"):
        if key in options and not _is_http_url(options[key]):
            fail(f"'options.{key}' must be an http(s) URL.")
    scope = options.get("scope")
    if scope is not None and not isinstance(scope, str) and not (isinstance(scope, list) and all(isinstance(s, str) for s in scope)):
        fail("'options.scope' must be a space-separated string (or, as Auth0's waad takes it, a list).")
    params = options.get("upstream_params")
    if params is not None and (not isinstance(params, dict) or not all(
        isinstance(v, dict) and (isinstance(v.get("value"), str) or isinstance(v.get("alias"), str)) for v in params.values()
    )):
        fail("'options.upstream_params' must map names to {\"value\": \"...\"} or {\"alias\": \"...\"}.")
    if strategy == "oidc":
        if not options.get("discovery_url") and not options.get("issuer"):
            fail("'options.discovery_url' or 'options.issuer' is required.")
        if options.get("type", "back_channel") != "back_channel":
            fail("only 'options.type': 'back_channel' (the authorization code flow) is supported.")
    else:
        if not options.get("discovery_url") and not (options.get("tenant_domain") or options.get("domain")):
            fail("'options.tenant_domain' (or 'options.domain') is required.")
        if options.get("waad_protocol", "openid-connect") != "openid-connect":
            fail("only 'options.waad_protocol': 'openid-connect' is supported.")
        if options.get("userid_attribute", "oid") not in ("oid", "sub"):
            fail("'options.userid_attribute' must be 'oid' or 'sub'.")


def connection_client_secret(sealer: Sealer, connection: Connection) -> str | None:
    """The upstream connection's client secret, unsealed (for the token endpoint only)."""
    sealed = connection.options.get(_SEALED_SECRET)
    return sealer.open(sealed, purpose=SECRET_PURPOSE).decode() if isinstance(sealed, str) else None


def display_name(connection: Connection) -> str:
    value = connection.options.get(_DISPLAY_NAME)
    return value if isinstance(value, str) and value else connection.name


def connection_to_json(connection: Connection) -> dict[str, Any]:
    """Auth0's connection shape; the sealed secret is never part of it."""
    return {
        "id": connection.id,
        "name": connection.name,
        "display_name": display_name(connection),
        "strategy": connection.strategy,
        "options": {k: v for k, v in connection.options.items() if k not in _INTERNAL_OPTIONS},
        "enabled_clients": connection.enabled_clients,
        "is_domain_connection": connection.is_domain_connection,
        "realms": [connection.name],
    }


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("https", "http") and bool(parts.hostname)
