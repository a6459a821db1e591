"""Repository: roles, the permissions each role grants, and which users have which roles."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, exists, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.inserts import insert_missing
from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Permission, Role, RoleMember, record_from_row
from bastion.storage.tables import ResourceServerRow, RolePermissionRow, RoleRow, UserRoleRow, UserRow

__all__ = [
    "insert_role",
    "get_role",
    "find_role",
    "list_roles",
    "update_role",
    "delete_role",
    "missing_roles",
    "any_roles",
    "add_role_permissions",
    "remove_role_permissions",
    "list_role_permissions",
    "assign_roles",
    "unassign_roles",
    "list_role_members",
    "list_user_roles",
    "user_role_names",
    "scope_description",
]

# (resource server identifier, permission name)
PermissionKey = tuple[str, str]


async def insert_role(session: AsyncSession, *, id: str, name: str, description: str | None) -> Role:
    """Insert a role. Raises IntegrityError when the name is taken."""
    row = RoleRow(id=id, name=name, description=description, created_at=datetime.now(timezone.utc))
    session.add(row)
    await session.flush()
    return record_from_row(Role, row)


async def get_role(session: AsyncSession, *, id: str) -> Role | None:
    row = await session.get(RoleRow, id)
    return record_from_row(Role, row) if row else None


async def find_role(session: AsyncSession, *, name: str) -> Role | None:
    row = await session.scalar(select(RoleRow).where(RoleRow.name == name))
    return record_from_row(Role, row) if row else None


async def list_roles(session: AsyncSession, *, page: int, per_page: int, name_filter: str | None = None) -> Page[Role]:
    """By name; `name_filter` keeps the roles whose name contains it, ignoring case (Auth0's name_filter)."""
    statement = select(RoleRow).order_by(RoleRow.name, RoleRow.id)
    if name_filter:
        statement = statement.where(func.lower(RoleRow.name).contains(name_filter.lower(), autoescape=True))
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Role, r) for r in rows], start, per_page, total)


async def update_role(session: AsyncSession, *, id: str, changes: dict[str, Any]) -> Role | None:
    """Apply `changes`. Raises IntegrityError when a new name is taken."""
    row = await session.get(RoleRow, id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    await session.flush()
    return record_from_row(Role, row)


async def delete_role(session: AsyncSession, *, id: str) -> bool:
    """Delete a role; its permissions and its users' assignments go with it (ON DELETE CASCADE)."""
    result = await session.execute(delete(RoleRow).where(RoleRow.id == id))
    return result.rowcount > 0


async def missing_roles(session: AsyncSession, *, ids: Iterable[str]) -> list[str]:
    """Those of `ids` that name no role."""
    wanted = list(dict.fromkeys(ids))
    found = set((await session.scalars(select(RoleRow.id).where(RoleRow.id.in_(wanted)))).all())
    return [i for i in wanted if i not in found]


async def any_roles(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(exists().where(RoleRow.id.is_not(None)))))


# -- the permissions a role grants ----------------------------------------------------


async def add_role_permissions(session: AsyncSession, *, role_id: str, permissions: Iterable[PermissionKey]) -> None:
    """Grant `permissions` through the role (those it already grants are left as they are)."""
    rows = [
        {"role_id": role_id, "resource_server_identifier": identifier, "permission_name": name}
        for identifier, name in dict.fromkeys(permissions)
    ]
    await insert_missing(session, RolePermissionRow, rows)


async def remove_role_permissions(session: AsyncSession, *, role_id: str, permissions: Iterable[PermissionKey]) -> None:
    keys = list(dict.fromkeys(permissions))
    if keys:
        await session.execute(
            delete(RolePermissionRow).where(
                RolePermissionRow.role_id == role_id,
                tuple_(RolePermissionRow.resource_server_identifier, RolePermissionRow.permission_name).in_(keys),
            )
        )


async def list_role_permissions(session: AsyncSession, *, role_id: str, page: int, per_page: int) -> Page[Permission]:
    """By API identifier and name, with the API's name and the scope's description."""
    statement = (
        select(RolePermissionRow.resource_server_identifier, RolePermissionRow.permission_name, ResourceServerRow.name, ResourceServerRow.scopes)
        .join(ResourceServerRow, ResourceServerRow.identifier == RolePermissionRow.resource_server_identifier)
        .where(RolePermissionRow.role_id == role_id)
        .order_by(RolePermissionRow.resource_server_identifier, RolePermissionRow.permission_name)
    )
    total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    offset = page * per_page
    rows = (await session.execute(statement.offset(offset).limit(per_page))).all()
    items = [Permission(identifier, name, api_name, scope_description(scopes, name)) for identifier, name, api_name, scopes in rows]
    return Page(items, offset, per_page, int(total or 0))


def scope_description(scopes: list, name: str) -> str:
    """The description an API gives its scope `name` (empty when it gives none)."""
    for scope in scopes or []:
        if isinstance(scope, dict) and scope.get("value") == name:
            return str(scope.get("description") or "")
    return ""


# -- who has which role ----------------------------------------------------------------


async def assign_roles(session: AsyncSession, *, user_ids: Iterable[str], role_ids: Iterable[str]) -> None:
    """Give each of the users each of the roles (assignments already there are kept)."""
    roles = list(dict.fromkeys(role_ids))
    rows = [{"user_id": user_id, "role_id": role_id} for user_id in dict.fromkeys(user_ids) for role_id in roles]
    await insert_missing(session, UserRoleRow, rows)


async def unassign_roles(session: AsyncSession, *, user_id: str, role_ids: Iterable[str]) -> None:
    roles = list(dict.fromkeys(role_ids))
    if roles:
        await session.execute(delete(UserRoleRow).where(UserRoleRow.user_id == user_id, UserRoleRow.role_id.in_(roles)))


async def list_role_members(session: AsyncSession, *, role_id: str, page: int, per_page: int) -> Page[RoleMember]:
    """The role's users; a linked secondary (docs/identities.md) is no user of its own, and its
    roles count for nothing while it is linked, so it is not listed."""
    statement = (
        select(UserRow.user_id, UserRow.email, UserRow.name, UserRow.picture)
        .join(UserRoleRow, UserRoleRow.user_id == UserRow.user_id)
        .where(UserRoleRow.role_id == role_id, UserRow.linked_to.is_(None))
        .order_by(UserRow.user_id)
    )
    total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    offset = page * per_page
    rows = (await session.execute(statement.offset(offset).limit(per_page))).all()
    return Page([RoleMember(*row) for row in rows], offset, per_page, int(total or 0))


async def list_user_roles(session: AsyncSession, *, user_id: str, page: int, per_page: int) -> Page[Role]:
    statement = (
        select(RoleRow)
        .join(UserRoleRow, UserRoleRow.role_id == RoleRow.id)
        .where(UserRoleRow.user_id == user_id)
        .order_by(RoleRow.name, RoleRow.id)
    )
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Role, r) for r in rows], start, per_page, total)


async def user_role_names(session: AsyncSession, *, user_id: str) -> list[str]:
    """The names of the user's roles, sorted: one query (what rules see as context.authorization.roles)."""
    statement = (
        select(RoleRow.name)
        .join(UserRoleRow, UserRoleRow.role_id == RoleRow.id)
        .where(UserRoleRow.user_id == user_id)
        .order_by(RoleRow.name)
    )
    return list((await session.scalars(statement)).all())
