"""/api/v2/groups: groups, their members, nested groups, roles and mappings (docs/access-control.md "Groups").

Auth0's Management API v2 has no groups; these are Bastion's own endpoints, shaped after
Auth0's Authorization Extension API (`/groups`, `/groups/{id}/members`, `.../members/nested`,
`.../nested`, `.../roles`, `.../mappings`, `/users/{id}/groups`): member, nested-group and role
changes take a bare JSON array of ids, mappings are `{"connectionName", "groupName"}`. Objects
carry `id` (Bastion's v2 convention) where the extension had `_id`; lists have Bastion's paging
(`page`, `per_page`, `include_totals`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.exc import IntegrityError

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.roles import NO_ROLE, role_json
from bastion.security.handles import new_id
from bastion.storage import connections as connection_store
from bastion.storage import groups as group_store
from bastion.storage import roles as role_store
from bastion.storage import users as user_store
from bastion.storage.groups import Group, GroupMapping, GroupMember, NestedMember
from bastion.storage.paging import Page

__all__ = ["router", "group_json", "NO_GROUP"]

router = APIRouter()

NO_GROUP = ManagementError(404, "The group does not exist.", "inexistent_group")
_NO_USER = ManagementError(404, "The user does not exist.", "inexistent_user")
_NAME_TAKEN = ManagementError(409, "A group with the same name already exists.", "conflict")

# Ids in a body: as long as the columns that hold them; at most MAX_IDS of them per request.
MAX_IDS = 1000
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


# -- bodies ------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class GroupCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=1000)


class GroupUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=1000)


class MappingBody(_Body):
    """A mapping as the Authorization Extension writes it."""

    connectionName: str = Field(min_length=1, max_length=128)
    groupName: str = Field(min_length=1, max_length=255)


UserIds = Annotated[list[UserId], Body(min_length=1, max_length=MAX_IDS)]
ObjectIds = Annotated[list[ObjectId], Body(min_length=1, max_length=MAX_IDS)]
Mappings = Annotated[list[MappingBody], Body(min_length=1, max_length=MAX_IDS)]
MappingRefs = Annotated[list[ObjectId | MappingBody], Body(min_length=1, max_length=MAX_IDS)]


# -- shapes ----------------------------------------------------------------------------------------


def group_json(group: Group) -> dict:
    body = {"id": group.id, "name": group.name}
    if group.description is not None:
        body["description"] = group.description
    return body


def _member_json(member: GroupMember) -> dict:
    body = {"user_id": member.user_id}
    for key in ("email", "name", "picture"):
        if getattr(member, key) is not None:
            body[key] = getattr(member, key)
    return body


def _nested_member_json(entry: NestedMember) -> dict:
    return {"user": _member_json(entry.user), "group": group_json(entry.group)}


def _mapping_json(mapping: GroupMapping) -> dict:
    return {"id": mapping.id, "connectionName": mapping.connection_name, "groupName": mapping.group_name}


async def _existing_group(session, group_id: str) -> Group:
    group = await group_store.get_group(session, id=group_id)
    if group is None:
        raise NO_GROUP
    return group


# -- groups ------------------------------------------------------------------------------------------


@router.get("/groups")
async def list_groups(
    request: Request,
    params: PageParams = Depends(page_params),
    name_filter: str | None = Query(None, max_length=255),
    caller: Caller = Depends(require("read:groups")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await group_store.list_groups(session, page=params.page, per_page=params.per_page, name_filter=name_filter)
    return list_body("groups", page, [group_json(g) for g in page.items], params, length=False)


@router.post("/groups", status_code=201)
async def post_group(request: Request, body: GroupCreate, caller: Caller = Depends(require("create:groups"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if await group_store.find_group(session, name=body.name):
            raise _NAME_TAKEN
        try:
            group = await group_store.insert_group(session, id=new_id("grp_", 16), name=body.name, description=body.description)
        except IntegrityError:  # created meanwhile by another request
            raise _NAME_TAKEN from None
        await audit(session, caller, "Create a group", request, group_id=group.id)
    services.tenant.invalidate()
    return group_json(group)


@router.get("/groups/{group_id}")
async def get_group(request: Request, group_id: str, caller: Caller = Depends(require("read:groups"))):
    services = services_of(request)
    async with services.database.reader() as session:
        group = await _existing_group(session, group_id)
    return group_json(group)


@router.patch("/groups/{group_id}")
async def patch_group(request: Request, group_id: str, body: GroupUpdate, caller: Caller = Depends(require("update:groups"))):
    services = services_of(request)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ManagementError(400, "Payload validation error: 'name' cannot be null.", "invalid_body")
    async with services.database.transaction() as session:
        current = await _existing_group(session, group_id)
        if "name" in changes and changes["name"] != current.name and await group_store.find_group(session, name=changes["name"]):
            raise _NAME_TAKEN
        try:
            group = await group_store.update_group(session, id=group_id, changes=changes)
        except IntegrityError:
            raise _NAME_TAKEN from None
        await audit(session, caller, "Update a group", request, group_id=group_id, fields=sorted(changes))
    return group_json(group)


@router.delete("/groups/{group_id}", status_code=204)
async def delete_group(request: Request, group_id: str, caller: Caller = Depends(require("delete:groups"))):
    """The group's memberships, nestings (as parent and as child), roles and mappings go with it."""
    services = services_of(request)
    async with services.database.transaction() as session:
        if not await group_store.delete_group(session, id=group_id):
            raise NO_GROUP
        await audit(session, caller, "Delete a group", request, group_id=group_id)
    services.tenant.invalidate()
    return Response(status_code=204)


