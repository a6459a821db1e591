"""/api/v2/log-streams (Auth0's shapes; docs/log-streams.md). Each answer also carries a read-only
`delivery` object (a Bastion extension), ignored when sent back."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import ManagementError
from bastion.log_streams.categories import type_filter
from bastion.log_streams.config import check_filters, check_sink, check_type, merge_sink, open_sink, seal_sink
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.security.handles import new_id
from bastion.storage import log_streams as store
from bastion.storage.records import LogStream

router = APIRouter()

_SETTABLE_STATUSES = ("active", "paused", "suspended")  # Auth0's enum; Bastion also suspends a failing stream


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `id`, `delivery`... of an exported stream are ignored


class LogStreamCreate(_Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    type: Any
    sink: Any
    filters: Any = None
    isPriority: bool = False
    status: str | None = None
    startFrom: str | None = None  # Auth0's ISO 8601 date: deliver the events logged since then (default: from now on)
    pii_config: Any = None


class LogStreamUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    type: Any = None  # refused unless it is the stream's own type (a round trip)
    status: str | None = None
    sink: Any = None
    filters: Any = None
    isPriority: bool | None = None
    pii_config: Any = None


def _date(moment) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _state(stream: LogStream) -> str:
    if stream.failures:
        return "failing"
    return "ok" if stream.last_success_at else "idle"


async def _stream_json(session, services, stream: LogStream) -> dict:
    pending = await store.count_pending_events(session, position=stream.position, selection=type_filter(stream.filters))
    return {
        "id": stream.id,
        "name": stream.name,
        "type": stream.type,
        "status": stream.status,
        "sink": open_sink(services.sealer, stream.sink_sealed),
        "filters": stream.filters,
        "isPriority": stream.is_priority,
        "delivery": {
            "state": _state(stream),
            "failures": stream.failures,
            "last_error": stream.last_error,
            "last_attempt_at": _date(stream.last_attempt_at),
            "last_success_at": _date(stream.last_success_at),
            "next_attempt_at": _date(stream.next_attempt_at),
            "pending": pending,
        },
    }


def _check_status(status: str | None) -> None:
    if status is not None and status not in _SETTABLE_STATUSES:
        raise ManagementError(
            400, f"Payload validation error: 'No enum match for: \"{status}\"' on property status (active, paused or suspended).",
            "invalid_body",
        )


def _start_from(value: str | None) -> datetime | None:
    """Auth0's `startFrom`, an ISO 8601 date (UTC when it names no offset), within years the
    database can store once in UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=moment.tzinfo or timezone.utc).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        moment = None
    if moment is None or not 1970 <= moment.year <= 9998:
        raise ManagementError(400, "Payload validation error: 'startFrom must be an ISO 8601 date'.", "invalid_body")
    return moment


def _check_pii_config(pii_config: Any) -> None:
    """Auth0's masking or hashing of PII fields in streamed events is not built: refused rather than
    ignored, so nobody believes their receiver gets masked events when it does not."""
    if pii_config is not None:
        raise ManagementError(400, "Payload validation error: 'pii_config is not supported by Bastion'.", "invalid_body")


async def _found(session, stream_id: str) -> LogStream:
    stream = await store.get_log_stream(session, id=stream_id)
    if stream is None:
        raise ManagementError(404, "The log stream does not exist.", "inexistent_log_stream")
    return stream


@router.get("/log-streams")
async def list_log_streams(request: Request, caller: Caller = Depends(require("read:log_streams"))):
    """A plain list, as Auth0 answers (no paging)."""
    services = services_of(request)
    async with services.database.reader() as session:
        return [await _stream_json(session, services, s) for s in await store.list_log_streams(session)]


@router.post("/log-streams", status_code=201)
async def post_log_stream(request: Request, body: LogStreamCreate, caller: Caller = Depends(require("create:log_streams"))):
    services = services_of(request)
    stream_type = check_type(body.type)
    sink = check_sink(stream_type, body.sink)
    filters = check_filters(body.filters)
    _check_status(body.status)
    _check_pii_config(body.pii_config)
    start = _start_from(body.startFrom)
    stream_id = new_id("lst_", 16)
    async with services.database.transaction() as session:
        await audit(session, caller, "Create a log stream", request, log_stream_id=stream_id, type=stream_type)
        stream = await store.insert_log_stream(
            session, id=stream_id, name=body.name or f"{stream_type} log stream", type=stream_type,
            status=body.status or "active", sink_sealed=seal_sink(services.sealer, sink), filters=filters,
            is_priority=body.isPriority, position=await store.last_log_seq(session, before=start),  # as Auth0: from now on
        )
        return await _stream_json(session, services, stream)


@router.get("/log-streams/{stream_id}")
async def get_log_stream(request: Request, stream_id: str, caller: Caller = Depends(require("read:log_streams"))):
    services = services_of(request)
    async with services.database.reader() as session:
        return await _stream_json(session, services, await _found(session, stream_id))


@router.patch("/log-streams/{stream_id}")
async def patch_log_stream(
    request: Request, stream_id: str, body: LogStreamUpdate, caller: Caller = Depends(require("update:log_streams")),
):
    services = services_of(request)
    given = body.model_fields_set
    _check_status(body.status)
    _check_pii_config(body.pii_config)
    async with services.database.transaction() as session:
        stream = await _found(session, stream_id)
        if "type" in given and body.type != stream.type:
            raise ManagementError(
                400, "Payload validation error: 'Additional properties not allowed: type'. A log stream's type cannot change.",
                "invalid_body",
            )
        if body.isPriority is not None and body.isPriority != stream.is_priority:
            raise ManagementError(400, "Payload validation error: 'isPriority cannot be changed once set'.", "invalid_body")
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name
        if "sink" in given and body.sink is not None:
            changes["sink_sealed"] = seal_sink(
                services.sealer, merge_sink(stream.type, open_sink(services.sealer, stream.sink_sealed), body.sink)
            )
        if "filters" in given:
            changes["filters"] = check_filters(body.filters)
        if body.status is not None and body.status != stream.status:
            changes["status"] = body.status
            if body.status == "active":  # resumed (from paused or suspended): retry at once, from where it stopped
                changes.update(failures=0, next_attempt_at=None)
        if changes:
            stream = await store.update_log_stream(session, id=stream_id, **changes)
            await audit(session, caller, "Update a log stream", request, log_stream_id=stream_id,
                        fields=sorted(k.removesuffix("_sealed") for k in changes if k not in ("failures", "next_attempt_at")))
        return await _stream_json(session, services, stream)


@router.delete("/log-streams/{stream_id}", status_code=204)
async def delete_log_stream(request: Request, stream_id: str, caller: Caller = Depends(require("delete:log_streams"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if not await store.delete_log_stream(session, id=stream_id):
            raise ManagementError(404, "The log stream does not exist.", "inexistent_log_stream")
        await audit(session, caller, "Delete a log stream", request, log_stream_id=stream_id)
    return Response(status_code=204)
