"""Verifying the access tokens Bastion issued (for /userinfo and the Management API)."""

from __future__ import annotations

import time
from typing import Any

from bastion.keys.jose import JoseError, verify_jwt
from bastion.keys.keyring import Keyring

__all__ = ["InvalidAccessToken", "verify_access_token", "bearer_token"]


class InvalidAccessToken(Exception):
    pass


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def verify_access_token(keyring: Keyring, token: str, *, issuer: str, audience: str, leeway: int = 30) -> dict[str, Any]:
    """Signature by a published key, issuer, audience and expiry; returns the claims."""
    keyset = await keyring.keyset()
    if keyset is None or len(token) > 16_384:
        raise InvalidAccessToken("invalid token")
    try:
        _header, claims = verify_jwt(token, keyset)
    except (JoseError, ValueError, KeyError, TypeError):
        raise InvalidAccessToken("invalid signature") from None
    if claims.get("iss") != issuer:
        raise InvalidAccessToken("invalid issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise InvalidAccessToken("invalid audience")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp + leeway < time.time():
        raise InvalidAccessToken("expired token")
    return claims
