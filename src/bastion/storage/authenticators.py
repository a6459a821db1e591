"""Repository: enrolled MFA authenticators and remembered browsers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import Authenticator, record_from_row
from bastion.storage.tables import AuthenticatorRow, RememberedBrowserRow

__all__ = [
    "insert_authenticator",
    "list_authenticators",
    "get_authenticator",
    "confirm_authenticator",
    "use_authenticator",
    "delete_authenticator",
    "delete_user_authenticators",
    "remember_browser",
    "is_browser_remembered",
    "forget_browsers",
]


async def insert_authenticator(session: AsyncSession, **values: Any) -> Authenticator:
    row = AuthenticatorRow(created_at=datetime.now(timezone.utc), last_used_at=None, **values)
    session.add(row)
    await session.flush()
    return record_from_row(Authenticator, row)


async def list_authenticators(session: AsyncSession, *, user_id: str, confirmed_only: bool = True) -> list[Authenticator]:
    query = select(AuthenticatorRow).where(AuthenticatorRow.user_id == user_id)
    if confirmed_only:
        query = query.where(AuthenticatorRow.confirmed.is_(True))
    rows = (await session.scalars(query.order_by(AuthenticatorRow.created_at, AuthenticatorRow.id))).all()
    return [record_from_row(Authenticator, row) for row in rows]


async def get_authenticator(session: AsyncSession, *, id: str) -> Authenticator | None:
    row = await session.get(AuthenticatorRow, id, populate_existing=True)
    return record_from_row(Authenticator, row) if row else None


async def confirm_authenticator(session: AsyncSession, *, id: str, **changes: Any) -> bool:
    result = await session.execute(
        update(AuthenticatorRow).where(AuthenticatorRow.id == id).values(confirmed=True, last_used_at=datetime.now(timezone.utc), **changes)
    )
    return result.rowcount == 1


async def use_authenticator(session: AsyncSession, *, id: str, expected_last_used: datetime | None = None, **changes: Any) -> bool:
    """Record a use; with `expected_last_used`, only if nobody used it since (no replays across processes)."""
    query = update(AuthenticatorRow).where(AuthenticatorRow.id == id)
    if expected_last_used is not None:
        query = query.where(AuthenticatorRow.last_used_at == expected_last_used)
    result = await session.execute(query.values(last_used_at=datetime.now(timezone.utc), **changes))
    return result.rowcount == 1


async def delete_authenticator(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(AuthenticatorRow).where(AuthenticatorRow.id == id))
    return result.rowcount == 1


async def delete_user_authenticators(session: AsyncSession, *, user_id: str, types: list[str] | None = None, unconfirmed_only: bool = False) -> None:
    query = delete(AuthenticatorRow).where(AuthenticatorRow.user_id == user_id)
    if types is not None:
        query = query.where(AuthenticatorRow.type.in_(types))
    if unconfirmed_only:
        query = query.where(AuthenticatorRow.confirmed.is_(False))
    await session.execute(query)


async def remember_browser(session: AsyncSession, *, handle_digest: str, user_id: str, browser_digest: str, expires_at: datetime) -> None:
    await session.execute(
        delete(RememberedBrowserRow).where(RememberedBrowserRow.handle_digest == handle_digest, RememberedBrowserRow.user_id == user_id)
    )
    session.add(
        RememberedBrowserRow(
            handle_digest=handle_digest, user_id=user_id, browser_digest=browser_digest,
            created_at=datetime.now(timezone.utc), expires_at=expires_at,
        )
    )
    await session.flush()


async def is_browser_remembered(session: AsyncSession, *, handle_digest: str, user_id: str, browser_digest: str) -> bool:
    row = await session.get(RememberedBrowserRow, (handle_digest, user_id))
    return row is not None and row.browser_digest == browser_digest and row.expires_at > datetime.now(timezone.utc)


async def forget_browsers(session: AsyncSession, *, user_id: str) -> None:
    """Auth0's "invalidate remember browser": every remembered browser of the user asks again."""
    await session.execute(delete(RememberedBrowserRow).where(RememberedBrowserRow.user_id == user_id))
