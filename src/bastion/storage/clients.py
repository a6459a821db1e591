"""Repository: clients (applications) and client grants."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Client, ClientGrant, record_from_row
from bastion.storage.tables import ClientGrantRow, ClientRow

__all__ = [
    "insert_client",
    "get_client",
    "list_clients",
    "update_client",
    "delete_client",
    "insert_client_grant",
    "get_client_grant",
    "find_client_grant",
    "list_client_grants",
    "update_client_grant",
    "delete_client_grant",
]


async def insert_client(session: AsyncSession, **values: Any) -> Client:
    now = datetime.now(timezone.utc)
    row = ClientRow(created_at=now, updated_at=now, **values)
    session.add(row)
    await session.flush()
    return record_from_row(Client, row)


async def get_client(session: AsyncSession, *, client_id: str) -> Client | None:
    row = await session.get(ClientRow, client_id)
    return record_from_row(Client, row) if row else None


async def list_clients(session: AsyncSession, *, page: int, per_page: int) -> Page[Client]:
    rows, start, total = await fetch_page(
        session, select(ClientRow).order_by(ClientRow.created_at, ClientRow.client_id), page=page, per_page=per_page
    )
    return Page([record_from_row(Client, r) for r in rows], start, per_page, total)


async def update_client(session: AsyncSession, *, client_id: str, changes: dict[str, Any]) -> Client | None:
    row = await session.get(ClientRow, client_id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = datetime.now(timezone.utc)
    await session.flush()
    return record_from_row(Client, row)


async def delete_client(session: AsyncSession, *, client_id: str) -> bool:
    result = await session.execute(delete(ClientRow).where(ClientRow.client_id == client_id))
    return result.rowcount > 0


async def insert_client_grant(session: AsyncSession, *, id: str, client_id: str, audience: str, scope: list[str]) -> ClientGrant:
    row = ClientGrantRow(id=id, client_id=client_id, audience=audience, scope=scope)
    session.add(row)
    await session.flush()
    return record_from_row(ClientGrant, row)


async def get_client_grant(session: AsyncSession, *, id: str) -> ClientGrant | None:
    row = await session.get(ClientGrantRow, id)
    return record_from_row(ClientGrant, row) if row else None


async def find_client_grant(session: AsyncSession, *, client_id: str, audience: str) -> ClientGrant | None:
    row = await session.scalar(
        select(ClientGrantRow).where(ClientGrantRow.client_id == client_id, ClientGrantRow.audience == audience)
    )
    return record_from_row(ClientGrant, row) if row else None


async def list_client_grants(
    session: AsyncSession, *, page: int, per_page: int, client_id: str | None = None, audience: str | None = None
) -> Page[ClientGrant]:
    statement = select(ClientGrantRow).order_by(ClientGrantRow.id)
    if client_id:
        statement = statement.where(ClientGrantRow.client_id == client_id)
    if audience:
        statement = statement.where(ClientGrantRow.audience == audience)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(ClientGrant, r) for r in rows], start, per_page, total)


async def update_client_grant(session: AsyncSession, *, id: str, scope: list[str]) -> ClientGrant | None:
    row = await session.get(ClientGrantRow, id)
    if row is None:
        return None
    row.scope = scope
    await session.flush()
    return record_from_row(ClientGrant, row)


async def delete_client_grant(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(ClientGrantRow).where(ClientGrantRow.id == id))
    return result.rowcount > 0
