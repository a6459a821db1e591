"""Upstream OpenID Connect connections (strategies `oidc` and `waad`): what a connection's
options mean for the round trip (login/upstream.py), and how the provider's claims become a
Bastion account, with Auth0's identifiers and profile (docs/connections.md).

    oidc  discovery_url | issuer, client_id, client_secret, scope ("openid profile email"),
          type "back_channel", upstream_params
          user_id `oidc|<connection>|<sub>`, identity user_id `<connection>|<sub>`
    waad  client_id, client_secret, tenant_domain | domain, waad_protocol "openid-connect",
          userid_attribute "oid" (default) | "sub", discovery_url (overrides Microsoft's, for
          sovereign clouds and tests), should_trust_email_verified_connection
          user_id `waad|<connection>|<oid>`; the identity's profile keeps upn, tenantid, oid, groups

As in Auth0, a user's `user_id` is the provider, then the identity's own id, which for an
enterprise connection starts with the connection's name (`samlp|<connection>|<name id>`): the
same subject at two connections is two users, and unlinking can rebuild the user id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.login.upstream import UpstreamError
from bastion.security.sealing import Sealer
from bastion.services import Services
from bastion.storage.records import Connection
from bastion.tenant.connections import (
    UPSTREAM_STRATEGIES,
    connection_client_secret,
    display_name,
)
from bastion.tenant.users import default_picture

__all__ = [
    "UPSTREAM_STRATEGIES",
    "ConnectionUnavailable",
    "UpstreamSettings",
    "UpstreamAccount",
    "upstream_connection",
    "enabled_upstream_connections",
    "upstream_settings",
    "upstream_params",
    "account_from_claims",
    "display_name",
]

DEFAULT_SCOPE = "openid profile email"
MICROSOFT_DISCOVERY = "https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"

# Auth0's upstream_params aliases: the authorization request parameters a connection may forward.
ALIASABLE_PARAMETERS = frozenset(
    {"acr_values", "audience", "client_id", "display", "id_token_hint", "login_hint", "max_age", "prompt", "resource", "scope", "ui_locales"}
)

# Claims about the token rather than the person: never part of the stored profile.
TOKEN_CLAIMS = frozenset(
    {"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "s_hash", "azp", "jti", "auth_time", "sid", "acr",
     "amr", "typ", "ver", "aio", "uti", "rh", "xms_tcdt", "xms_pdl", "wids", "sub_jwk", "cnf"}
)

_MAX_USER_ID = 128  # users.user_id
_MAX_EXTERNAL_ID = 256  # identities.external_id


class ConnectionUnavailable(Exception):
    """No upstream connection by that name is enabled for the application."""


@dataclass(frozen=True)
class UpstreamSettings:
    """A connection's options, resolved for one round trip."""

    discovery_url: str
    issuer: str | None  # when set, the discovery document must name this issuer
    client_id: str
    client_secret: str
    scope: str
    upstream_params: dict[str, Any]


@dataclass(frozen=True)
class UpstreamAccount:
    """The Bastion account the provider's claims describe."""

    user_id: str
    external_id: str  # the identity's user_id: `<connection>|<subject>`
    profile: dict[str, Any]  # the user's root attributes (email, name, picture...)
    profile_data: dict[str, Any]  # the identity's profileData: the provider's claims


async def upstream_connection(services: Services, name: str | None, *, client_id: str) -> Connection:
    """The `oidc` or `waad` connection `name`, enabled for `client_id`. Raises ConnectionUnavailable."""
    connection = await services.tenant.connection(name) if name else None
    if connection is None or connection.strategy not in UPSTREAM_STRATEGIES or client_id not in connection.enabled_clients:
        raise ConnectionUnavailable(name or "")
    return connection


async def enabled_upstream_connections(services: Services, client_id: str) -> list[Connection]:
    """The upstream connections enabled for the application: one login button each."""
    return [c for c in await services.tenant.connections_of(UPSTREAM_STRATEGIES) if client_id in c.enabled_clients]


