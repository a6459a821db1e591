"""Repository: groups (the Authorization Extension's model), their members, nested groups, roles
and mappings, and what a user is granted through all of them (`user_authorization`).

A user is a member of a group when
- they were added to it (`group_members`),
- or they log in through a connection whose upstream groups (what the identity provider says,
  e.g. Azure AD's `groups`) contain a name the group maps for that connection (`group_mappings`),
- or they are a member of a group nested in it (`group_nested`), at any depth.

The nesting graph is kept acyclic (`add_nested_groups` refuses a cycle, also between racing
requests), and the recursive queries use UNION, not UNION ALL, so they would end even on a
graph that somehow had one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, exists, func, literal_column, or_, select, text, tuple_, union
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.handles import new_id
from bastion.storage.group_tables import GroupMappingRow, GroupMemberRow, GroupNestedRow, GroupRoleRow, GroupRow
from bastion.storage.inserts import insert_missing
from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Role, record_from_row
from bastion.storage.tables import IdentityRow, RolePermissionRow, RoleRow, UserPermissionRow, UserRoleRow, UserRow

__all__ = [
    "Group",
    "GroupMember",
    "NestedMember",
    "GroupMapping",
    "Authorization",
    "GroupCycle",
    "insert_group",
    "get_group",
    "find_group",
    "list_groups",
    "update_group",
    "delete_group",
    "missing_groups",
    "any_groups",
    "add_members",
    "remove_members",
    "list_members",
    "list_nested_members",
    "add_nested_groups",
    "remove_nested_groups",
    "list_nested_groups",
    "add_group_roles",
    "remove_group_roles",
    "list_group_roles",
    "add_mappings",
    "remove_mappings",
    "list_mappings",
    "list_user_groups",
    "user_upstream_groups",
    "effective_groups",
    "user_authorization",
]

# (connection name, upstream group name): what a mapping matches.
Upstream = tuple[str, str]

# The key of the PostgreSQL advisory lock that serialises changes to the nesting graph.
_NESTING_LOCK = 0x6272_6F75_705F_6E65  # "group_ne"


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    description: str | None
    created_at: datetime


@dataclass(frozen=True)
class GroupMember:
    """A user as a group's member list shows it (the fields of Auth0's role members)."""

    user_id: str
    email: str | None
    name: str | None
    picture: str | None


@dataclass(frozen=True)
class NestedMember:
    """A member of a group or of a group nested in it, with the group they were added to."""

    user: GroupMember
    group: Group


@dataclass(frozen=True)
class GroupMapping:
    id: str
    group_id: str
    connection_name: str
    group_name: str


@dataclass(frozen=True)
class Authorization:
    """What a user holds at a login, as names, each sorted and given once:

    - `groups`: the groups they are a member of (added, mapped from the upstream groups of the
      login's connection, or inherited: a member of a nested group is a member of its parents);
    - `roles`: their own roles (Auth0's RBAC) and the roles of every one of those groups;
    - `permissions`: their own permissions and those of every one of those roles (permission
      names only: the same name on two APIs is given once).
    """

    groups: list[str]
    roles: list[str]
    permissions: list[str]


class GroupCycle(Exception):
    """Nesting these groups would make a group a member of itself."""

    def __init__(self, group_id: str, nested_group_ids: list[str]):
        super().__init__(f"nesting {', '.join(nested_group_ids)} in {group_id} would make a cycle")
        self.group_id = group_id
        self.nested_group_ids = nested_group_ids


# -- groups ---------------------------------------------------------------------------------


async def insert_group(session: AsyncSession, *, id: str, name: str, description: str | None) -> Group:
    """Insert a group. Raises IntegrityError when the name is taken."""
    row = GroupRow(id=id, name=name, description=description, created_at=datetime.now(timezone.utc))
    session.add(row)
    await session.flush()
    return record_from_row(Group, row)


async def get_group(session: AsyncSession, *, id: str) -> Group | None:
    row = await session.get(GroupRow, id)
    return record_from_row(Group, row) if row else None


async def find_group(session: AsyncSession, *, name: str) -> Group | None:
    row = await session.scalar(select(GroupRow).where(GroupRow.name == name))
    return record_from_row(Group, row) if row else None


async def list_groups(session: AsyncSession, *, page: int, per_page: int, name_filter: str | None = None) -> Page[Group]:
    """By name; `name_filter` keeps the groups whose name contains it, ignoring case."""
    statement = select(GroupRow).order_by(GroupRow.name, GroupRow.id)
    if name_filter:
        statement = statement.where(func.lower(GroupRow.name).contains(name_filter.lower(), autoescape=True))
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Group, r) for r in rows], start, per_page, total)


async def update_group(session: AsyncSession, *, id: str, changes: dict[str, Any]) -> Group | None:
    """Apply `changes` (name, description). Raises IntegrityError when a new name is taken."""
    row = await session.get(GroupRow, id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    await session.flush()
    return record_from_row(Group, row)


async def delete_group(session: AsyncSession, *, id: str) -> bool:
    """Delete a group; its members, nestings (both ways), roles and mappings go with it (ON DELETE CASCADE)."""
    result = await session.execute(delete(GroupRow).where(GroupRow.id == id))
    return result.rowcount > 0


async def missing_groups(session: AsyncSession, *, ids: Iterable[str]) -> list[str]:
    """Those of `ids` that name no group."""
    wanted = list(dict.fromkeys(ids))
    found = set((await session.scalars(select(GroupRow.id).where(GroupRow.id.in_(wanted)))).all())
    return [i for i in wanted if i not in found]


async def any_groups(session: AsyncSession) -> bool:
    """Whether the tenant has a group at all (a login can skip the group lookup when not)."""
    return bool(await session.scalar(select(exists().where(GroupRow.id.is_not(None)))))


# -- members ----------------------------------------------------------------------------------


async def add_members(session: AsyncSession, *, group_id: str, user_ids: Iterable[str]) -> None:
    """Add the users to the group (members already there are kept)."""
    await insert_missing(session, GroupMemberRow, [{"group_id": group_id, "user_id": u} for u in dict.fromkeys(user_ids)])


async def remove_members(session: AsyncSession, *, group_id: str, user_ids: Iterable[str]) -> None:
    users = list(dict.fromkeys(user_ids))
    if users:
        await session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_id == group_id, GroupMemberRow.user_id.in_(users)))


def _member_columns():
    return (UserRow.user_id, UserRow.email, UserRow.name, UserRow.picture)


async def _page_of_rows(session: AsyncSession, statement, *, page: int, per_page: int) -> tuple[list, int, int]:
    total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    offset = page * per_page
    rows = (await session.execute(statement.offset(offset).limit(per_page))).all()
    return rows, offset, int(total or 0)


async def list_members(session: AsyncSession, *, group_id: str, page: int, per_page: int) -> Page[GroupMember]:
    """The users added to this group (not those of its nested groups, nor mapped ones), by user
    id. A linked secondary user (docs/identities.md) is no user of its own: not listed."""
    statement = (
        select(*_member_columns())
        .join(GroupMemberRow, GroupMemberRow.user_id == UserRow.user_id)
        .where(GroupMemberRow.group_id == group_id, UserRow.linked_to.is_(None))
        .order_by(UserRow.user_id)
    )
    rows, offset, total = await _page_of_rows(session, statement, page=page, per_page=per_page)
    return Page([GroupMember(*row) for row in rows], offset, per_page, total)


def _descendants(group_id: str):
    """The group and every group nested in it, at any depth (a recursive CTE of `group_id`)."""
    tree = select(GroupRow.id.label("group_id")).where(GroupRow.id == group_id).cte("descendants", recursive=True)
    return tree.union(select(GroupNestedRow.nested_group_id).join(tree, GroupNestedRow.group_id == tree.c.group_id))


def _ancestors(group_id: str):
    """The group and every group it is nested in, at any depth."""
    tree = select(GroupRow.id.label("group_id")).where(GroupRow.id == group_id).cte("ancestors", recursive=True)
    return tree.union(select(GroupNestedRow.group_id).join(tree, GroupNestedRow.nested_group_id == tree.c.group_id))


async def list_nested_members(session: AsyncSession, *, group_id: str, page: int, per_page: int) -> Page[NestedMember]:
    """Every member of the group and of the groups nested in it (at any depth), one entry per
    user and group they were added to; by user id, then group name. One query (and a count)."""
    tree = _descendants(group_id)
    statement = (
        select(*_member_columns(), GroupRow.id, GroupRow.name, GroupRow.description, GroupRow.created_at)
        .select_from(GroupMemberRow)
        .join(tree, tree.c.group_id == GroupMemberRow.group_id)
        .join(UserRow, UserRow.user_id == GroupMemberRow.user_id)
        .join(GroupRow, GroupRow.id == GroupMemberRow.group_id)
        .where(UserRow.linked_to.is_(None))
        .order_by(UserRow.user_id, GroupRow.name, GroupRow.id)
    )
    rows, offset, total = await _page_of_rows(session, statement, page=page, per_page=per_page)
    items = [NestedMember(GroupMember(*row[:4]), Group(*row[4:])) for row in rows]
    return Page(items, offset, per_page, total)


async def list_user_groups(session: AsyncSession, *, user_id: str, page: int, per_page: int) -> Page[Group]:
    """The groups the user was added to, by name."""
    statement = (
        select(GroupRow)
        .join(GroupMemberRow, GroupMemberRow.group_id == GroupRow.id)
        .where(GroupMemberRow.user_id == user_id)
        .order_by(GroupRow.name, GroupRow.id)
    )
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Group, r) for r in rows], start, per_page, total)


# -- nested groups -------------------------------------------------------------------------------


async def add_nested_groups(session: AsyncSession, *, group_id: str, nested_group_ids: Iterable[str]) -> None:
    """Nest the groups in `group_id` (nestings already there are kept).

    Raises GroupCycle when one of them is the group itself or a group it is nested in (the group
    would then be nested in itself). The nestings are written before that check, so the caller
    must roll back on GroupCycle (raising it out of `Database.transaction()` does).

    Racing nestings cannot make a cycle together (A in B here, B in A there): each transaction
    checks after its own write, once the other's is committed or not at all. SQLite gives the
    write lock to one transaction at a time, until it ends, and the waiting one writes and
    reads on a fresh snapshot; on PostgreSQL, where writes to different rows do not wait for
    each other, a transaction-scoped advisory lock taken first does the same."""
    nested = list(dict.fromkeys(nested_group_ids))
    if group_id in nested:
        raise GroupCycle(group_id, [group_id])
    if not nested:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _NESTING_LOCK})
    await insert_missing(session, GroupNestedRow, [{"group_id": group_id, "nested_group_id": n} for n in nested])
    # A nested group that is also one of the group's ancestors closes a cycle through the group.
    ancestors = _ancestors(group_id)
    closing = set((await session.scalars(select(ancestors.c.group_id).where(ancestors.c.group_id.in_(nested)))).all())
    if closing:
        raise GroupCycle(group_id, [g for g in nested if g in closing])


async def remove_nested_groups(session: AsyncSession, *, group_id: str, nested_group_ids: Iterable[str]) -> None:
    nested = list(dict.fromkeys(nested_group_ids))
    if nested:
        await session.execute(
            delete(GroupNestedRow).where(GroupNestedRow.group_id == group_id, GroupNestedRow.nested_group_id.in_(nested))
        )


async def list_nested_groups(session: AsyncSession, *, group_id: str, page: int, per_page: int) -> Page[Group]:
    """The groups nested directly in this one, by name."""
    statement = (
        select(GroupRow)
        .join(GroupNestedRow, GroupNestedRow.nested_group_id == GroupRow.id)
        .where(GroupNestedRow.group_id == group_id)
        .order_by(GroupRow.name, GroupRow.id)
    )
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Group, r) for r in rows], start, per_page, total)


# -- roles ------------------------------------------------------------------------------------------


async def add_group_roles(session: AsyncSession, *, group_id: str, role_ids: Iterable[str]) -> None:
    """Give the group's members the roles (roles already given are kept)."""
    await insert_missing(session, GroupRoleRow, [{"group_id": group_id, "role_id": r} for r in dict.fromkeys(role_ids)])


async def remove_group_roles(session: AsyncSession, *, group_id: str, role_ids: Iterable[str]) -> None:
    roles = list(dict.fromkeys(role_ids))
    if roles:
        await session.execute(delete(GroupRoleRow).where(GroupRoleRow.group_id == group_id, GroupRoleRow.role_id.in_(roles)))


async def list_group_roles(session: AsyncSession, *, group_id: str, page: int, per_page: int) -> Page[Role]:
    """The roles given to this group (not those of the groups it is nested in), by name."""
    statement = (
        select(RoleRow)
        .join(GroupRoleRow, GroupRoleRow.role_id == RoleRow.id)
        .where(GroupRoleRow.group_id == group_id)
        .order_by(RoleRow.name, RoleRow.id)
    )
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Role, r) for r in rows], start, per_page, total)


