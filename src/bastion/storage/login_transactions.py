"""Repository: login transactions. State changes are compare-and-set on the current state.

Every browser login writes and reads these several times: Core statements built once
(core_rows.py).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.core_rows import insert_row
from bastion.storage.records import LoginTransactionRecord, record_from_row
from bastion.storage.tables import LoginTransactionRow

__all__ = ["insert_login_transaction", "get_login_transaction", "advance_login_transaction"]

_TABLE = LoginTransactionRow.__table__
_SELECT = select(_TABLE).where(_TABLE.c.id == bindparam("transaction_id"))
# The columns to set come from the execution's parameters (SQLAlchemy's Core UPDATE).
_ADVANCE = update(_TABLE).where(_TABLE.c.id == bindparam("transaction_id"), _TABLE.c.state == bindparam("expected_state"))


async def insert_login_transaction(session: AsyncSession, **values: Any) -> LoginTransactionRecord:
    now = datetime.now(timezone.utc)
    row = await insert_row(session, _TABLE, {"created_at": now, "updated_at": now, **values})
    return record_from_row(LoginTransactionRecord, row)


async def get_login_transaction(session: AsyncSession, *, id: str) -> LoginTransactionRecord | None:
    row = (await session.execute(_SELECT, {"transaction_id": id})).mappings().first()
    return record_from_row(LoginTransactionRecord, row) if row else None


async def advance_login_transaction(
    session: AsyncSession, *, id: str, expected_state: str, changes: dict[str, Any]
) -> bool:
    """Apply `changes` only if the transaction is still in `expected_state` (False otherwise)."""
    result = await session.execute(
        _ADVANCE, {"transaction_id": id, "expected_state": expected_state, **changes, "updated_at": datetime.now(timezone.utc)}
    )
    return result.rowcount == 1
