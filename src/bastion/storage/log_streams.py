"""Repository: log streams (Auth0's /api/v2/log-streams) and how far each got in the tenant log.

A stream's `position` is the last `log_events.seq` it is done with (delivered, or filtered out).
Delivery is claimed with a compare-and-set lease (`claim_log_stream`), and the outcome is written
by `release_log_stream` only while that lease is still the one taken, so two processes never
deliver one stream at once, and a process whose lease ran out cannot move a position it no
longer owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import LogEvent, LogStream, record_from_row
from bastion.storage.tables import LogEventRow, LogStreamRow

__all__ = [
    "TypeFilter",
    "SequencedEvent",
    "insert_log_stream",
    "get_log_stream",
    "list_log_streams",
    "update_log_stream",
    "delete_log_stream",
    "last_log_seq",
    "count_pending_events",
    "due_log_streams",
    "earliest_retry",
    "has_events_after",
    "claim_log_stream",
    "release_log_stream",
    "settled_horizon",
    "stream_events",
]


@dataclass(frozen=True)
class TypeFilter:
    """The events a stream selects: these type codes, and with `others` every code not in `categorized`."""

    types: frozenset[str]
    others: bool
    categorized: frozenset[str]


@dataclass(frozen=True)
class SequencedEvent:
    """A log event and its place in the log."""

    seq: int
    event: LogEvent


async def insert_log_stream(session: AsyncSession, **values: Any) -> LogStream:
    now = datetime.now(timezone.utc)
    row = LogStreamRow(created_at=now, updated_at=now, failures=0, **values)
    session.add(row)
    await session.flush()
    return record_from_row(LogStream, row)


async def get_log_stream(session: AsyncSession, *, id: str) -> LogStream | None:
    row = await session.get(LogStreamRow, id)
    return record_from_row(LogStream, row) if row else None


async def list_log_streams(session: AsyncSession) -> list[LogStream]:
    rows = await session.scalars(select(LogStreamRow).order_by(LogStreamRow.created_at, LogStreamRow.id))
    return [record_from_row(LogStream, r) for r in rows]


async def update_log_stream(session: AsyncSession, *, id: str, **values: Any) -> LogStream | None:
    values["updated_at"] = datetime.now(timezone.utc)
    result = await session.execute(update(LogStreamRow).where(LogStreamRow.id == id).values(**values))
    if result.rowcount != 1:
        return None
    session.expire_all()
    return await get_log_stream(session, id=id)


async def delete_log_stream(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(LogStreamRow).where(LogStreamRow.id == id))
    return result.rowcount == 1


async def last_log_seq(session: AsyncSession, *, before: datetime | None = None) -> int:
    """The current end of the log (0 when it is empty): where a new stream starts; with `before`,
    the last event logged before that moment (a stream created with Auth0's `startFrom`)."""
    statement = select(func.max(LogEventRow.seq))
    if before is not None:
        statement = statement.where(LogEventRow.date < before)
    return await session.scalar(statement) or 0


def _selected(statement, selection: TypeFilter | None):
    if selection is None:
        return statement
    conditions = []
    if selection.types:
        conditions.append(LogEventRow.type.in_(sorted(selection.types)))
    if selection.others:
        conditions.append(LogEventRow.type.not_in(sorted(selection.categorized)))
    return statement.where(or_(*conditions)) if conditions else statement.where(false())


async def count_pending_events(session: AsyncSession, *, position: int, selection: TypeFilter | None) -> int:
    """How many events a stream selects past its position."""
    statement = _selected(select(func.count()).select_from(LogEventRow).where(LogEventRow.seq > position), selection)
    return await session.scalar(statement) or 0


def _free_and_due(now: datetime):
    return (
        LogStreamRow.status == "active",
        or_(LogStreamRow.next_attempt_at.is_(None), LogStreamRow.next_attempt_at <= now),
        or_(LogStreamRow.lease_until.is_(None), LogStreamRow.lease_until < now),
    )


async def due_log_streams(session: AsyncSession, *, now: datetime) -> list[LogStream]:
    """Active streams whose retry time has come and whose lease is free."""
    rows = await session.scalars(select(LogStreamRow).where(*_free_and_due(now)).order_by(LogStreamRow.id))
    return [record_from_row(LogStream, r) for r in rows]


async def earliest_retry(session: AsyncSession, *, now: datetime) -> datetime | None:
    """The soonest future retry of an active stream (None when none is waiting)."""
    return await session.scalar(
        select(func.min(LogStreamRow.next_attempt_at)).where(LogStreamRow.status == "active", LogStreamRow.next_attempt_at > now)
    )


async def has_events_after(session: AsyncSession, *, position: int) -> bool:
    """Whether the log holds anything past `position` (checked before taking a lease, so an idle
    stream costs one indexed read per look and no write)."""
    return await session.scalar(select(LogEventRow.seq).where(LogEventRow.seq > position).limit(1)) is not None


async def claim_log_stream(session: AsyncSession, *, id: str, now: datetime, lease_until: datetime) -> LogStream | None:
    """Take the stream's lease if it is free and the stream is due; the stream as it is now (its
    position may have moved since it was listed), or None when another process holds it."""
    result = await session.execute(
        update(LogStreamRow).where(LogStreamRow.id == id, *_free_and_due(now)).values(lease_until=lease_until)
    )
    if result.rowcount != 1:
        return None
    session.expire_all()
    return await get_log_stream(session, id=id)


async def release_log_stream(
    session: AsyncSession, *, id: str, lease_until: datetime, suspend: bool = False, **values: Any
) -> bool:
    """Write a delivery's outcome and free the lease, if the lease taken is still held (False when
    it ran out and the stream may belong to another process now). `suspend` moves an active stream
    to `suspended` (a stream paused meanwhile stays paused)."""
    held = (LogStreamRow.id == id, LogStreamRow.lease_until == lease_until)
    result = await session.execute(update(LogStreamRow).where(*held).values(lease_until=None, **values))
    if result.rowcount != 1:
        return False
    if suspend:
        await session.execute(
            update(LogStreamRow).where(LogStreamRow.id == id, LogStreamRow.status == "active").values(status="suspended")
        )
    return True


async def settled_horizon(session: AsyncSession, *, after: int, scan: int, settled_before: datetime) -> tuple[int, bool]:
    """How far past `after` the log can be read without skipping an event still being committed.

    On PostgreSQL a `seq` is taken when a row is inserted but seen only once its transaction
    commits, so seq 11 may be visible while 10 is not yet. Reading past such a gap would move a
    stream's position over 10 for good. So the scan stops before a missing seq, unless the event
    after the gap was written before `settled_before`: a transaction that long gone rolled back
    (its seq will never appear). Returns (horizon, more): `more` when the scan stopped at its size
    (there is more to read at once), not at a gap (worth waiting for)."""
    rows = (await session.execute(
        select(LogEventRow.seq, LogEventRow.date).where(LogEventRow.seq > after).order_by(LogEventRow.seq).limit(scan)
    )).all()
    horizon = after
    for seq, date in rows:
        if seq != horizon + 1 and date > settled_before:
            return horizon, False
        horizon = seq
    return horizon, len(rows) == scan


async def stream_events(
    session: AsyncSession, *, after: int, through: int, selection: TypeFilter | None, limit: int
) -> list[SequencedEvent]:
    """The events in (after, through] that a stream selects (filters applied here, in SQL), in log order."""
    statement = select(LogEventRow).where(LogEventRow.seq > after, LogEventRow.seq <= through)
    rows = await session.scalars(_selected(statement, selection).order_by(LogEventRow.seq).limit(limit))
    return [SequencedEvent(row.seq, record_from_row(LogEvent, row)) for row in rows]