# -- mappings -----------------------------------------------------------------------------------------


async def add_mappings(session: AsyncSession, *, group_id: str, mappings: Iterable[Upstream]) -> None:
    """Map upstream groups of connections to the group (a mapping already there is kept, with its id)."""
    rows = [
        {"id": new_id("gmp_", 16), "group_id": group_id, "connection_name": connection, "group_name": name}
        for connection, name in dict.fromkeys(mappings)
    ]
    await insert_missing(session, GroupMappingRow, rows)


async def remove_mappings(
    session: AsyncSession, *, group_id: str, ids: Iterable[str] = (), mappings: Iterable[Upstream] = ()
) -> None:
    """Remove the group's mappings named by id or by (connection, upstream group)."""
    ids, pairs = list(dict.fromkeys(ids)), list(dict.fromkeys(mappings))
    conditions = []
    if ids:
        conditions.append(GroupMappingRow.id.in_(ids))
    if pairs:
        conditions.append(tuple_(GroupMappingRow.connection_name, GroupMappingRow.group_name).in_(pairs))
    if conditions:
        await session.execute(delete(GroupMappingRow).where(GroupMappingRow.group_id == group_id, or_(*conditions)))


async def delete_connection_mappings(session: AsyncSession, *, connection: str) -> None:
    """Forget every mapping of a deleted connection: a new connection given the same name later
    must not inherit group memberships meant for the old one."""
    await session.execute(delete(GroupMappingRow).where(GroupMappingRow.connection_name == connection))


