"""Repository: the permissions (API scopes) users hold, given directly or through their roles."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import String, cast, delete, null, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.inserts import insert_missing
from bastion.storage.records import EffectivePermission, PermissionSource
from bastion.storage.roles import PermissionKey, scope_description
from bastion.storage.tables import ResourceServerRow, RolePermissionRow, RoleRow, UserPermissionRow, UserRoleRow

__all__ = ["add_user_permissions", "remove_user_permissions", "effective_permissions", "prune_permissions"]


async def add_user_permissions(session: AsyncSession, *, user_id: str, permissions: Iterable[PermissionKey]) -> None:
    """Give the user `permissions` directly (those already given are left as they are)."""
    rows = [
        {"user_id": user_id, "resource_server_identifier": identifier, "permission_name": name}
        for identifier, name in dict.fromkeys(permissions)
    ]
    await insert_missing(session, UserPermissionRow, rows)


async def remove_user_permissions(session: AsyncSession, *, user_id: str, permissions: Iterable[PermissionKey]) -> None:
    """Take back permissions given directly; those the user has through a role stay."""
    keys = list(dict.fromkeys(permissions))
    if keys:
        await session.execute(
            delete(UserPermissionRow).where(
                UserPermissionRow.user_id == user_id,
                tuple_(UserPermissionRow.resource_server_identifier, UserPermissionRow.permission_name).in_(keys),
            )
        )


async def effective_permissions(
    session: AsyncSession, *, user_id: str, resource_server_identifier: str | None = None
) -> list[EffectivePermission]:
    """Every permission the user holds (on one API, or on all), each with its sources: the
    direct assignment and the roles that grant it. One query: the direct permissions and
    those of the user's roles, as one union, joined to their API for its name and scopes.
    Sorted by API identifier and permission name."""
    direct = select(
        UserPermissionRow.resource_server_identifier.label("identifier"),
        UserPermissionRow.permission_name.label("name"),
        cast(null(), String(64)).label("role_id"),
        cast(null(), String(255)).label("role_name"),
    ).where(UserPermissionRow.user_id == user_id)
    through_roles = (
        select(RolePermissionRow.resource_server_identifier, RolePermissionRow.permission_name, RoleRow.id, RoleRow.name)
        .join(UserRoleRow, UserRoleRow.role_id == RolePermissionRow.role_id)
        .join(RoleRow, RoleRow.id == RolePermissionRow.role_id)
        .where(UserRoleRow.user_id == user_id)
    )
    if resource_server_identifier is not None:
        direct = direct.where(UserPermissionRow.resource_server_identifier == resource_server_identifier)
        through_roles = through_roles.where(RolePermissionRow.resource_server_identifier == resource_server_identifier)
    held = union_all(direct, through_roles).subquery()
    statement = (
        select(held.c.identifier, held.c.name, held.c.role_id, held.c.role_name, ResourceServerRow.name, ResourceServerRow.scopes)
        .join(ResourceServerRow, ResourceServerRow.identifier == held.c.identifier)
        .order_by(held.c.identifier, held.c.name, held.c.role_name.is_not(None), held.c.role_name, held.c.role_id)
    )
    found: dict[tuple[str, str], tuple[str, str, list[PermissionSource]]] = {}
    for identifier, name, role_id, role_name, api_name, scopes in (await session.execute(statement)).all():
        entry = found.setdefault((identifier, name), (api_name, scope_description(scopes, name), []))
        entry[2].append(PermissionSource(role_id=role_id, role_name=role_name))
    return [
        EffectivePermission(identifier, name, api_name, description, tuple(sources))
        for (identifier, name), (api_name, description, sources) in found.items()
    ]


async def prune_permissions(session: AsyncSession, *, resource_server_identifier: str, keep: Iterable[str]) -> None:
    """Forget the permissions on an API that are no longer among its scopes (`keep`), in roles
    and on users, so a scope removed from an API is removed from everyone, as in Auth0."""
    names = list(keep)
    for table in (RolePermissionRow, UserPermissionRow):
        await session.execute(
            delete(table).where(table.resource_server_identifier == resource_server_identifier, table.permission_name.not_in(names))
        )
