"""/api/v2/resource-servers (APIs)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.schemas import ResourceServerCreate, ResourceServerUpdate
from bastion.security.handles import new_id
from bastion.storage import permissions as permission_store
from bastion.storage import resource_servers as api_store
from bastion.storage.records import ResourceServer

router = APIRouter()

_NOT_FOUND = ManagementError(404, "The resource server does not exist", "inexistent_resource_server")


def resource_server_json(api: ResourceServer) -> dict:
    return {
        "id": api.id,
        "name": api.name,
        "identifier": api.identifier,
        "scopes": api.scopes,
        "signing_alg": api.signing_alg,
        "token_lifetime": api.token_lifetime,
        "token_lifetime_for_web": min(api.token_lifetime, 7200),
        "allow_offline_access": api.allow_offline_access,
        "skip_consent_for_verifiable_first_party_clients": api.skip_consent_for_verifiable_first_party_clients,
        "enforce_policies": api.enforce_policies,
        "token_dialect": api.token_dialect,
        "is_system": api.is_system,
    }


@router.get("/resource-servers")
async def list_resource_servers(request: Request, params: PageParams = Depends(page_params), caller: Caller = Depends(require("read:resource_servers"))):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await api_store.list_resource_servers(session, page=params.page, per_page=params.per_page)
    return list_body("resource_servers", page, [resource_server_json(a) for a in page.items], params)


@router.post("/resource-servers", status_code=201)
async def post_resource_server(request: Request, body: ResourceServerCreate, caller: Caller = Depends(require("create:resource_servers"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if await api_store.find_resource_server(session, identifier=body.identifier):
            raise ManagementError(409, "A resource server with the same identifier already exists", "conflict")
        api = await api_store.insert_resource_server(
            session,
            id=new_id(length=24),
            name=body.name or body.identifier,
            identifier=body.identifier,
            scopes=[s.model_dump() for s in body.scopes or []],
            signing_alg=body.signing_alg or services.settings.signing_alg,
            token_lifetime=body.token_lifetime or 86400,
            allow_offline_access=bool(body.allow_offline_access),
            skip_consent_for_verifiable_first_party_clients=True if body.skip_consent_for_verifiable_first_party_clients is None else body.skip_consent_for_verifiable_first_party_clients,
            enforce_policies=bool(body.enforce_policies),
            token_dialect=body.token_dialect or "access_token",
            is_system=False,
        )
        await audit(session, caller, "Create a resource server", request, resource_server_id=api.id)
    services.tenant.invalidate()
    return resource_server_json(api)


@router.get("/resource-servers/{id:path}")
async def get_resource_server(request: Request, id: str, caller: Caller = Depends(require("read:resource_servers"))):
    services = services_of(request)
    async with services.database.reader() as session:
        api = await api_store.get_resource_server(session, id=id)
    if api is None:
        raise _NOT_FOUND
    return resource_server_json(api)


@router.patch("/resource-servers/{id:path}")
async def patch_resource_server(request: Request, id: str, body: ResourceServerUpdate, caller: Caller = Depends(require("update:resource_servers"))):
    services = services_of(request)
    changes = body.model_dump(exclude_unset=True)
    changes = {k: v for k, v in changes.items() if v is not None}
    if "scopes" in changes:
        changes["scopes"] = [{"value": s["value"], "description": s.get("description", "")} for s in changes["scopes"]]
    async with services.database.transaction() as session:
        current = await api_store.get_resource_server(session, id=id)
        if current is None:
            raise _NOT_FOUND
        if current.is_system:
            raise ManagementError(403, "The Management API cannot be modified", "operation_not_supported")
        api = await api_store.update_resource_server(session, id=current.id, changes=changes)
        if "scopes" in changes:  # a scope the API no longer defines is no role's or user's permission any more
            await permission_store.prune_permissions(session, resource_server_identifier=api.identifier, keep=api.scope_values)
        await audit(session, caller, "Update a resource server", request, resource_server_id=current.id)
    services.tenant.invalidate()
    return resource_server_json(api)


@router.delete("/resource-servers/{id:path}", status_code=204)
async def delete_resource_server(request: Request, id: str, caller: Caller = Depends(require("delete:resource_servers"))):
    """Its permissions leave every role and user with it (ON DELETE CASCADE)."""
    services = services_of(request)
    async with services.database.transaction() as session:
        current = await api_store.get_resource_server(session, id=id)
        if current is None:
            raise _NOT_FOUND
        if current.is_system:
            raise ManagementError(403, "The Management API cannot be deleted", "operation_not_supported")
        await api_store.delete_resource_server(session, id=current.id)
        await audit(session, caller, "Delete a resource server", request, resource_server_id=current.id)
    services.tenant.invalidate()
    return Response(status_code=204)
