"""Repository: connections (where users come from)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Connection, record_from_row
from bastion.storage.tables import ConnectionRow

__all__ = [
    "insert_connection",
    "get_connection",
    "find_connection",
    "list_connections",
    "update_connection",
    "delete_connection",
]


async def insert_connection(session: AsyncSession, **values: Any) -> Connection:
    row = ConnectionRow(created_at=datetime.now(timezone.utc), **values)
    session.add(row)
    await session.flush()
    return record_from_row(Connection, row)


async def get_connection(session: AsyncSession, *, id: str) -> Connection | None:
    row = await session.get(ConnectionRow, id)
    return record_from_row(Connection, row) if row else None


async def find_connection(session: AsyncSession, *, name: str) -> Connection | None:
    row = await session.scalar(select(ConnectionRow).where(ConnectionRow.name == name))
    return record_from_row(Connection, row) if row else None


async def list_connections(
    session: AsyncSession, *, page: int, per_page: int, strategies: list[str] | None = None, name: str | None = None
) -> Page[Connection]:
    statement = select(ConnectionRow).order_by(ConnectionRow.created_at, ConnectionRow.id)
    if strategies:
        statement = statement.where(ConnectionRow.strategy.in_(strategies))
    if name:
        statement = statement.where(ConnectionRow.name == name)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Connection, r) for r in rows], start, per_page, total)


async def update_connection(session: AsyncSession, *, id: str, changes: dict[str, Any]) -> Connection | None:
    row = await session.get(ConnectionRow, id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    await session.flush()
    return record_from_row(Connection, row)


async def delete_connection(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(ConnectionRow).where(ConnectionRow.id == id))
    return result.rowcount > 0
