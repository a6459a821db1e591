"""Repository: the outbox (table `deliveries`): emails and rules' queued HTTP requests.

An entry moves pending -> sending -> sent | logged | failed; a failed attempt moves it back
to pending with a later `next_attempt_at`. `claim` is a compare-and-set, so one entry is
attempted by one process at a time; a process that dies while sending leaves a lease that
expires, and the entry is attempted again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Delivery, record_from_row
from bastion.storage.tables import DeliveryRow

__all__ = [
    "STATES", "insert_delivery", "due_delivery_ids", "claim_delivery", "finish_delivery", "retry_delivery_later",
    "get_delivery", "list_deliveries", "deliveries_of_executions", "requeue_delivery", "next_due_at",
]

STATES = ("pending", "sending", "sent", "logged", "failed")
_table = DeliveryRow.__table__


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def insert_delivery(session: AsyncSession, **values: Any) -> Delivery:
    now = _now()
    row = {"state": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now, "lease_until": None,
           "last_status": None, "last_error": None, "completed_at": None, "summary": {}, "user_id": None,
           "rules_execution_id": None, **values}
    await session.execute(_table.insert().values(**row))
    return record_from_row(Delivery, row)


def _due(now: datetime):
    """Pending and due, or stuck in `sending` past its lease (its process died mid-attempt)."""
    return or_(
        (DeliveryRow.state == "pending") & (DeliveryRow.next_attempt_at <= now),
        (DeliveryRow.state == "sending") & (DeliveryRow.lease_until < now),
    )


async def due_delivery_ids(session: AsyncSession, *, limit: int) -> list[str]:
    now = _now()
    rows = await session.scalars(select(DeliveryRow.id).where(_due(now)).order_by(DeliveryRow.next_attempt_at).limit(limit))
    return list(rows)


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest pending entry (or lease) falls due."""
    pending = await session.scalar(select(DeliveryRow.next_attempt_at).where(DeliveryRow.state == "pending")
                                   .order_by(DeliveryRow.next_attempt_at).limit(1))
    leased = await session.scalar(select(DeliveryRow.lease_until).where(DeliveryRow.state == "sending")
                                  .order_by(DeliveryRow.lease_until).limit(1))
    return min((t for t in (pending, leased) if t is not None), default=None)


async def claim_delivery(session: AsyncSession, *, id: str, lease_seconds: float) -> Delivery | None:
    """Take the entry for one attempt, if it is still due: None when another process has it."""
    now = _now()
    row = (await session.execute(
        update(DeliveryRow).where(DeliveryRow.id == id, _due(now))
        .values(state="sending", lease_until=now + timedelta(seconds=lease_seconds), attempts=DeliveryRow.attempts + 1)
        .returning(*_table.c)
    )).mappings().first()
    return record_from_row(Delivery, row) if row else None


async def finish_delivery(session: AsyncSession, *, id: str, state: str, status: int | None = None, error: str | None = None) -> None:
    """The attempt ended for good: sent, logged (no SMTP server configured) or failed."""
    await session.execute(
        update(DeliveryRow).where(DeliveryRow.id == id, DeliveryRow.state == "sending")
        .values(state=state, lease_until=None, completed_at=_now(), last_status=status, last_error=error)
    )


async def retry_delivery_later(session: AsyncSession, *, id: str, at: datetime, status: int | None, error: str) -> None:
    await session.execute(
        update(DeliveryRow).where(DeliveryRow.id == id, DeliveryRow.state == "sending")
        .values(state="pending", lease_until=None, next_attempt_at=at, last_status=status, last_error=error)
    )


async def requeue_delivery(session: AsyncSession, *, id: str, max_attempts: int) -> Delivery | None:
    """A failed entry gets another round of attempts (an operator's retry)."""
    row = (await session.execute(
        update(DeliveryRow).where(DeliveryRow.id == id, DeliveryRow.state == "failed")
        .values(state="pending", next_attempt_at=_now(), completed_at=None, max_attempts=DeliveryRow.attempts + max_attempts)
        .returning(*_table.c)
    )).mappings().first()
    return record_from_row(Delivery, row) if row else None


async def get_delivery(session: AsyncSession, *, id: str) -> Delivery | None:
    row = (await session.execute(select(_table).where(DeliveryRow.id == id))).mappings().first()
    return record_from_row(Delivery, row) if row else None


async def list_deliveries(
    session: AsyncSession, *, page: int, per_page: int, state: str | None = None, kind: str | None = None,
    user_id: str | None = None, source: str | None = None,
) -> Page[Delivery]:
    """Newest first."""
    statement = select(DeliveryRow).order_by(DeliveryRow.created_at.desc(), DeliveryRow.id)
    for column, value in ((DeliveryRow.state, state), (DeliveryRow.kind, kind), (DeliveryRow.user_id, user_id),
                          (DeliveryRow.source, source)):
        if value is not None:
            statement = statement.where(column == value)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Delivery, r) for r in rows], start, per_page, total)


async def deliveries_of_executions(session: AsyncSession, *, execution_ids: list[str]) -> list[Delivery]:
    if not execution_ids:
        return []
    rows = (await session.execute(
        select(_table).where(DeliveryRow.rules_execution_id.in_(execution_ids)).order_by(DeliveryRow.created_at)
    )).mappings().all()
    return [record_from_row(Delivery, r) for r in rows]
