"""/api/v2/grants: the consents users gave applications (Auth0's shape).

    GET    /grants?user_id=&client_id=&audience=&page=&per_page=&include_totals=
           -> [{"id", "clientID", "user_id", "audience", "scope": [...]}]
    DELETE /grants/{id}          204; the application asks for consent again
    DELETE /grants?user_id=      204; every grant of the user
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.storage import user_grants
from bastion.storage.paging import Page
from bastion.storage.records import UserGrant

router = APIRouter()


def grant_to_json(grant: UserGrant) -> dict:
    return {"id": grant.id, "clientID": grant.client_id, "user_id": grant.user_id, "audience": grant.audience, "scope": list(grant.scope)}


@router.get("/grants")
async def list_grants(
    request: Request,
    user_id: str | None = Query(None),
    client_id: str | None = Query(None),
    audience: str | None = Query(None),
    paging: PageParams = Depends(page_params),
    caller: Caller = Depends(require("read:grants")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        grants = await user_grants.list_user_grants(session, user_id=user_id, client_id=client_id, audience=audience)
    window = grants[paging.offset:paging.offset + paging.per_page]  # a user's grants are few: paged in memory
    page = Page(window, paging.offset, paging.per_page, len(grants))
    return list_body("grants", page, [grant_to_json(g) for g in window], paging)


@router.delete("/grants/{grant_id}", status_code=204)
async def delete_grant(request: Request, grant_id: str, caller: Caller = Depends(require("delete:grants"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if not await user_grants.delete_user_grant(session, id=grant_id):
            raise ManagementError(404, "The grant does not exist.", "inexistent_grant")
        await audit(session, caller, "Delete a grant", request, grant_id=grant_id)
    return Response(status_code=204)


@router.delete("/grants", status_code=204)
async def delete_user_grants(request: Request, user_id: str = Query(...), caller: Caller = Depends(require("delete:grants"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await user_grants.delete_user_grants_for(session, user_id=user_id)
        await audit(session, caller, "Delete the grants of a user", request, user_id=user_id)
    return Response(status_code=204)