async def list_mappings(session: AsyncSession, *, group_id: str) -> list[GroupMapping]:
    """All of the group's mappings (a group has few), by connection and upstream group name."""
    rows = await session.scalars(
        select(GroupMappingRow)
        .where(GroupMappingRow.group_id == group_id)
        .order_by(GroupMappingRow.connection_name, GroupMappingRow.group_name)
    )
    return [record_from_row(GroupMapping, r) for r in rows]


# -- what a user holds ------------------------------------------------------------------------------


def _upstream_pairs(connection: str | None, upstream_groups: Iterable[Any] | None) -> list[Upstream]:
    if not connection or not upstream_groups or isinstance(upstream_groups, (str, bytes)):
        return []
    return [(connection, name) for name in dict.fromkeys(upstream_groups) if isinstance(name, str) and name]


def _effective_group_ids(user_id: str, upstream: Sequence[Upstream]):
    """A recursive CTE of the ids of every group the user is a member of: those they were
    added to or that map one of `upstream`, then, level by level, the groups those are nested in."""
    seed = GroupRow.id.in_(select(GroupMemberRow.group_id).where(GroupMemberRow.user_id == user_id))
    if upstream:
        mapped = select(GroupMappingRow.group_id).where(
            tuple_(GroupMappingRow.connection_name, GroupMappingRow.group_name).in_(list(upstream))
        )
        seed = or_(seed, GroupRow.id.in_(mapped))
    tree = select(GroupRow.id.label("group_id")).where(seed).cte("effective_groups", recursive=True)
    return tree.union(select(GroupNestedRow.group_id).join(tree, GroupNestedRow.nested_group_id == tree.c.group_id))


