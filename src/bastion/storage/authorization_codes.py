"""Repository: authorization codes (stored as digests, single use).

Written at every login and consumed at every code exchange: Core statements built once
(core_rows.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.core_rows import insert_row
from bastion.storage.records import AuthorizationCode, record_from_row
from bastion.storage.tables import AuthorizationCodeRow

__all__ = ["insert_authorization_code", "consume_authorization_code"]

_TABLE = AuthorizationCodeRow.__table__
_CONSUME = (
    update(_TABLE)
    .where(_TABLE.c.code_digest == bindparam("digest"), _TABLE.c.used_at.is_(None))
    .values(used_at=bindparam("now"), refresh_family_id=bindparam("family_id"))
    .returning(*_TABLE.c)
)
_SELECT = select(_TABLE).where(_TABLE.c.code_digest == bindparam("digest"))


async def insert_authorization_code(session: AsyncSession, **values) -> None:
    await insert_row(session, _TABLE, {"used_at": None, "refresh_family_id": None, **values})


async def consume_authorization_code(
    session: AsyncSession, *, code_digest: str, family_id: str
) -> tuple[AuthorizationCode | None, bool]:
    """Mark the code used and name the refresh-token family it may start.

    Returns (code, first_use); first_use is False on a replay, and then the code's
    `refresh_family_id` names what must be revoked. The first use is one statement
    (UPDATE ... RETURNING); only a replay or an unknown code reads the row.
    """
    now = datetime.now(timezone.utc)
    first = (await session.execute(_CONSUME, {"digest": code_digest, "now": now, "family_id": family_id})).mappings().first()
    if first is not None:
        return record_from_row(AuthorizationCode, first), True
    row = (await session.execute(_SELECT, {"digest": code_digest})).mappings().first()
    return (record_from_row(AuthorizationCode, row), False) if row else (None, False)
