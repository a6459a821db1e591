"""Inserting rows that may already be there, on both databases, in one statement.

Assigning a role or a permission twice is not an error in Auth0's API; `ON CONFLICT DO
NOTHING` makes the second assignment (or two racing ones, on two processes) a no-op
instead of a unique-violation, without a read first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["insert_missing"]


async def insert_missing(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` into `table` (an ORM class), skipping those whose key is already stored."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(insert(table).values(rows).on_conflict_do_nothing())
