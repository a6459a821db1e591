"""Repository: one-time codes (passwordless email/SMS codes and links, back-channel MFA tokens).

A code is stored as a digest; it is consumed with a compare-and-set, so it works once,
on any server process, and each wrong guess is counted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import OneTimeCode, record_from_row
from bastion.storage.tables import OneTimeCodeRow

__all__ = ["insert_code", "get_code", "latest_live_code", "count_recent_codes", "count_attempt", "consume_code", "revoke_codes"]


async def insert_code(session: AsyncSession, **values: Any) -> OneTimeCode:
    row = OneTimeCodeRow(created_at=datetime.now(timezone.utc), used_at=None, attempts=0, **values)
    session.add(row)
    await session.flush()
    return record_from_row(OneTimeCode, row)


async def get_code(session: AsyncSession, *, id: str) -> OneTimeCode | None:
    row = await session.get(OneTimeCodeRow, id, populate_existing=True)
    return record_from_row(OneTimeCode, row) if row else None


async def latest_live_code(session: AsyncSession, *, purpose: str, connection: str, recipient: str) -> OneTimeCode | None:
    """The newest code for the recipient that is neither used nor expired."""
    row = await session.scalar(
        select(OneTimeCodeRow)
        .where(
            OneTimeCodeRow.purpose == purpose,
            OneTimeCodeRow.connection == connection,
            OneTimeCodeRow.recipient == recipient,
            OneTimeCodeRow.used_at.is_(None),
            OneTimeCodeRow.expires_at > datetime.now(timezone.utc),
        )
        .order_by(OneTimeCodeRow.created_at.desc())
        .limit(1)
    )
    return record_from_row(OneTimeCode, row) if row else None


async def count_recent_codes(session: AsyncSession, *, purpose: str, connection: str, recipient: str, since: datetime) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(OneTimeCodeRow).where(
                OneTimeCodeRow.purpose == purpose,
                OneTimeCodeRow.connection == connection,
                OneTimeCodeRow.recipient == recipient,
                OneTimeCodeRow.created_at >= since,
            )
        )
        or 0
    )


async def count_attempt(session: AsyncSession, *, id: str) -> None:
    await session.execute(update(OneTimeCodeRow).where(OneTimeCodeRow.id == id).values(attempts=OneTimeCodeRow.attempts + 1))


async def consume_code(session: AsyncSession, *, id: str, max_attempts: int | None = None) -> bool:
    """Mark the code used, once: False if it was used, expired, or exhausted its attempts."""
    query = update(OneTimeCodeRow).where(
        OneTimeCodeRow.id == id, OneTimeCodeRow.used_at.is_(None), OneTimeCodeRow.expires_at > datetime.now(timezone.utc)
    )
    if max_attempts is not None:
        query = query.where(OneTimeCodeRow.attempts < max_attempts)
    result = await session.execute(query.values(used_at=datetime.now(timezone.utc)))
    return result.rowcount == 1


async def revoke_codes(session: AsyncSession, *, purpose: str, connection: str, recipient: str) -> None:
    """A new code replaces the earlier live ones."""
    await session.execute(
        update(OneTimeCodeRow)
        .where(
            OneTimeCodeRow.purpose == purpose, OneTimeCodeRow.connection == connection,
            OneTimeCodeRow.recipient == recipient, OneTimeCodeRow.used_at.is_(None),
        )
        .values(used_at=datetime.now(timezone.utc))
    )
