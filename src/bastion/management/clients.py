"""/api/v2/clients and /api/v2/client-grants."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.schemas import ClientCreate, ClientGrantCreate, ClientGrantUpdate, ClientUpdate
from bastion.security.handles import new_id
from bastion.storage import clients as client_store
from bastion.storage import resource_servers as api_store
from bastion.storage.paging import Page
from bastion.storage.records import ClientGrant
from bastion.tenant.clients import client_to_json, create_client, rotate_client_secret

router = APIRouter()

_NO_CLIENT = ManagementError(404, "The client does not exist", "inexistent_client")


def _grant_json(grant: ClientGrant) -> dict:
    return {"id": grant.id, "client_id": grant.client_id, "audience": grant.audience, "scope": grant.scope}


@router.get("/clients")
async def list_clients(
    request: Request,
    params: PageParams = Depends(page_params),
    is_global: bool | None = Query(None),
    caller: Caller = Depends(require("read:clients")),
):
    services = services_of(request)
    with_secrets = "read:client_keys" in caller.scopes
    if is_global:
        return list_body("clients", Page([], params.offset, params.per_page, 0), [], params)
    async with services.database.reader() as session:
        page = await client_store.list_clients(session, page=params.page, per_page=params.per_page)
    items = [client_to_json(c, services.sealer, include_secret=with_secrets) for c in page.items]
    return list_body("clients", page, items, params)


@router.post("/clients", status_code=201)
async def post_client(request: Request, body: ClientCreate, caller: Caller = Depends(require("create:clients"))):
    services = services_of(request)
    fields = body.model_dump(exclude_none=True, exclude={"name", "app_type", "client_secret", "token_endpoint_auth_method", "grant_types"})
    async with services.database.transaction() as session:
        client, _secret = await create_client(
            session, services.sealer, name=body.name, app_type=body.app_type or "regular_web",
            client_secret=body.client_secret, token_endpoint_auth_method=body.token_endpoint_auth_method,
            grant_types=body.grant_types, **fields,
        )
        await audit(session, caller, "Create a client", request, client_id=client.client_id)
    services.tenant.invalidate()
    return client_to_json(client, services.sealer)


@router.get("/clients/{client_id}")
async def get_client(request: Request, client_id: str, caller: Caller = Depends(require("read:clients"))):
    services = services_of(request)
    async with services.database.reader() as session:
        client = await client_store.get_client(session, client_id=client_id)
    if client is None:
        raise _NO_CLIENT
    return client_to_json(client, services.sealer, include_secret="read:client_keys" in caller.scopes)


@router.patch("/clients/{client_id}")
async def patch_client(request: Request, client_id: str, body: ClientUpdate, caller: Caller = Depends(require("update:clients"))):
    services = services_of(request)
    changes = body.model_dump(exclude_unset=True, exclude={"client_secret"})
    changes = {k: v for k, v in changes.items() if v is not None}
    async with services.database.transaction() as session:
        current = await client_store.get_client(session, client_id=client_id)
        if current is None or current.is_system:
            raise _NO_CLIENT
        if "jwt_configuration" in changes:
            changes["jwt_configuration"] = {**current.jwt_configuration, **changes["jwt_configuration"]}
        if "refresh_token" in changes:
            changes["refresh_token"] = {**current.refresh_token, **changes["refresh_token"]}
        if "addons" in changes:  # each addon named is replaced whole; the others stay
            changes["addons"] = {**current.addons, **changes["addons"]}
        client = await client_store.update_client(session, client_id=client_id, changes=changes)
        if body.client_secret:
            client, _ = await rotate_client_secret(session, services.sealer, client_id=client_id, secret=body.client_secret)
        await audit(session, caller, "Update a client", request, client_id=client_id)
    services.tenant.invalidate()
    return client_to_json(client, services.sealer)


@router.post("/clients/{client_id}/rotate-secret")
async def rotate_secret(request: Request, client_id: str, caller: Caller = Depends(require("update:client_keys"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        rotated = await rotate_client_secret(session, services.sealer, client_id=client_id)
        if rotated is None:
            raise _NO_CLIENT
        await audit(session, caller, "Rotate a client secret", request, client_id=client_id)
    services.tenant.invalidate()
    return client_to_json(rotated[0], services.sealer)


@router.delete("/clients/{client_id}", status_code=204)
async def delete_client(request: Request, client_id: str, caller: Caller = Depends(require("delete:clients"))):
    services = services_of(request)
    if client_id == services.settings.bootstrap_client_id:
        raise ManagementError(400, "The bootstrap management client cannot be deleted: unset BASTION_BOOTSTRAP_CLIENT_ID first", "operation_not_supported")
    async with services.database.transaction() as session:
        if not await client_store.delete_client(session, client_id=client_id):
            raise _NO_CLIENT
        await audit(session, caller, "Delete a client", request, client_id=client_id)
    services.tenant.invalidate()
    return Response(status_code=204)


# -- client grants ---------------------------------------------------------

_NO_GRANT = ManagementError(404, "The client grant does not exist", "inexistent_client_grant")


@router.get("/client-grants")
async def list_client_grants(
    request: Request,
    params: PageParams = Depends(page_params),
    client_id: str | None = Query(None),
    audience: str | None = Query(None),
    caller: Caller = Depends(require("read:client_grants")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await client_store.list_client_grants(
            session, page=params.page, per_page=params.per_page, client_id=client_id, audience=audience
        )
    return list_body("client_grants", page, [_grant_json(g) for g in page.items], params)


@router.post("/client-grants", status_code=201)
async def post_client_grant(request: Request, body: ClientGrantCreate, caller: Caller = Depends(require("create:client_grants"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if await client_store.get_client(session, client_id=body.client_id) is None:
            raise ManagementError(404, "The client does not exist", "inexistent_client")
        api = await api_store.find_resource_server(session, identifier=body.audience)
        if api is None:
            raise ManagementError(404, "No resource server found by that identifier", "inexistent_resource_server")
        unknown = [s for s in body.scope if s not in api.scope_values]
        if unknown:
            raise ManagementError(400, f"Scopes not defined by the resource server: {', '.join(unknown)}", "invalid_body")
        if await client_store.find_client_grant(session, client_id=body.client_id, audience=body.audience):
            raise ManagementError(409, "A client grant for this client and audience already exists", "conflict")
        try:
            grant = await client_store.insert_client_grant(
                session, id=new_id("cgr_"), client_id=body.client_id, audience=body.audience, scope=body.scope
            )
        except IntegrityError:
            raise ManagementError(409, "A client grant for this client and audience already exists", "conflict") from None
        await audit(session, caller, "Create a client grant", request, client_grant_id=grant.id)
    services.tenant.invalidate()
    return _grant_json(grant)


@router.patch("/client-grants/{grant_id}")
async def patch_client_grant(request: Request, grant_id: str, body: ClientGrantUpdate, caller: Caller = Depends(require("update:client_grants"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        grant = await client_store.update_client_grant(session, id=grant_id, scope=body.scope)
        if grant is None:
            raise _NO_GRANT
        await audit(session, caller, "Update a client grant", request, client_grant_id=grant_id)
    services.tenant.invalidate()
    return _grant_json(grant)


@router.delete("/client-grants/{grant_id}", status_code=204)
async def delete_client_grant(request: Request, grant_id: str, caller: Caller = Depends(require("delete:client_grants"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if not await client_store.delete_client_grant(session, id=grant_id):
            raise _NO_GRANT
        await audit(session, caller, "Delete a client grant", request, client_grant_id=grant_id)
    services.tenant.invalidate()
    return Response(status_code=204)
