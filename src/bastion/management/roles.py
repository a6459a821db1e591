"""/api/v2/roles: roles, the permissions they grant, and their users (Auth0's RBAC, docs/access-control.md).

Status codes are Auth0's, which differ from the other collections: creating a role answers
200 (not 201), deleting a role or removing its permissions 200 with an empty body, adding
permissions 201, assigning users 200.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.permissions import checked_permissions, permission_json, requested_permissions
from bastion.management.schemas import PermissionsBody, RoleCreate, RoleUpdate, RoleUsersBody
from bastion.security.handles import new_id
from bastion.storage import roles as role_store
from bastion.storage import users as user_store
from bastion.storage.records import Role, RoleMember

__all__ = ["router", "role_json", "NO_ROLE"]

router = APIRouter()

NO_ROLE = ManagementError(404, "The role does not exist.", "inexistent_role")
_NAME_TAKEN = ManagementError(409, "A role with the same name already exists.", "conflict")


def role_json(role: Role) -> dict:
    body = {"id": role.id, "name": role.name}
    if role.description is not None:
        body["description"] = role.description
    return body


def _member_json(member: RoleMember) -> dict:
    body = {"user_id": member.user_id}
    for key in ("email", "name", "picture"):
        if getattr(member, key) is not None:
            body[key] = getattr(member, key)
    return body


async def _existing_role(session, role_id: str) -> Role:
    role = await role_store.get_role(session, id=role_id)
    if role is None:
        raise NO_ROLE
    return role


# -- roles -------------------------------------------------------------------------------


@router.get("/roles")
async def list_roles(
    request: Request,
    params: PageParams = Depends(page_params),
    name_filter: str | None = Query(None, max_length=255),
    caller: Caller = Depends(require("read:roles")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await role_store.list_roles(session, page=params.page, per_page=params.per_page, name_filter=name_filter)
    return list_body("roles", page, [role_json(r) for r in page.items], params, length=False)


@router.post("/roles")
async def post_role(request: Request, body: RoleCreate, caller: Caller = Depends(require("create:roles"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if await role_store.find_role(session, name=body.name):
            raise _NAME_TAKEN
        try:
            role = await role_store.insert_role(session, id=new_id("rol_", 16), name=body.name, description=body.description)
        except IntegrityError:  # created meanwhile by another request
            raise _NAME_TAKEN from None
        await audit(session, caller, "Create a role", request, role_id=role.id)
    services.tenant.invalidate()
    return role_json(role)


@router.get("/roles/{role_id}")
async def get_role(request: Request, role_id: str, caller: Caller = Depends(require("read:roles"))):
    services = services_of(request)
    async with services.database.reader() as session:
        role = await _existing_role(session, role_id)
    return role_json(role)


@router.patch("/roles/{role_id}")
async def patch_role(request: Request, role_id: str, body: RoleUpdate, caller: Caller = Depends(require("update:roles"))):
    services = services_of(request)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ManagementError(400, "Payload validation error: 'name' cannot be null.", "invalid_body")
    async with services.database.transaction() as session:
        current = await _existing_role(session, role_id)
        if "name" in changes and changes["name"] != current.name and await role_store.find_role(session, name=changes["name"]):
            raise _NAME_TAKEN
        try:
            role = await role_store.update_role(session, id=role_id, changes=changes)
        except IntegrityError:
            raise _NAME_TAKEN from None
        await audit(session, caller, "Update a role", request, role_id=role_id, fields=sorted(changes))
    return role_json(role)


@router.delete("/roles/{role_id}")
async def delete_role(request: Request, role_id: str, caller: Caller = Depends(require("delete:roles"))):
    """Auth0 answers 200 with no body; the role leaves every user who had it."""
    services = services_of(request)
    async with services.database.transaction() as session:
        if not await role_store.delete_role(session, id=role_id):
            raise NO_ROLE
        await audit(session, caller, "Delete a role", request, role_id=role_id)
    services.tenant.invalidate()
    return Response(status_code=200)


# -- the permissions a role grants ---------------------------------------------------------


@router.get("/roles/{role_id}/permissions")
async def list_role_permissions(
    request: Request, role_id: str, params: PageParams = Depends(page_params), caller: Caller = Depends(require("read:roles"))
):
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_role(session, role_id)
        page = await role_store.list_role_permissions(session, role_id=role_id, page=params.page, per_page=params.per_page)
    return list_body("permissions", page, [permission_json(p) for p in page.items], params, length=False)


@router.post("/roles/{role_id}/permissions", status_code=201)
async def post_role_permissions(
    request: Request, role_id: str, body: PermissionsBody, caller: Caller = Depends(require("update:roles"))
):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_role(session, role_id)
        permissions = await checked_permissions(session, body)
        await role_store.add_role_permissions(session, role_id=role_id, permissions=permissions)
        await audit(session, caller, "Add permissions to a role", request, role_id=role_id, permissions=[list(p) for p in permissions])
    return Response(status_code=201)


@router.delete("/roles/{role_id}/permissions")
async def delete_role_permissions(
    request: Request, role_id: str, body: PermissionsBody, caller: Caller = Depends(require("update:roles"))
):
    services = services_of(request)
    permissions = requested_permissions(body)
    async with services.database.transaction() as session:
        await _existing_role(session, role_id)
        await role_store.remove_role_permissions(session, role_id=role_id, permissions=permissions)
        await audit(session, caller, "Remove permissions from a role", request, role_id=role_id, permissions=[list(p) for p in permissions])
    return Response(status_code=200)


# -- the role's users ------------------------------------------------------------------------


@router.get("/roles/{role_id}/users")
async def list_role_users(
    request: Request,
    role_id: str,
    params: PageParams = Depends(page_params),
    caller: Caller = Depends(require("read:users", "read:roles", all_of=True)),
):
    """Offset pages (page, per_page, include_totals) or Auth0's checkpoint pages (take, from)."""
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_role(session, role_id)
        page = await role_store.list_role_members(session, role_id=role_id, page=params.page, per_page=params.per_page)
    return list_body("users", page, [_member_json(m) for m in page.items], params, length=False)


@router.post("/roles/{role_id}/users")
async def post_role_users(request: Request, role_id: str, body: RoleUsersBody, caller: Caller = Depends(require("update:roles"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_role(session, role_id)
        if await user_store.missing_users(session, user_ids=body.users):
            raise ManagementError(404, "One or more of the users do not exist.", "inexistent_user")
        await role_store.assign_roles(session, user_ids=body.users, role_ids=[role_id])
        await audit(session, caller, "Assign users to a role", request, role_id=role_id, users=list(body.users))
    return Response(status_code=200)