async def user_upstream_groups(session: AsyncSession, *, user_id: str) -> list[Upstream]:
    """(connection, upstream group) for every group name the user's identities' stored
    profiles list (`profile_data["groups"]`, kept from their last login at that provider),
    those of the accounts linked to the user included."""
    linked = select(UserRow.user_id).where(UserRow.linked_to == user_id)
    rows = await session.execute(
        select(IdentityRow.connection, IdentityRow.profile_data).where(
            or_(IdentityRow.user_id == user_id, IdentityRow.user_id.in_(linked))
        )
    )
    pairs: list[Upstream] = []
    for connection, profile in rows.all():
        groups = (profile or {}).get("groups") if isinstance(profile, dict) else None
        pairs.extend(_upstream_pairs(connection, groups if isinstance(groups, list) else None))
    return list(dict.fromkeys(pairs))


async def effective_groups(session: AsyncSession, *, user_id: str, upstream: Sequence[Upstream] = ()) -> list[Group]:
    """Every group the user is a member of (added, mapped from `upstream`, or inherited), by name."""
    tree = _effective_group_ids(user_id, upstream)
    rows = await session.scalars(select(GroupRow).join(tree, tree.c.group_id == GroupRow.id).order_by(GroupRow.name, GroupRow.id))
    return [record_from_row(Group, r) for r in rows]


