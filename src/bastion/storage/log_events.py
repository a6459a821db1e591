"""Repository: the tenant log (Auth0's log event shape and type codes)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.handles import new_id
from bastion.storage.core_rows import insert_row
from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import LogEvent, record_from_row
from bastion.storage.tables import LogEventRow

__all__ = ["insert_log_event", "list_log_events", "log_events_after", "get_log_event", "SEARCHABLE_FIELDS"]

# The log fields a search may name (Auth0's log search), each an exact match.
SEARCHABLE_FIELDS = ("log_id", "type", "user_id", "user_name", "client_id", "client_name", "connection", "ip")


async def insert_log_event(session: AsyncSession, *, type: str, **values: Any) -> LogEvent:
    now = datetime.now(timezone.utc)
    log_id = f"{int(now.timestamp() * 1000):016d}{new_id(length=12)}"
    values.setdefault("details", {})
    # One per login, code exchange and refresh: a Core INSERT (core_rows.py).
    row = await insert_row(session, LogEventRow.__table__, {"log_id": log_id, "date": now, "type": type, **values})
    return record_from_row(LogEvent, row)


async def get_log_event(session: AsyncSession, *, log_id: str) -> LogEvent | None:
    row = await session.scalar(select(LogEventRow).where(LogEventRow.log_id == log_id))
    return record_from_row(LogEvent, row) if row else None


def _filtered(statement, *, equals: dict[str, list[str]], since: datetime | None, until: datetime | None):
    for name, values in equals.items():
        column = getattr(LogEventRow, name)
        statement = statement.where(column == values[0] if len(values) == 1 else column.in_(values))
    if since is not None:
        statement = statement.where(LogEventRow.date >= since)
    if until is not None:
        statement = statement.where(LogEventRow.date <= until)
    return statement


async def list_log_events(
    session: AsyncSession, *, page: int, per_page: int, user_id: str | None = None, type: str | None = None,
    equals: dict[str, list[str]] | None = None, since: datetime | None = None, until: datetime | None = None,
) -> Page[LogEvent]:
    """Newest first. `equals`: field -> accepted values (one of them must match); `since`/`until`: dates."""
    equals = dict(equals or {})
    if user_id:
        equals["user_id"] = [user_id]
    if type:
        equals["type"] = [type]
    statement = _filtered(select(LogEventRow).order_by(LogEventRow.seq.desc()), equals=equals, since=since, until=until)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(LogEvent, r) for r in rows], start, per_page, total)


async def log_events_after(
    session: AsyncSession, *, log_id: str | None, take: int, equals: dict[str, list[str]] | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> list[LogEvent] | None:
    """Auth0's checkpoint: the `take` events that follow `log_id`, oldest first (None when `log_id`
    is unknown); without `log_id`, the `take` newest."""
    statement = _filtered(select(LogEventRow), equals=dict(equals or {}), since=since, until=until)
    if log_id is None:
        rows = await session.scalars(statement.order_by(LogEventRow.seq.desc()).limit(take))
        return [record_from_row(LogEvent, r) for r in rows]
    after = await session.scalar(select(LogEventRow.seq).where(LogEventRow.log_id == log_id))
    if after is None:
        return None
    rows = await session.scalars(statement.where(LogEventRow.seq > after).order_by(LogEventRow.seq).limit(take))
    return [record_from_row(LogEvent, r) for r in rows]
