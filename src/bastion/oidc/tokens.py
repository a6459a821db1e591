"""Minting ID tokens (OIDC Core §2) and JWT access tokens (RFC 9068, in Auth0's shape)."""

from __future__ import annotations

import time
from typing import Any

from bastion.keys.keyring import Keyring
from bastion.login.transaction import LoginResult
from bastion.rules.outcome import RESERVED_CLAIMS
from bastion.security.handles import new_handle
from bastion.settings import Settings
from bastion.storage.records import Client, ResourceServer, User

__all__ = ["TokenIssuer", "profile_claims", "user_profile"]


def user_profile(user: User) -> dict[str, Any]:
    """The stored profile's standard fields (the same names rules see on `user`)."""
    profile = {key: getattr(user, key) for key in ("name", "nickname", "picture", "given_name", "family_name", "email", "email_verified", "phone_number", "phone_verified")}
    profile["updated_at"] = user.updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return profile


def profile_claims(profile: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
    """Standard claims (OIDC Core §5.4) released by the granted scopes."""
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        for key in ("name", "nickname", "picture", "given_name", "family_name", "updated_at"):
            if profile.get(key) is not None:
                claims[key] = profile[key]
    if "email" in scopes and profile.get("email"):
        claims["email"] = profile["email"]
        claims["email_verified"] = bool(profile.get("email_verified"))
    if "phone" in scopes and profile.get("phone_number"):
        claims["phone_number"] = profile["phone_number"]
        claims["phone_number_verified"] = bool(profile.get("phone_verified"))
    return claims


def _custom(claims: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in RESERVED_CLAIMS}


class TokenIssuer:
    def __init__(self, settings: Settings, keyring: Keyring):
        self._settings = settings
        self._keyring = keyring
        self._issuer = settings.token_issuer

    async def access_token(
        self,
        *,
        client: Client,
        subject: str,
        scopes: list[str],
        api: ResourceServer | None,
        extra_claims: dict[str, Any] | None = None,
        gty: str | None = None,
        jti: str | None = None,
        permissions: list[str] | None = None,
    ) -> tuple[str, int]:
        """A JWT access token for `api` (and /userinfo when `openid` is granted). Returns (token, expires_in).

        `permissions`, when given, is the `permissions` claim of Auth0's access_token_authz dialect."""
        now = int(time.time())
        lifetime = api.token_lifetime if api else self._settings.access_token_lifetime
        audiences: list[str] = [api.identifier] if api else []
        if "openid" in scopes or not api:
            audiences.append(self._settings.userinfo_audience)
        claims: dict[str, Any] = {
            **_custom(extra_claims or {}),
            "iss": self._issuer,
            "sub": subject,
            "aud": audiences[0] if len(audiences) == 1 else audiences,
            "iat": now,
            "exp": now + lifetime,
            "scope": " ".join(scopes),
            "jti": jti or new_handle(16),
            "azp": client.client_id,
        }
        if gty:
            claims["gty"] = gty
        if permissions is not None:
            claims["permissions"] = list(permissions)
        alg = api.signing_alg if api and api.signing_alg != "HS256" else None
        signer = await self._keyring.signer(alg)
        return signer.sign(claims), lifetime

    async def id_token(self, *, client: Client, user: User, result: LoginResult) -> str:
        now = int(time.time())
        profile = {**user_profile(user), **(result.profile or {})}  # the rules' final user wins
        claims: dict[str, Any] = {
            **profile_claims(profile, result.scopes),
            **_custom(result.id_token_claims),
            "iss": self._issuer,
            "sub": user.user_id,
            "aud": client.client_id,
            "iat": now,
            "exp": now + int(client.jwt_configuration.get("lifetime_in_seconds") or self._settings.id_token_lifetime),
            "auth_time": result.auth_time,
        }
        if result.sid:
            claims["sid"] = result.sid
        if result.nonce:
            claims["nonce"] = result.nonce
        if result.amr:
            claims["amr"] = result.amr
        if result.acr:
            claims["acr"] = result.acr
        alg = client.jwt_configuration.get("alg")
        signer = await self._keyring.signer(alg if alg in ("RS256", "ES256", "EdDSA") else None)
        return signer.sign(claims)
