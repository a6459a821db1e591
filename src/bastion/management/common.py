"""What every Management API router needs: the services of the app, and the audit log."""

from __future__ import annotations

from fastapi import Request

from bastion.events import EventType, record_event
from bastion.management.auth import Caller
from bastion.services import Services
from bastion.web import client_ip

__all__ = ["services_of", "audit"]


def services_of(request: Request) -> Services:
    return request.app.state.services


async def audit(session, caller: Caller, description: str, request: Request, *, rules_execution: dict | None = None, **details) -> None:
    """Log a successful Management API operation (Auth0's `sapi`)."""
    await record_event(
        session,
        EventType.SUCCESS_API_OPERATION,
        description=description,
        rules_execution=rules_execution,
        client_id=caller.client_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        details={"request": {"method": request.method, "path": request.url.path}, **details},
    )
