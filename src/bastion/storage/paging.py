"""Offset pagination shared by the list repositories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Page", "fetch_page"]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    start: int
    limit: int
    total: int


async def fetch_page(session: AsyncSession, statement: Select, *, page: int, per_page: int) -> tuple[list, int, int]:
    """Rows of one page, the offset and the total count of the unpaginated statement."""
    total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    offset = page * per_page
    rows = (await session.scalars(statement.offset(offset).limit(per_page))).all()
    return list(rows), offset, int(total or 0)
