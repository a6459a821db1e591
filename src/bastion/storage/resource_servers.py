"""Repository: resource servers (APIs)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import ResourceServer, record_from_row
from bastion.storage.tables import ResourceServerRow

__all__ = [
    "insert_resource_server",
    "get_resource_server",
    "find_resource_server",
    "list_resource_servers",
    "update_resource_server",
    "delete_resource_server",
]


async def insert_resource_server(session: AsyncSession, **values: Any) -> ResourceServer:
    row = ResourceServerRow(created_at=datetime.now(timezone.utc), **values)
    session.add(row)
    await session.flush()
    return record_from_row(ResourceServer, row)


async def get_resource_server(session: AsyncSession, *, id: str) -> ResourceServer | None:
    """By id, or by identifier (Auth0 accepts either in the path)."""
    row = await session.get(ResourceServerRow, id)
    if row is None:
        row = await session.scalar(select(ResourceServerRow).where(ResourceServerRow.identifier == id))
    return record_from_row(ResourceServer, row) if row else None


async def find_resource_server(session: AsyncSession, *, identifier: str) -> ResourceServer | None:
    row = await session.scalar(select(ResourceServerRow).where(ResourceServerRow.identifier == identifier))
    return record_from_row(ResourceServer, row) if row else None


async def list_resource_servers(session: AsyncSession, *, page: int, per_page: int) -> Page[ResourceServer]:
    statement = select(ResourceServerRow).order_by(ResourceServerRow.created_at, ResourceServerRow.id)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(ResourceServer, r) for r in rows], start, per_page, total)


async def update_resource_server(session: AsyncSession, *, id: str, changes: dict[str, Any]) -> ResourceServer | None:
    row = await session.get(ResourceServerRow, id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    await session.flush()
    return record_from_row(ResourceServer, row)


async def delete_resource_server(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(ResourceServerRow).where(ResourceServerRow.id == id))
    return result.rowcount > 0
