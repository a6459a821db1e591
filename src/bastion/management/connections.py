"""/api/v2/connections, in Auth0's shape; an upstream connection's client secret is sealed at
rest and never shown (tenant/connections.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.schemas import ConnectionCreate, ConnectionUpdate
from bastion.security.handles import new_id
from bastion.storage import connections as connection_store
from bastion.storage import groups as group_store
from bastion.storage import users as user_store
from bastion.tenant.connections import (
    InvalidOptions,
    connection_to_json,
    prepare_options,
)

router = APIRouter()

_NOT_FOUND = ManagementError(404, "The connection does not exist", "inexistent_connection")


@router.get("/connections")
async def list_connections(
    request: Request,
    params: PageParams = Depends(page_params),
    strategy: list[str] | None = Query(None),
    name: str | None = Query(None),
    caller: Caller = Depends(require("read:connections")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await connection_store.list_connections(
            session, page=params.page, per_page=params.per_page, strategies=strategy, name=name
        )
    return list_body("connections", page, [connection_to_json(c) for c in page.items], params)


@router.post("/connections", status_code=201)
async def post_connection(request: Request, body: ConnectionCreate, caller: Caller = Depends(require("create:connections"))):
    services = services_of(request)
    try:
        options = prepare_options(services.sealer, body.strategy, body.options, display_name=body.display_name)
    except InvalidOptions as problem:
        raise ManagementError(400, str(problem), "invalid_body") from None
    async with services.database.transaction() as session:
        if await connection_store.find_connection(session, name=body.name):
            raise ManagementError(409, "A connection with the same name already exists", "connection_conflict")
        connection = await connection_store.insert_connection(
            session, id=new_id("con_"), name=body.name, strategy=body.strategy, options=options,
            enabled_clients=body.enabled_clients, is_domain_connection=body.is_domain_connection,
        )
        await audit(session, caller, "Create a connection", request, connection_id=connection.id)
    services.tenant.invalidate()
    return connection_to_json(connection)


@router.get("/connections/{id}")
async def get_connection(request: Request, id: str, caller: Caller = Depends(require("read:connections"))):
    services = services_of(request)
    async with services.database.reader() as session:
        connection = await connection_store.get_connection(session, id=id)
    if connection is None:
        raise _NOT_FOUND
    return connection_to_json(connection)


@router.patch("/connections/{id}")
async def patch_connection(request: Request, id: str, body: ConnectionUpdate, caller: Caller = Depends(require("update:connections"))):
    services = services_of(request)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    display_name = changes.pop("display_name", None)
    async with services.database.transaction() as session:
        current = await connection_store.get_connection(session, id=id)
        if current is None:
            raise _NOT_FOUND
        if "options" in changes or display_name is not None:
            try:
                changes["options"] = prepare_options(
                    services.sealer, current.strategy, changes.get("options"), current=current.options, display_name=display_name,
                )
            except InvalidOptions as problem:
                raise ManagementError(400, str(problem), "invalid_body") from None
        connection = await connection_store.update_connection(session, id=id, changes=changes)
        assert connection is not None
        await audit(session, caller, "Update a connection", request, connection_id=id)
    services.tenant.invalidate()
    return connection_to_json(connection)


@router.delete("/connections/{id}", status_code=204)
async def delete_connection(request: Request, id: str, caller: Caller = Depends(require("delete:connections"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        connection = await connection_store.get_connection(session, id=id)
        if connection is None:
            raise _NOT_FOUND
        await user_store.delete_connection_users(session, connection=connection.name)
        await group_store.delete_connection_mappings(session, connection=connection.name)
        await connection_store.delete_connection(session, id=id)
        await audit(session, caller, "Delete a connection", request, connection_id=id)
    services.tenant.invalidate()
    return Response(status_code=204)
