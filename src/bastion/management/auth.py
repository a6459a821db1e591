"""Management API authentication: a Bastion-issued access token for `{issuer}/api/v2/` with the right scope."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from bastion.errors import ManagementError
from bastion.keys.access_tokens import InvalidAccessToken, bearer_token, verify_access_token
from bastion.services import Services

__all__ = ["Caller", "require"]


@dataclass(frozen=True)
class Caller:
    subject: str
    client_id: str | None
    scopes: frozenset[str]


def require(*scopes: str, all_of: bool = False):
    """A dependency that admits a caller holding any of `scopes` (all of them with `all_of`,
    as Auth0's role listings that show users need both read:users and read:roles)."""

    async def dependency(request: Request) -> Caller:
        services: Services = request.app.state.services
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise ManagementError(401, "Missing authentication")
        try:
            claims = await verify_access_token(
                services.keyring, token, issuer=services.settings.token_issuer,
                audience=services.settings.management_audience,
            )
        except InvalidAccessToken as error:
            message = {"expired token": "Expired token", "invalid audience": "Bad audience"}.get(str(error), "Invalid token")
            raise ManagementError(401, message) from None
        granted = frozenset(str(claims.get("scope", "")).split())
        if all_of and not granted.issuperset(scopes):
            raise ManagementError(403, f"Insufficient scope, expected all of: {','.join(scopes)}", "insufficient_scope")
        if scopes and not granted.intersection(scopes):
            raise ManagementError(403, f"Insufficient scope, expected any of: {','.join(scopes)}", "insufficient_scope")
        caller = Caller(subject=str(claims.get("sub")), client_id=claims.get("azp"), scopes=granted)
        limiter = request.app.state.rate_limiter
        if limiter is not None:
            decision = limiter.take(caller.client_id or caller.subject)
            request.state.rate_limit = decision  # the middleware puts its headers on the answer
            if not decision.allowed:
                raise ManagementError(429, "Global limit has been reached", "too_many_requests")
        return caller

    return dependency
