"""Repository: login transactions. State changes are compare-and-set on the current state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import LoginTransactionRecord, record_from_row
from bastion.storage.tables import LoginTransactionRow

__all__ = ["insert_login_transaction", "get_login_transaction", "advance_login_transaction"]


async def insert_login_transaction(session: AsyncSession, **values: Any) -> LoginTransactionRecord:
    now = datetime.now(timezone.utc)
    row = LoginTransactionRow(created_at=now, updated_at=now, **values)
    session.add(row)
    await session.flush()
    return record_from_row(LoginTransactionRecord, row)


async def get_login_transaction(session: AsyncSession, *, id: str) -> LoginTransactionRecord | None:
    row = await session.get(LoginTransactionRow, id, populate_existing=True)
    return record_from_row(LoginTransactionRecord, row) if row else None


async def advance_login_transaction(
    session: AsyncSession, *, id: str, expected_state: str, changes: dict[str, Any]
) -> bool:
    """Apply `changes` only if the transaction is still in `expected_state` (False otherwise)."""
    result = await session.execute(
        update(LoginTransactionRow)
        .where(LoginTransactionRow.id == id, LoginTransactionRow.state == expected_state)
        .values(updated_at=datetime.now(timezone.utc), **changes)
    )
    return result.rowcount == 1
