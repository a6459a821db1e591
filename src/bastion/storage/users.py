"""Repository: users and their identities."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Identity, User, record_from_row
from bastion.storage.tables import IdentityRow, UserRow

__all__ = [
    "insert_user",
    "get_user",
    "find_user_by_login",
    "find_user_by_phone",
    "find_users_by_email",
    "missing_users",
    "list_users",
    "update_user",
    "delete_user",
    "record_login",
    "delete_connection_users",
]


async def _identities(session: AsyncSession, user_ids: list[str]) -> dict[str, list[Identity]]:
    by_user: dict[str, list[Identity]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return by_user
    rows = await session.scalars(select(IdentityRow).where(IdentityRow.user_id.in_(user_ids)).order_by(IdentityRow.id))
    for row in rows:
        by_user[row.user_id].append(record_from_row(Identity, row))
    return by_user


async def _user(session: AsyncSession, row: UserRow | None) -> User | None:
    if row is None:
        return None
    identities = await _identities(session, [row.user_id])
    return record_from_row(User, row, identities=identities[row.user_id])


async def insert_user(session: AsyncSession, *, user_id: str, identity: Identity, **values: Any) -> User:
    """Insert a user and its first identity. Raises IntegrityError when the email or username is taken."""
    now = datetime.now(timezone.utc)
    row = UserRow(user_id=user_id, created_at=now, updated_at=now, **values)
    session.add(row)
    await session.flush()
    session.add(
        IdentityRow(
            user_id=user_id,
            provider=identity.provider,
            connection=identity.connection,
            external_id=identity.external_id,
            is_social=identity.is_social,
            profile_data=identity.profile_data,
        )
    )
    await session.flush()
    return await _user(session, row)


async def get_user(session: AsyncSession, *, user_id: str) -> User | None:
    return await _user(session, await session.get(UserRow, user_id))


async def find_user_by_login(session: AsyncSession, *, connection: str, login: str) -> User | None:
    """The user of `connection` whose email (case-insensitive) or username is `login`."""
    login = login.strip()
    row = await session.scalar(
        select(UserRow).where(
            UserRow.connection == connection,
            or_(UserRow.email == login.lower(), UserRow.username == login),
        )
    )
    return await _user(session, row)


async def find_user_by_phone(session: AsyncSession, *, connection: str, phone_number: str) -> User | None:
    """The (oldest) user of `connection` with this phone number: passwordless SMS logins."""
    row = await session.scalar(
        select(UserRow)
        .where(UserRow.connection == connection, UserRow.phone_number == phone_number)
        .order_by(UserRow.created_at)
        .limit(1)
    )
    return await _user(session, row)


async def find_users_by_email(session: AsyncSession, *, email: str) -> list[User]:
    rows = (await session.scalars(select(UserRow).where(UserRow.email == email.strip().lower()))).all()
    identities = await _identities(session, [r.user_id for r in rows])
    return [record_from_row(User, r, identities=identities[r.user_id]) for r in rows]


async def missing_users(session: AsyncSession, *, user_ids: list[str]) -> list[str]:
    """Those of `user_ids` that name no user."""
    wanted = list(dict.fromkeys(user_ids))
    found = set((await session.scalars(select(UserRow.user_id).where(UserRow.user_id.in_(wanted)))).all())
    return [u for u in wanted if u not in found]


async def list_users(
    session: AsyncSession, *, page: int, per_page: int, email: str | None = None, connection: str | None = None
) -> Page[User]:
    statement = select(UserRow).order_by(UserRow.created_at, UserRow.user_id)
    if email:
        statement = statement.where(UserRow.email == email.lower())
    if connection:
        statement = statement.where(UserRow.connection == connection)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    identities = await _identities(session, [r.user_id for r in rows])
    return Page([record_from_row(User, r, identities=identities[r.user_id]) for r in rows], start, per_page, total)


async def update_user(session: AsyncSession, *, user_id: str, changes: dict[str, Any]) -> User | None:
    row = await session.get(UserRow, user_id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = datetime.now(timezone.utc)
    await session.flush()
    return await _user(session, row)


async def delete_user(session: AsyncSession, *, user_id: str) -> bool:
    await session.execute(delete(IdentityRow).where(IdentityRow.user_id == user_id))
    result = await session.execute(delete(UserRow).where(UserRow.user_id == user_id))
    return result.rowcount > 0


async def delete_connection_users(session: AsyncSession, *, connection: str) -> int:
    """Delete every user whose primary identity is in `connection` (Auth0 does so with the connection)."""
    user_ids = select(UserRow.user_id).where(UserRow.connection == connection)
    await session.execute(delete(IdentityRow).where(IdentityRow.user_id.in_(user_ids)))
    result = await session.execute(delete(UserRow).where(UserRow.connection == connection))
    return result.rowcount


async def record_login(session: AsyncSession, *, user_id: str, ip: str | None) -> None:
    """Count a successful login (atomically, so concurrent logins are all counted)."""
    now = datetime.now(timezone.utc)
    await session.execute(
        update(UserRow)
        .where(UserRow.user_id == user_id)
        .values(logins_count=func.coalesce(UserRow.logins_count, 0) + 1, last_login=now, last_ip=ip)
    )
