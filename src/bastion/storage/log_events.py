"""Repository: the tenant log (Auth0's log event shape and type codes)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.handles import new_id
from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import LogEvent, record_from_row
from bastion.storage.tables import LogEventRow

__all__ = ["insert_log_event", "list_log_events", "get_log_event"]


async def insert_log_event(session: AsyncSession, *, type: str, **values: Any) -> LogEvent:
    now = datetime.now(timezone.utc)
    log_id = f"{int(now.timestamp() * 1000):016d}{new_id(length=12)}"
    values.setdefault("details", {})
    row = LogEventRow(log_id=log_id, date=now, type=type, **values)
    session.add(row)
    await session.flush()
    return record_from_row(LogEvent, row)


async def get_log_event(session: AsyncSession, *, log_id: str) -> LogEvent | None:
    row = await session.scalar(select(LogEventRow).where(LogEventRow.log_id == log_id))
    return record_from_row(LogEvent, row) if row else None


async def list_log_events(
    session: AsyncSession, *, page: int, per_page: int, user_id: str | None = None, type: str | None = None
) -> Page[LogEvent]:
    statement = select(LogEventRow).order_by(LogEventRow.seq.desc())
    if user_id:
        statement = statement.where(LogEventRow.user_id == user_id)
    if type:
        statement = statement.where(LogEventRow.type == type)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(LogEvent, r) for r in rows], start, per_page, total)
