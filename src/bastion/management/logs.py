"""/api/v2/logs and /api/v2/users/{id}/logs (Auth0's log event shape)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.storage import log_events
from bastion.storage.records import LogEvent

router = APIRouter()


def log_json(event: LogEvent) -> dict:
    body = {
        "log_id": event.log_id,
        "_id": event.log_id,
        "date": event.date.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "type": event.type,
        "description": event.description,
        "client_id": event.client_id,
        "client_name": event.client_name,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "user_id": event.user_id,
        "user_name": event.user_name,
        "connection": event.connection,
        "details": event.details,
    }
    return {k: v for k, v in body.items() if v is not None}


def _type_filter(search: str | None) -> str | None:
    """The `search` forms Bastion understands: `type:X` (Auth0's log search syntax)."""
    if not search:
        return None
    field, _, value = search.partition(":")
    if field.strip() != "type" or not value.strip():
        raise ManagementError(400, "Unsupported search: use type:CODE", "invalid_query_string")
    return value.strip().strip('"')


@router.get("/logs")
async def list_logs(
    request: Request, params: PageParams = Depends(page_params), q: str | None = Query(None),
    search: str | None = Query(None), caller: Caller = Depends(require("read:logs")),
):
    """`q` is what Auth0 documents and auth0-python sends; `search` is the older name."""
    services = services_of(request)
    async with services.database.reader() as session:
        page = await log_events.list_log_events(session, page=params.page, per_page=params.per_page, type=_type_filter(q or search))
    return list_body("logs", page, [log_json(e) for e in page.items], params)


@router.get("/logs/{log_id}")
async def get_log(request: Request, log_id: str, caller: Caller = Depends(require("read:logs"))):
    services = services_of(request)
    async with services.database.reader() as session:
        event = await log_events.get_log_event(session, log_id=log_id)
    if event is None:
        raise ManagementError(404, "log not found", "inexistent_log")
    return log_json(event)


@router.get("/users/{user_id}/logs")
async def user_logs(request: Request, user_id: str, params: PageParams = Depends(page_params), caller: Caller = Depends(require("read:logs"))):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await log_events.list_log_events(session, page=params.page, per_page=params.per_page, user_id=user_id)
    return list_body("logs", page, [log_json(e) for e in page.items], params)