async def user_authorization(
    session: AsyncSession, *, user_id: str, connection: str | None, upstream_groups: Iterable[str] | None
) -> Authorization:
    """The groups, roles and permissions a user holds at a login, by name (see `Authorization`).

    `connection` is the name of the login's connection and `upstream_groups` the group names its
    identity provider gave for the user (the identity's `profile_data["groups"]`; None or empty
    when it gave none): a group that maps one of them for that connection counts, with the
    groups it is nested in. Non-string names are ignored.

    One query: a recursive CTE of the user's groups, a CTE of their roles (their own and their
    groups'), then the names of the groups, of the roles and of the permissions (the user's own
    and their roles'), as one UNION. Runs the same on SQLite and PostgreSQL."""
    groups = _effective_group_ids(user_id, _upstream_pairs(connection, upstream_groups))
    role_ids = union(
        select(UserRoleRow.role_id).where(UserRoleRow.user_id == user_id),
        select(GroupRoleRow.role_id).join(groups, groups.c.group_id == GroupRoleRow.group_id),
    ).cte("effective_roles")
    names = union(
        select(literal_column("0").label("kind"), GroupRow.name.label("name")).join(groups, groups.c.group_id == GroupRow.id),
        select(literal_column("1"), RoleRow.name).join(role_ids, role_ids.c.role_id == RoleRow.id),
        select(literal_column("2"), UserPermissionRow.permission_name).where(UserPermissionRow.user_id == user_id),
        select(literal_column("2"), RolePermissionRow.permission_name).join(role_ids, role_ids.c.role_id == RolePermissionRow.role_id),
    )
    found: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    for which, name in (await session.execute(names)).all():
        found[int(which)].add(name)
    return Authorization(groups=sorted(found[0]), roles=sorted(found[1]), permissions=sorted(found[2]))
