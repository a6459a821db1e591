"""The password grant's `mfa_token`: what a back-channel login that a rule sent to MFA waits with.

    403 {"error": "mfa_required", "error_description": "Multifactor authentication required", "mfa_token": ...}

The token is a random handle; its row (purpose `mfa_token`) keeps the user, the client,
the login result the rules produced and their execution record, for
`mfa_token_lifetime` seconds. The `mfa-otp` / `mfa-recovery-code` grants spend it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bastion.errors import OAuthError
from bastion.security.handles import digest, new_handle
from bastion.services import Services
from bastion.storage import one_time_codes

__all__ = ["PendingMfa", "issue_mfa_token", "open_mfa_token", "spend_mfa_token"]

PURPOSE = "mfa_token"


@dataclass(frozen=True)
class PendingMfa:
    id: str
    user_id: str
    client_id: str
    result: dict[str, Any]
    execution: dict[str, Any] | None


async def issue_mfa_token(services: Services, *, user_id: str, client_id: str, result: dict[str, Any], execution: dict[str, Any] | None) -> str:
    token = new_handle(32)
    async with services.database.transaction() as session:
        await one_time_codes.insert_code(
            session, id=digest(f"mfa-token|{token}"), purpose=PURPOSE, connection=None, recipient=user_id, client_id=client_id,
            code_digest=digest(token), data={"result": result, "execution": execution},
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=services.settings.mfa_token_lifetime),
        )
    return token


def _invalid() -> OAuthError:
    return OAuthError("invalid_grant", "Malformed mfa_token", 403)


async def open_mfa_token(services: Services, token: str | None, *, client_id: str | None = None) -> PendingMfa:
    """The pending login behind a live, unused token (of `client_id`, when given)."""
    if not token or len(token) > 128:
        raise _invalid()
    async with services.database.reader() as session:
        record = await one_time_codes.get_code(session, id=digest(f"mfa-token|{token}"))
    if (
        record is None
        or record.purpose != PURPOSE
        or record.used_at is not None
        or record.expires_at <= datetime.now(timezone.utc)
        or (client_id is not None and record.client_id != client_id)
    ):
        raise OAuthError("invalid_grant", "Malformed mfa_token" if record is None else "mfa_token is expired or was already used", 403)
    return PendingMfa(
        id=record.id, user_id=record.recipient or "", client_id=record.client_id or "",
        result=record.data.get("result") or {}, execution=record.data.get("execution"),
    )


async def spend_mfa_token(services: Services, pending: PendingMfa) -> None:
    async with services.database.transaction() as session:
        if not await one_time_codes.consume_code(session, id=pending.id):
            raise OAuthError("invalid_grant", "mfa_token is expired or was already used", 403)
