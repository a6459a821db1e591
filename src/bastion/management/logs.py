"""/api/v2/logs and /api/v2/users/{id}/logs (Auth0's log event shape)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request

from bastion.errors import ManagementError
from bastion.events import log_json
from bastion.management.auth import Caller, require
from bastion.management.common import services_of
from bastion.management.paging import PageParams, list_body, log_page_params, page_params
from bastion.storage import log_events

router = APIRouter()


@dataclass
class LogSearch:
    equals: dict[str, list[str]] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None


_TERM = re.compile(r'(\w+):("(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^\s"]+)')


def _date(value: str, *, end: bool) -> datetime | None:
    value = value.strip().strip('"')
    if value == "*":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ManagementError(400, f"Invalid date in search: {value}", "invalid_query_string") from None
    if end and len(value) == 10:  # a bare date includes its whole day
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_log_search(text: str | None) -> LogSearch:
    """The subset of Auth0's log search (Lucene syntax) Bastion answers: `field:value` terms
    joined by AND (or spaces), values quoted when they hold spaces, and `date:[FROM TO TO]`
    (ISO dates or `*`). Fields: log_id, type, user_id, user_name, client_id, client_name,
    connection, ip. Anything else is a 400 that says what is understood."""
    search = LogSearch()
    if not text or not text.strip():
        return search
    rest = _TERM.sub(" ", text)
    if any(word not in ("AND", "and") for word in rest.split()):
        raise ManagementError(
            400, "Unsupported search: use field:value terms joined by AND (fields: "
            + ", ".join(log_events.SEARCHABLE_FIELDS) + ", and date:[FROM TO TO])", "invalid_query_string",
        )
    for name, value in _TERM.findall(text):
        if name == "date":
            bounds = value.strip("[]").split(" TO ")
            if not value.startswith("[") or len(bounds) != 2:
                raise ManagementError(400, "Use date:[FROM TO TO] to search by date", "invalid_query_string")
            search.since, search.until = _date(bounds[0], end=False), _date(bounds[1], end=True)
            continue
        if name not in log_events.SEARCHABLE_FIELDS:
            raise ManagementError(400, f"Unsupported search field: {name}", "invalid_query_string")
        unquoted = value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        search.equals.setdefault(name, []).append(unquoted)
    if any(len(values) > 1 for values in search.equals.values()):
        raise ManagementError(400, "A field may appear once in a search", "invalid_query_string")
    return search


@router.get("/logs")
async def list_logs(
    request: Request, params: PageParams = Depends(log_page_params), q: str | None = Query(None),
    search: str | None = Query(None), caller: Caller = Depends(require("read:logs")),
):
    """`q` is what Auth0 documents and auth0-python sends; `search` is the older name. With
    `from` (a log_id) and `take`, Auth0's checkpoint: the events after that one, oldest first."""
    services = services_of(request)
    found = parse_log_search(q or search)
    async with services.database.reader() as session:
        if params.checkpoint:
            events = await log_events.log_events_after(
                session, log_id=params.cursor, take=params.per_page, equals=found.equals, since=found.since, until=found.until,
            )
            if events is None:
                raise ManagementError(400, "The 'from' log_id does not exist", "invalid_query_string")
            return [log_json(e, hostname=services.settings.issuer_host) for e in events]
        page = await log_events.list_log_events(
            session, page=params.page, per_page=params.per_page, equals=found.equals, since=found.since, until=found.until,
        )
    return list_body("logs", page, [log_json(e, hostname=services.settings.issuer_host) for e in page.items], params)


@router.get("/logs/{log_id}")
async def get_log(request: Request, log_id: str, caller: Caller = Depends(require("read:logs"))):
    services = services_of(request)
    async with services.database.reader() as session:
        event = await log_events.get_log_event(session, log_id=log_id)
    if event is None:
        raise ManagementError(404, "log not found", "inexistent_log")
    return log_json(event, hostname=services.settings.issuer_host)


@router.get("/users/{user_id}/logs")
async def user_logs(request: Request, user_id: str, params: PageParams = Depends(page_params), caller: Caller = Depends(require("read:logs"))):
    services = services_of(request)
    async with services.database.reader() as session:
        page = await log_events.list_log_events(session, page=params.page, per_page=params.per_page, user_id=user_id)
    return list_body("logs", page, [log_json(e, hostname=services.settings.issuer_host) for e in page.items], params)
