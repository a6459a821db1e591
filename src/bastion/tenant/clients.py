"""Clients (applications): creation with Auth0's defaults, secrets, and Auth0's JSON shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.handles import digest, new_client_id, new_handle, same_digest
from bastion.security.sealing import Sealer
from bastion.storage import clients as client_store
from bastion.storage.records import Client

__all__ = ["APP_TYPES", "AUTH_METHODS", "create_client", "verify_client_secret", "client_secret", "client_to_json", "rotate_client_secret"]

APP_TYPES = ("regular_web", "spa", "native", "non_interactive")
AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
_SECRET_PURPOSE = "client-secret"

DEFAULT_GRANT_TYPES = {
    "regular_web": ["authorization_code", "implicit", "refresh_token", "client_credentials"],
    "spa": ["authorization_code", "implicit", "refresh_token"],
    "native": ["authorization_code", "implicit", "refresh_token"],
    "non_interactive": ["client_credentials"],
}


def _secret_columns(sealer: Sealer, secret: str) -> dict[str, str]:
    return {"client_secret_sealed": sealer.seal(secret, purpose=_SECRET_PURPOSE), "client_secret_digest": digest(secret)}


async def create_client(
    session: AsyncSession,
    sealer: Sealer,
    *,
    name: str,
    app_type: str = "regular_web",
    client_id: str | None = None,
    client_secret: str | None = None,
    token_endpoint_auth_method: str | None = None,
    grant_types: list[str] | None = None,
    **fields: Any,
) -> tuple[Client, str | None]:
    """Insert a client with Auth0's defaults; returns it with its plain secret (None for public clients)."""
    if token_endpoint_auth_method is None:
        token_endpoint_auth_method = "none" if app_type in ("spa", "native") else "client_secret_post"
    secret = None
    columns: dict[str, Any] = {"client_secret_sealed": None, "client_secret_digest": None}
    if token_endpoint_auth_method != "none" or client_secret:
        secret = client_secret or new_handle(48)
        columns = _secret_columns(sealer, secret)
    client = await client_store.insert_client(
        session,
        client_id=client_id or new_client_id(),
        name=name,
        app_type=app_type,
        token_endpoint_auth_method=token_endpoint_auth_method,
        grant_types=grant_types if grant_types is not None else list(DEFAULT_GRANT_TYPES[app_type]),
        **columns,
        **fields,
    )
    return client, secret


async def rotate_client_secret(
    session: AsyncSession, sealer: Sealer, *, client_id: str, secret: str | None = None
) -> tuple[Client, str] | None:
    """Give the client a new secret (random unless given)."""
    secret = secret or new_handle(48)
    client = await client_store.update_client(session, client_id=client_id, changes=_secret_columns(sealer, secret))
    return (client, secret) if client else None


def verify_client_secret(client: Client, presented: str) -> bool:
    """Constant-time comparison against the stored SHA-256 digest (never a slow password hash)."""
    if not client.client_secret_digest:
        return False
    return same_digest(presented, client.client_secret_digest)


def client_secret(sealer: Sealer, client: Client) -> str | None:
    if not client.client_secret_sealed:
        return None
    return sealer.open(client.client_secret_sealed, purpose=_SECRET_PURPOSE).decode()


def client_to_json(client: Client, sealer: Sealer, *, include_secret: bool = True) -> dict[str, Any]:
    """Auth0's client shape."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "name": client.name,
        "description": client.description,
        "app_type": client.app_type,
        "is_first_party": client.is_first_party,
        "oidc_conformant": True,
        "callbacks": client.callbacks,
        "allowed_logout_urls": client.allowed_logout_urls,
        "web_origins": client.web_origins,
        "allowed_origins": client.allowed_origins,
        "grant_types": client.grant_types,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "client_metadata": client.client_metadata,
        "jwt_configuration": {"alg": "RS256", "lifetime_in_seconds": 36000, "secret_encoded": False, **client.jwt_configuration},
        "refresh_token": {
            "rotation_type": "rotating",
            "expiration_type": "expiring",
            "leeway": 0,
            "token_lifetime": 2592000,
            "infinite_token_lifetime": False,
            **client.refresh_token,
        },
        "addons": client.addons,
        "global": False,
        "is_token_endpoint_ip_header_trusted": False,
        "callback_url_template": False,
        "custom_login_page_on": False,
        "sso_disabled": False,
    }
    if include_secret:
        secret = client_secret(sealer, client)
        if secret:
            body["client_secret"] = secret
    return body