# -- members ---------------------------------------------------------------------------------------------


@router.get("/groups/{group_id}/members")
async def list_group_members(
    request: Request, group_id: str, params: PageParams = Depends(page_params),
    caller: Caller = Depends(require("read:users", "read:groups", all_of=True)),
):
    """The users added to the group: `[{user_id, email, name, picture}]`, offset or checkpoint pages."""
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_group(session, group_id)
        page = await group_store.list_members(session, group_id=group_id, page=params.page, per_page=params.per_page)
    return list_body("users", page, [_member_json(m) for m in page.items], params, length=False)


@router.get("/groups/{group_id}/members/nested")
async def list_group_nested_members(
    request: Request, group_id: str, params: PageParams = Depends(page_params),
    caller: Caller = Depends(require("read:users", "read:groups", all_of=True)),
):
    """Members of the group and of the groups nested in it: `[{user, group}]`, `group` being
    the one the user was added to (the extension's "Get Nested Group Members")."""
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_group(session, group_id)
        page = await group_store.list_nested_members(session, group_id=group_id, page=params.page, per_page=params.per_page)
    return list_body("nested", page, [_nested_member_json(m) for m in page.items], params, length=False)


@router.patch("/groups/{group_id}/members", status_code=204)
async def add_group_members(request: Request, group_id: str, user_ids: UserIds, caller: Caller = Depends(require("update:groups"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        if await user_store.missing_users(session, user_ids=user_ids):
            raise ManagementError(404, "One or more of the users do not exist.", "inexistent_user")
        await group_store.add_members(session, group_id=group_id, user_ids=user_ids)
        await audit(session, caller, "Add members to a group", request, group_id=group_id, users=list(user_ids))
    return Response(status_code=204)


@router.delete("/groups/{group_id}/members", status_code=204)
async def remove_group_members(request: Request, group_id: str, user_ids: UserIds, caller: Caller = Depends(require("update:groups"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        await group_store.remove_members(session, group_id=group_id, user_ids=user_ids)
        await audit(session, caller, "Remove members from a group", request, group_id=group_id, users=list(user_ids))
    return Response(status_code=204)


# -- nested groups -------------------------------------------------------------------------------------------


@router.get("/groups/{group_id}/nested")
async def list_nested_groups(
    request: Request, group_id: str, params: PageParams = Depends(page_params), caller: Caller = Depends(require("read:groups"))
):
    """The groups nested directly in this one (their members are this group's members too)."""
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_group(session, group_id)
        page = await group_store.list_nested_groups(session, group_id=group_id, page=params.page, per_page=params.per_page)
    return list_body("groups", page, [group_json(g) for g in page.items], params, length=False)


@router.patch("/groups/{group_id}/nested", status_code=204)
async def add_nested_groups(request: Request, group_id: str, group_ids: ObjectIds, caller: Caller = Depends(require("update:groups"))):
    """409 when a group would become nested in itself (directly or through other groups)."""
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        if await group_store.missing_groups(session, ids=group_ids):
            raise ManagementError(404, "One or more of the groups do not exist.", "inexistent_group")
        try:
            await group_store.add_nested_groups(session, group_id=group_id, nested_group_ids=group_ids)
        except group_store.GroupCycle as cycle:
            raise ManagementError(
                409, f"Nesting {', '.join(cycle.nested_group_ids)} in {group_id} would make a group nested in itself.", "conflict"
            ) from None
        await audit(session, caller, "Add nested groups to a group", request, group_id=group_id, groups=list(group_ids))
    return Response(status_code=204)


@router.delete("/groups/{group_id}/nested", status_code=204)
async def remove_nested_groups(request: Request, group_id: str, group_ids: ObjectIds, caller: Caller = Depends(require("update:groups"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        await group_store.remove_nested_groups(session, group_id=group_id, nested_group_ids=group_ids)
        await audit(session, caller, "Remove nested groups from a group", request, group_id=group_id, groups=list(group_ids))
    return Response(status_code=204)


# -- roles ------------------------------------------------------------------------------------------------------


@router.get("/groups/{group_id}/roles")
async def list_group_roles(
    request: Request, group_id: str, params: PageParams = Depends(page_params),
    caller: Caller = Depends(require("read:groups", "read:roles", all_of=True)),
):
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_group(session, group_id)
        page = await group_store.list_group_roles(session, group_id=group_id, page=params.page, per_page=params.per_page)
    return list_body("roles", page, [role_json(r) for r in page.items], params, length=False)


@router.patch("/groups/{group_id}/roles", status_code=204)
async def add_group_roles(request: Request, group_id: str, role_ids: ObjectIds, caller: Caller = Depends(require("update:groups"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        if await role_store.missing_roles(session, ids=role_ids):
            raise NO_ROLE
        await group_store.add_group_roles(session, group_id=group_id, role_ids=role_ids)
        await audit(session, caller, "Add roles to a group", request, group_id=group_id, roles=list(role_ids))
    return Response(status_code=204)


@router.delete("/groups/{group_id}/roles", status_code=204)
async def remove_group_roles(request: Request, group_id: str, role_ids: ObjectIds, caller: Caller = Depends(require("update:groups"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        await group_store.remove_group_roles(session, group_id=group_id, role_ids=role_ids)
        await audit(session, caller, "Remove roles from a group", request, group_id=group_id, roles=list(role_ids))
    return Response(status_code=204)


# -- mappings -------------------------------------------------------------------------------------------------------


@router.get("/groups/{group_id}/mappings")
async def list_group_mappings(request: Request, group_id: str, caller: Caller = Depends(require("read:groups"))):
    """All the group's mappings (a group has few): `[{id, connectionName, groupName}]`."""
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_group(session, group_id)
        mappings = await group_store.list_mappings(session, group_id=group_id)
    return [_mapping_json(m) for m in mappings]


@router.post("/groups/{group_id}/mappings", status_code=201)
async def add_group_mappings(request: Request, group_id: str, mappings: Mappings, caller: Caller = Depends(require("update:groups"))):
    """Answers the group's mappings, with the new ones' ids. The connections must exist (400)."""
    services = services_of(request)
    pairs = [(m.connectionName, m.groupName) for m in mappings]
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        for connection in dict.fromkeys(c for c, _ in pairs):
            if await connection_store.find_connection(session, name=connection) is None:
                raise ManagementError(400, f"Payload validation error: no connection is named {connection!r}.", "invalid_body")
        await group_store.add_mappings(session, group_id=group_id, mappings=pairs)
        await audit(session, caller, "Add mappings to a group", request, group_id=group_id, mappings=[list(p) for p in pairs])
        stored = await group_store.list_mappings(session, group_id=group_id)
    return [_mapping_json(m) for m in stored]


@router.delete("/groups/{group_id}/mappings", status_code=204)
async def remove_group_mappings(request: Request, group_id: str, refs: MappingRefs, caller: Caller = Depends(require("update:groups"))):
    """Takes mapping ids (as the extension) or `{connectionName, groupName}` objects, or both."""
    services = services_of(request)
    ids = [r for r in refs if isinstance(r, str)]
    pairs = [(r.connectionName, r.groupName) for r in refs if isinstance(r, MappingBody)]
    async with services.database.transaction() as session:
        await _existing_group(session, group_id)
        await group_store.remove_mappings(session, group_id=group_id, ids=ids, mappings=pairs)
        await audit(session, caller, "Remove mappings from a group", request, group_id=group_id, ids=ids, mappings=[list(p) for p in pairs])
    return Response(status_code=204)


# -- a user's groups ---------------------------------------------------------------------------------------------------


@router.get("/users/{user_id}/groups")
async def list_user_groups(
    request: Request, user_id: str, params: PageParams = Depends(page_params),
    calculate: bool = Query(False),
    caller: Caller = Depends(require("read:users", "read:groups", all_of=True)),
):
    """The groups the user was added to; with `calculate=true` every group they are a member of
    (added, inherited through nesting, or mapped from the upstream groups their identities
    reported at their last logins), as the extension's `/users/{id}/groups/calculate`."""
    services = services_of(request)
    async with services.database.reader() as session:
        if await user_store.get_user(session, user_id=user_id) is None:
            raise _NO_USER
        if calculate:
            upstream = await group_store.user_upstream_groups(session, user_id=user_id)
            every = await group_store.effective_groups(session, user_id=user_id, upstream=upstream)
            page = Page(every[params.offset:params.offset + params.per_page], params.offset, params.per_page, len(every))
        else:
            page = await group_store.list_user_groups(session, user_id=user_id, page=params.page, per_page=params.per_page)
    return list_body("groups", page, [group_json(g) for g in page.items], params, length=False)
