"""RFC 6749 §2.3: client authentication at the token and revocation endpoints
(`client_secret_basic`, `client_secret_post`, or none for public clients)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.requests import Request

from bastion.errors import OAuthError
from bastion.storage.records import Client
from bastion.tenant.cache import TenantCache
from bastion.tenant.clients import verify_client_secret

__all__ = ["AuthenticatedClient", "authenticate_client"]


@dataclass(frozen=True)
class AuthenticatedClient:
    client: Client
    has_secret: bool  # False for a public client that presented no secret


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise OAuthError("invalid_client", "Malformed Basic credentials", 401) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "Malformed Basic credentials", 401)
    return unquote(client_id), unquote(secret)


async def authenticate_client(request: Request, params: dict[str, str], tenant: TenantCache) -> AuthenticatedClient:
    basic = _basic_credentials(request)
    if basic and params.get("client_secret"):
        raise OAuthError("invalid_request", "Use one client authentication method, not two")
    client_id, secret = basic if basic else (params.get("client_id"), params.get("client_secret"))
    if basic and params.get("client_id") and params["client_id"] != client_id:
        raise OAuthError("invalid_request", "client_id does not match the Basic credentials")
    if not client_id:
        raise OAuthError("invalid_client", "Missing required parameter: client_id", 401)
    client = await tenant.client(client_id)
    unauthorized = OAuthError(
        "invalid_client", "Unauthorized", 401, headers={"WWW-Authenticate": 'Basic realm="bastion"'} if basic else None
    )
    if client is None:
        raise unauthorized
    if secret:
        if not verify_client_secret(client, secret):
            raise unauthorized
        return AuthenticatedClient(client, True)
    if client.is_public:
        return AuthenticatedClient(client, False)
    raise OAuthError("invalid_client", "Client authentication is required", 401)
