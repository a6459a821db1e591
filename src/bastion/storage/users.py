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

from sqlalchemy import ColumnElement, bindparam, delete, func, or_, select, update
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


_USERS = UserRow.__table__
_IDENTITIES = IdentityRow.__table__
# The columns of an identity's owner that its listing needs (see `_identities`), labelled.
_OWNER = ("user_id", "linked_to", "linked_at", "created_at", *PROFILE_DATA_FIELDS)
_USER_IDS = bindparam("user_ids", expanding=True)
# Built once (core_rows.py explains why these two run as Core statements).
_SELECT_IDENTITIES = (
    select(*_IDENTITIES.c, *(_USERS.c[name].label(f"owner_{name}") for name in _OWNER))
    .join_from(_IDENTITIES, _USERS, _USERS.c.user_id == _IDENTITIES.c.user_id)
    .where(or_(_IDENTITIES.c.user_id.in_(_USER_IDS), _USERS.c.linked_to.in_(_USER_IDS)))
    .order_by(_IDENTITIES.c.id)
)
_SELECT_USER = select(_USERS).where(_USERS.c.user_id == bindparam("user_id"))
_RECORD_LOGIN = (
    update(_USERS)
    .where(_USERS.c.user_id == bindparam("uid"))
    .values(logins_count=func.coalesce(_USERS.c.logins_count, 0) + 1)
    .returning(*_USERS.c)
)


async def _identities(session: AsyncSession, user_ids: list[str]) -> dict[str, list[Identity]]:
    """Each user's identities: its own (in creation order), then those of the users linked to
    it (oldest link first), which carry that user's profile. One query."""
    by_user: dict[str, list[Identity]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return by_user
    rows = (await session.execute(_SELECT_IDENTITIES, {"user_ids": list(user_ids)})).mappings().all()
    linked = []
    for row in rows:
        if row["owner_user_id"] in by_user:
            by_user[row["owner_user_id"]].append(record_from_row(Identity, row))
        if row["owner_linked_to"] in by_user:  # also when the secondary itself was asked for
            linked.append(row)
    linked.sort(key=lambda row: (row["owner_linked_at"] or row["owner_created_at"], row["owner_user_id"], row["id"]))
    for row in linked:
        profile = {key: row[f"owner_{key}"] for key in PROFILE_DATA_FIELDS if row[f"owner_{key}"] is not None}
        by_user[row["owner_linked_to"]].append(
            record_from_row(Identity, row, profile_data={**row["profile_data"], **profile}, linked_user_id=row["owner_user_id"])
        )
    return by_user


async def _user(session: AsyncSession, row: Any) -> User | None:
    """The record of a user row (an ORM row or a Core row), with its identities."""
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
    return await _user(session, (await session.execute(_SELECT_USER, {"user_id": user_id})).first())


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


async def record_login(session: AsyncSession, *, user_id: str, ip: str | None) -> User | None:
    """Count a successful login (atomically, so concurrent logins are all counted); the user
    as counted, or None when there is no such user."""
    counted = await session.execute(_RECORD_LOGIN, {"uid": user_id, "last_login": datetime.now(timezone.utc), "last_ip": ip})
    return await _user(session, counted.first())


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
