"""Permissions as the Management API takes them (`{"permissions": [{resource_server_identifier,
permission_name}]}`) and shows them, for roles and for users (docs/access-control.md)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.errors import ManagementError
from bastion.management.schemas import PermissionsBody
from bastion.storage import resource_servers as api_store
from bastion.storage.records import EffectivePermission, Permission, PermissionSource, ResourceServer

__all__ = ["checked_permissions", "requested_permissions", "permission_json", "user_permission_json"]


def requested_permissions(body: PermissionsBody) -> list[tuple[str, str]]:
    """The body's (API identifier, permission name) pairs, unchecked: what a removal names."""
    return [(p.resource_server_identifier, p.permission_name) for p in body.permissions]


async def checked_permissions(session: AsyncSession, body: PermissionsBody) -> list[tuple[str, str]]:
    """The body's pairs, each a scope its API defines; otherwise a 400 naming the first that is not.

    The Management API's own scopes are refused: Bastion grants users none of them (they
    are for machine-to-machine clients with a client grant), so such a permission would
    silently do nothing.
    """
    apis: dict[str, ResourceServer | None] = {}
    pairs = requested_permissions(body)
    for identifier, name in pairs:
        if identifier not in apis:
            apis[identifier] = await api_store.find_resource_server(session, identifier=identifier)
        api = apis[identifier]
        if api is None:
            raise ManagementError(400, f"Resource server '{identifier}' does not exist (permission '{name}').", "invalid_body")
        if api.is_system:
            raise ManagementError(
                400, f"Permission '{name}' of the Management API cannot be assigned: its scopes are for client grants.", "invalid_body"
            )
        if name not in api.scope_values:
            raise ManagementError(400, f"Permission '{name}' is not defined on resource server '{identifier}'.", "invalid_body")
    return pairs


def permission_json(permission: Permission) -> dict:
    return {
        "resource_server_identifier": permission.resource_server_identifier,
        "permission_name": permission.permission_name,
        "resource_server_name": permission.resource_server_name,
        "description": permission.description,
    }


def _source_json(source: PermissionSource) -> dict:
    """Auth0's permission source: a role (its id and name), or the direct assignment (empty id and name)."""
    if source.role_id is None:
        return {"source_id": "", "source_name": "", "source_type": "DIRECT"}
    return {"source_id": source.role_id, "source_name": source.role_name or "", "source_type": "ROLE"}


def user_permission_json(permission: EffectivePermission) -> dict:
    return {**permission_json(permission), "sources": [_source_json(s) for s in permission.sources]}
