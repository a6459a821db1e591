"""Repository: consent grants (what a user allowed an application to have, per audience)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.handles import new_id
from bastion.storage.records import UserGrant, record_from_row
from bastion.storage.tables import UserGrantRow

__all__ = ["get_user_grant", "save_user_grant", "list_user_grants", "delete_user_grant", "delete_user_grants_for"]


async def get_user_grant(session: AsyncSession, *, user_id: str, client_id: str, audience: str) -> UserGrant | None:
    row = await session.scalar(
        select(UserGrantRow).where(UserGrantRow.user_id == user_id, UserGrantRow.client_id == client_id, UserGrantRow.audience == audience)
    )
    return record_from_row(UserGrant, row) if row else None


async def save_user_grant(session: AsyncSession, *, user_id: str, client_id: str, audience: str, scope: list[str]) -> UserGrant:
    """Create the grant, or widen it to also hold `scope`."""
    now = datetime.now(timezone.utc)
    row = await session.scalar(
        select(UserGrantRow).where(UserGrantRow.user_id == user_id, UserGrantRow.client_id == client_id, UserGrantRow.audience == audience)
    )
    if row is None:
        row = UserGrantRow(id=new_id("cgr_", 16), user_id=user_id, client_id=client_id, audience=audience, scope=list(scope), created_at=now, updated_at=now)
        session.add(row)
    else:
        row.scope = list(dict.fromkeys([*row.scope, *scope]))
        row.updated_at = now
    await session.flush()
    return record_from_row(UserGrant, row)


async def list_user_grants(session: AsyncSession, *, user_id: str | None = None, client_id: str | None = None, audience: str | None = None) -> list[UserGrant]:
    query = select(UserGrantRow)
    if user_id is not None:
        query = query.where(UserGrantRow.user_id == user_id)
    if client_id is not None:
        query = query.where(UserGrantRow.client_id == client_id)
    if audience is not None:
        query = query.where(UserGrantRow.audience == audience)
    rows = (await session.scalars(query.order_by(UserGrantRow.created_at, UserGrantRow.id))).all()
    return [record_from_row(UserGrant, row) for row in rows]


async def delete_user_grant(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(UserGrantRow).where(UserGrantRow.id == id))
    return result.rowcount == 1


async def delete_user_grants_for(session: AsyncSession, *, user_id: str) -> int:
    result = await session.execute(delete(UserGrantRow).where(UserGrantRow.user_id == user_id))
    return result.rowcount
