"""Repository: users and their identities.

Account linking (docs/identities.md): a linked secondary user keeps its row with `linked_to`
naming its primary. The primary's `identities` are its own, then each secondary's (oldest
link first) with that secondary's profile as `profile_data`. Secondaries are left out of
the lists (`list_users`, `find_users_by_email`, `missing_users`); `get_user` and
`find_user_by_login` still find them, since their credentials still work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
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
    "find_users_by_identity",
    "lock_users",
    "has_linked_users",
    "set_linked_to",
    "linked_user_ids",
    "PROFILE_DATA_FIELDS",
]

# The profile fields a secondary identity shows as its `profileData` (Auth0's names).
PROFILE_DATA_FIELDS = (
    "email", "email_verified", "name", "given_name", "family_name", "nickname", "picture", "username",
    "phone_number", "phone_verified",
)


async def _identities(session: AsyncSession, user_ids: list[str]) -> dict[str, list[Identity]]:
    """Each user's identities: its own (in creation order), then those of the users linked to
    it (oldest link first), which carry that user's profile. One query."""
    by_user: dict[str, list[Identity]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return by_user
    rows = (
        await session.execute(
            select(IdentityRow, UserRow)
            .join(UserRow, UserRow.user_id == IdentityRow.user_id)
            .where(or_(IdentityRow.user_id.in_(user_ids), UserRow.linked_to.in_(user_ids)))
            .order_by(IdentityRow.id)
        )
    ).all()
    linked = []
    for identity, owner in rows:
        if owner.user_id in by_user:
            by_user[owner.user_id].append(record_from_row(Identity, identity))
        if owner.linked_to in by_user:  # also when the secondary itself was asked for
            linked.append((identity, owner))
    linked.sort(key=lambda pair: (pair[1].linked_at or pair[1].created_at, pair[1].user_id, pair[0].id))
    for identity, owner in linked:
        profile = {key: getattr(owner, key) for key in PROFILE_DATA_FIELDS if getattr(owner, key) is not None}
        by_user[owner.linked_to].append(
            record_from_row(Identity, identity, profile_data={**identity.profile_data, **profile}, linked_user_id=owner.user_id)
        )
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
    """The users (not linked secondaries) with this email, in any connection."""
    rows = (
        await session.scalars(select(UserRow).where(UserRow.email == email.strip().lower(), UserRow.linked_to.is_(None)))
    ).all()
    identities = await _identities(session, [r.user_id for r in rows])
    return [record_from_row(User, r, identities=identities[r.user_id]) for r in rows]


async def missing_users(session: AsyncSession, *, user_ids: list[str]) -> list[str]:
    """Those of `user_ids` that name no user (a linked secondary is no user of its own)."""
    wanted = list(dict.fromkeys(user_ids))
    found = set(
        (await session.scalars(select(UserRow.user_id).where(UserRow.user_id.in_(wanted), UserRow.linked_to.is_(None)))).all()
    )
    return [u for u in wanted if u not in found]


async def list_users(
    session: AsyncSession,
    *,
    page: int,
    per_page: int,
    condition: ColumnElement[bool] | None = None,
    order_by: Sequence[ColumnElement[Any]] = (),
) -> Page[User]:
    """A page of the users (never linked secondaries) meeting `condition` (a condition on
    `users`, as management/user_search.py builds one), in `order_by` order (default: oldest
    first); the total counts the users meeting it."""
    statement = select(UserRow).where(UserRow.linked_to.is_(None))
    if condition is not None:
        statement = statement.where(condition)
    statement = statement.order_by(*(order_by or (UserRow.created_at, UserRow.user_id)))
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
    """Delete the user, and the secondaries linked to it (the foreign key would too; done here
    explicitly so the order of the deletes never depends on it)."""
    doomed = select(UserRow.user_id).where(or_(UserRow.user_id == user_id, UserRow.linked_to == user_id))
    await session.execute(delete(IdentityRow).where(IdentityRow.user_id.in_(doomed)))
    await session.execute(delete(UserRow).where(UserRow.linked_to == user_id))
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


# -- account linking (docs/identities.md) -------------------------------------------------


async def lock_users(session: AsyncSession, *, user_ids: list[str]) -> dict[str, User]:
    """The users named, their rows locked until the transaction ends (PostgreSQL; SQLite has
    one writer at a time). Locked in id order, so two links never wait on each other in a
    circle; a link checks both users after taking the locks."""
    rows = (
        await session.scalars(
            select(UserRow).where(UserRow.user_id.in_(sorted(set(user_ids)))).order_by(UserRow.user_id).with_for_update()
        )
    ).all()
    identities = await _identities(session, [r.user_id for r in rows])
    return {r.user_id: record_from_row(User, r, identities=identities[r.user_id]) for r in rows}


async def find_users_by_identity(
    session: AsyncSession, *, provider: str, external_id: str, connection: str | None = None
) -> list[User]:
    """The users holding this identity as their own (one, unless `connection` is left out and
    two connections of the provider use the same id)."""
    statement = (
        select(UserRow)
        .join(IdentityRow, IdentityRow.user_id == UserRow.user_id)
        .where(IdentityRow.provider == provider, IdentityRow.external_id == external_id)
        .order_by(UserRow.user_id)
    )
    if connection is not None:
        statement = statement.where(IdentityRow.connection == connection)
    rows = (await session.scalars(statement)).unique().all()
    identities = await _identities(session, [r.user_id for r in rows])
    return [record_from_row(User, r, identities=identities[r.user_id]) for r in rows]


async def has_linked_users(session: AsyncSession, *, user_id: str) -> bool:
    """Whether some secondary is linked to this user (it is a primary)."""
    found = await session.scalar(select(UserRow.user_id).where(UserRow.linked_to == user_id).limit(1))
    return found is not None


async def linked_user_ids(session: AsyncSession, *, user_id: str) -> list[str]:
    """The ids of the secondaries linked to this user."""
    return list((await session.scalars(select(UserRow.user_id).where(UserRow.linked_to == user_id))).all())


async def set_linked_to(session: AsyncSession, *, user_id: str, primary_id: str | None) -> None:
    """Link the user to `primary_id`, or unlink it (None)."""
    await session.execute(
        update(UserRow)
        .where(UserRow.user_id == user_id)
        .values(linked_to=primary_id, linked_at=datetime.now(timezone.utc) if primary_id else None)
    )
