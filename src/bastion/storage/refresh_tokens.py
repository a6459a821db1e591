"""Repository: refresh tokens, grouped in families for rotation and reuse detection."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import RefreshToken, record_from_row
from bastion.storage.tables import RefreshTokenRow

__all__ = [
    "insert_refresh_token",
    "find_refresh_token",
    "use_refresh_token",
    "revoke_refresh_family",
    "revoke_user_refresh_tokens",
]


async def insert_refresh_token(
    session: AsyncSession, *, token_digest: str, family_id: str, client_id: str, user_id: str, grant: dict, expires_at: datetime
) -> None:
    session.add(
        RefreshTokenRow(
            token_digest=token_digest,
            family_id=family_id,
            client_id=client_id,
            user_id=user_id,
            grant=grant,
            created_at=datetime.now(timezone.utc),
            expires_at=expires_at,
            used_at=None,
            revoked_at=None,
        )
    )
    await session.flush()


async def find_refresh_token(session: AsyncSession, *, token_digest: str) -> RefreshToken | None:
    row = await session.get(RefreshTokenRow, token_digest)
    return record_from_row(RefreshToken, row) if row else None


async def use_refresh_token(session: AsyncSession, *, token_digest: str) -> bool:
    """Mark a live token used (rotated). False when it was already used or revoked: a reuse."""
    result = await session.execute(
        update(RefreshTokenRow)
        .where(
            RefreshTokenRow.token_digest == token_digest,
            RefreshTokenRow.used_at.is_(None),
            RefreshTokenRow.revoked_at.is_(None),
        )
        .values(used_at=datetime.now(timezone.utc))
    )
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

