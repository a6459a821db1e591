"""Repository: refresh tokens, grouped in families for rotation and reuse detection."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.core_rows import insert_row
from bastion.storage.records import RefreshToken, record_from_row
from bastion.storage.tables import RefreshTokenRow

__all__ = [
    "insert_refresh_token",
    "find_refresh_token",
    "use_refresh_token",
    "revoke_refresh_family",
    "revoke_user_refresh_tokens",
]


_TABLE = RefreshTokenRow.__table__
# Every refresh exchange reads, rotates and writes one: Core statements built once (core_rows.py).
_SELECT = select(_TABLE).where(_TABLE.c.token_digest == bindparam("digest"))
_USE = (
    update(_TABLE)
    .where(_TABLE.c.token_digest == bindparam("digest"), _TABLE.c.used_at.is_(None), _TABLE.c.revoked_at.is_(None))
    .values(used_at=bindparam("now"))
)


async def insert_refresh_token(
    session: AsyncSession, *, token_digest: str, family_id: str, client_id: str, user_id: str, grant: dict, expires_at: datetime
) -> None:
    await insert_row(session, _TABLE, {
        "token_digest": token_digest, "family_id": family_id, "client_id": client_id, "user_id": user_id, "grant": grant,
        "created_at": datetime.now(timezone.utc), "expires_at": expires_at, "used_at": None, "revoked_at": None,
    })


async def find_refresh_token(session: AsyncSession, *, token_digest: str) -> RefreshToken | None:
    row = (await session.execute(_SELECT, {"digest": token_digest})).mappings().first()
    return record_from_row(RefreshToken, row) if row else None


async def use_refresh_token(session: AsyncSession, *, token_digest: str) -> bool:
    """Mark a live token used (rotated). False when it was already used or revoked: a reuse."""
    result = await session.execute(_USE, {"digest": token_digest, "now": datetime.now(timezone.utc)})
    return result.rowcount == 1


async def revoke_refresh_family(session: AsyncSession, *, family_id: str) -> int:
    result = await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=datetime.now(timezone.utc))
    )
    return result.rowcount


async def revoke_user_refresh_tokens(session: AsyncSession, *, user_id: str, client_id: str | None = None) -> int:
    statement = update(RefreshTokenRow).where(RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked_at.is_(None))
    if client_id:
        statement = statement.where(RefreshTokenRow.client_id == client_id)
    result = await session.execute(statement.values(revoked_at=datetime.now(timezone.utc)))
    return result.rowcount