def upstream_settings(connection: Connection, sealer: Sealer) -> UpstreamSettings:
    """Where the provider is and how Bastion authenticates to it. Raises UpstreamError for
    options the Management API would not have accepted (a connection stored another way)."""
    options = connection.options
    secret = connection_client_secret(sealer, connection)
    client_id = options.get("client_id")
    if not isinstance(client_id, str) or not client_id or not secret:
        raise UpstreamError(f"the connection {connection.name} has no client_id or client_secret")
    issuer = options.get("issuer") if isinstance(options.get("issuer"), str) else None
    discovery = options.get("discovery_url") if isinstance(options.get("discovery_url"), str) else None
    if connection.strategy == "waad":
        tenant = options.get("tenant_domain") or options.get("domain")
        if not discovery and isinstance(tenant, str) and tenant:
            discovery = MICROSOFT_DISCOVERY.format(tenant=tenant)
        issuer = None  # Microsoft's metadata names the issuer (a template, for multi-tenant apps)
    elif not discovery and issuer:
        discovery = issuer.rstrip("/") + "/.well-known/openid-configuration"
    if not discovery:
        raise UpstreamError(f"the connection {connection.name} has no discovery_url")
    return UpstreamSettings(
        discovery_url=discovery, issuer=issuer, client_id=client_id, client_secret=secret,
        scope=_scope(options.get("scope")), upstream_params=options.get("upstream_params") or {},
    )


def _scope(value: Any) -> str:
    """The scope asked of the provider: the connection's (a string, or Auth0's list for waad), always with openid."""
    scopes = value.split() if isinstance(value, str) else [s for s in value if isinstance(s, str)] if isinstance(value, list) else []
    scopes = scopes or DEFAULT_SCOPE.split()
    return " ".join(dict.fromkeys(["openid", *scopes]))


def upstream_params(settings: UpstreamSettings, request_query: dict[str, str]) -> dict[str, str]:
    """Auth0's upstream_params: `{"name": {"value": "..."}}` sends a fixed value; `{"name": {"alias":
    "login_hint"}}` forwards that parameter of the application's authorization request."""
    params: dict[str, str] = {}
    for name, spec in settings.upstream_params.items():
        if not isinstance(spec, dict):
            continue
        if isinstance(spec.get("value"), str):
            params[name] = spec["value"]
        elif spec.get("alias") in ALIASABLE_PARAMETERS and request_query.get(spec["alias"]):
            params[name] = request_query[spec["alias"]]
    return params


def account_from_claims(connection: Connection, claims: dict[str, Any]) -> UpstreamAccount:
    """The account for the ID token's and UserInfo's claims (UserInfo's win, §5.3.2). Raises
    UpstreamError when the claims do not identify anyone Bastion can store."""
    waad = connection.strategy == "waad"
    profile_data = {k: v for k, v in claims.items() if k not in TOKEN_CLAIMS}
    if waad:
        subject = claims.get(connection.options.get("userid_attribute") or "oid")
        upn = claims.get("upn") or claims.get("preferred_username")
        profile_data.update({k: v for k, v in (("upn", upn), ("tenantid", claims.get("tid")), ("oid", claims.get("oid"))) if v})
    else:
        subject = claims.get("sub")
        upn = None
    if not isinstance(subject, str) or not subject:
        raise UpstreamError(f"the provider's claims have no {'oid' if waad else 'sub'} to identify the user")
    external_id = f"{connection.name}|{subject}"
    user_id = f"{connection.strategy}|{external_id}"
    if len(user_id) > _MAX_USER_ID or len(external_id) > _MAX_EXTERNAL_ID:
        raise UpstreamError(f"the provider's user id is too long to store ({len(subject)} characters)")
    return UpstreamAccount(user_id=user_id, external_id=external_id, profile=_root_profile(connection, claims, upn), profile_data=profile_data)


def _root_profile(connection: Connection, claims: dict[str, Any], upn: Any) -> dict[str, Any]:
    """Auth0's normalized profile: the standard claims, with its fallbacks for name, nickname and picture."""

    def text(key: str, limit: int = 300) -> str | None:
        value = claims.get(key)
        return value.strip()[:limit] if isinstance(value, str) and value.strip() else None

    email = text("email", 320)
    email = email.lower() if email and "@" in email else None
    if connection.strategy == "waad":
        # Azure AD's `email` is whatever the directory holds, unverified (the "nOAuth" problem):
        # verified only when the administrator says the connection can be trusted for it.
        trusted = connection.options.get("should_trust_email_verified_connection") == "always_set_emails_as_verified"
        email_verified = bool(email) and trusted
    else:
        email_verified = bool(email) and claims.get("email_verified") in (True, "true")
    given, family = text("given_name", 150), text("family_name", 150)
    login_name = upn if isinstance(upn, str) and upn else text("preferred_username")
    name = text("name") or " ".join(p for p in (given, family) if p) or email or login_name or claims["sub"]
    nickname = text("nickname") or (login_name or email or "").split("@")[0] or name
    picture = text("picture", 2048)
    if not picture or not picture.startswith(("https://", "http://")):
        picture = default_picture(email, name)
    return {
        "email": email, "email_verified": email_verified, "name": name, "nickname": nickname,
        "given_name": given, "family_name": family, "picture": picture,
    }
