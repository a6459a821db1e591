"""Repository: failed login counters per (user, IP) for brute-force protection."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.tables import LoginAttemptRow

__all__ = ["failures", "record_failure", "clear_failures", "clear_user_blocks", "list_user_blocks"]


async def failures(session: AsyncSession, *, user_id: str, ip: str) -> tuple[int, bool]:
    """(failures counted, blocked) for this user and address."""
    row = await session.get(LoginAttemptRow, (user_id, ip))
    return (row.failures, row.blocked) if row else (0, False)


async def record_failure(session: AsyncSession, *, user_id: str, ip: str, max_attempts: int) -> bool:
    """Count one failure; True when this pair is now blocked."""
    now = datetime.now(timezone.utc)
    row = await session.get(LoginAttemptRow, (user_id, ip), with_for_update=True)
    if row is None:
        row = LoginAttemptRow(user_id=user_id, ip=ip, failures=0, blocked=False, updated_at=now)
        session.add(row)
    row.failures += 1
    row.updated_at = now
    if row.failures >= max_attempts:
        row.blocked = True
    await session.flush()
    return row.blocked


async def clear_failures(session: AsyncSession, *, user_id: str, ip: str) -> None:
    await session.execute(
        delete(LoginAttemptRow).where(LoginAttemptRow.user_id == user_id, LoginAttemptRow.ip == ip)
    )


async def clear_user_blocks(session: AsyncSession, *, user_id: str) -> None:
    await session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.user_id == user_id))


async def list_user_blocks(session: AsyncSession, *, user_id: str) -> list[str]:
    rows = await session.scalars(
        select(LoginAttemptRow).where(LoginAttemptRow.user_id == user_id, LoginAttemptRow.blocked.is_(True))
    )
    return [r.ip for r in rows]
