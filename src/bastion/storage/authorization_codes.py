"""Repository: authorization codes (stored as digests, single use)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import AuthorizationCode, record_from_row
from bastion.storage.tables import AuthorizationCodeRow

__all__ = ["insert_authorization_code", "consume_authorization_code"]


async def insert_authorization_code(session: AsyncSession, **values) -> None:
    session.add(AuthorizationCodeRow(used_at=None, refresh_family_id=None, **values))
    await session.flush()


async def consume_authorization_code(
    session: AsyncSession, *, code_digest: str, family_id: str
) -> tuple[AuthorizationCode | None, bool]:
    """Mark the code used and name the refresh-token family it may start.

    Returns (code, first_use); first_use is False on a replay, and then the code's
    `refresh_family_id` names what must be revoked.
    """
    now = datetime.now(timezone.utc)
    result = await session.execute(
        update(AuthorizationCodeRow)
        .where(AuthorizationCodeRow.code_digest == code_digest, AuthorizationCodeRow.used_at.is_(None))
        .values(used_at=now, refresh_family_id=family_id)
    )
    row = await session.get(AuthorizationCodeRow, code_digest, populate_existing=True)
    if row is None:
        return None, False
    return record_from_row(AuthorizationCode, row), result.rowcount == 1

