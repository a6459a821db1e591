"""The tenant log: Auth0's event type codes, written in the caller's transaction, and an
event's Auth0 shape (the Management API and the log streams show the same)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage import log_events
from bastion.storage.records import LogEvent

__all__ = ["EventType", "record_event", "log_json"]


class EventType:
    SUCCESS_LOGIN = "s"
    FAILED_LOGIN = "f"
    FAILED_LOGIN_PASSWORD = "fp"
    FAILED_LOGIN_USERNAME = "fu"
    BLOCKED_ACCOUNT = "limit_wc"
    SUCCESS_SIGNUP = "ss"
    FAILED_SIGNUP = "fs"
    SUCCESS_LOGOUT = "slo"
    SUCCESS_CODE_EXCHANGE = "seacft"
    FAILED_CODE_EXCHANGE = "feacft"
    SUCCESS_CLIENT_CREDENTIALS = "seccft"
    FAILED_CLIENT_CREDENTIALS = "feccft"
    SUCCESS_PASSWORD_EXCHANGE = "sepft"
    FAILED_PASSWORD_EXCHANGE = "fepft"
    SUCCESS_REFRESH_EXCHANGE = "sertft"
    FAILED_REFRESH_EXCHANGE = "ferrt"
    SUCCESS_REVOCATION = "srrt"
    SUCCESS_CHANGE_PASSWORD_REQUEST = "scpr"
    SUCCESS_CHANGE_PASSWORD = "scp"
    SUCCESS_VERIFICATION_EMAIL = "sv"
    FAILED_VERIFICATION_EMAIL = "fv"
    FAILED_NOTIFICATION = "fn"  # an email the outbox gave up on (Auth0: "Failed to send email notification")
    SUCCESS_VERIFICATION_EMAIL_REQUEST = "svr"
    SUCCESS_API_OPERATION = "sapi"
    FAILED_API_OPERATION = "fapi"
    MFA_REQUIRED = "mfar"
    MFA_SUCCEEDED = "gd_auth_succeed"
    MFA_FAILED = "gd_auth_failed"
    MFA_ENROLLED = "gd_enrollment_complete"
    MFA_RECOVERY_SUCCEEDED = "gd_recovery_succeed"
    MFA_RECOVERY_FAILED = "gd_recovery_failed"


async def record_event(
    session: AsyncSession, type: str, *, description: str | None = None, rules_execution: dict[str, Any] | None = None, **fields: Any
) -> None:
    """Log an event; a login's rules execution record (RuleRun.execution_values) travels inside it,
    so recording rules costs no statement of its own."""
    if rules_execution and rules_execution.get("id"):
        details = dict(fields.pop("details", None) or {})
        details["rules_execution_id"] = rules_execution["id"]
        details["rules_execution"] = {k: v for k, v in rules_execution.items() if k != "id"}
        fields.update(details=details, rules_execution_id=rules_execution["id"])
    await log_events.insert_log_event(session, type=type, description=description, **fields)


def log_json(event: LogEvent, *, hostname: str | None = None) -> dict[str, Any]:
    """An event in Auth0's log shape: what /api/v2/logs answers and what log streams send.
    `hostname` is the issuer's host, where Auth0 puts the tenant's domain (SIEM apps key on it)."""
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
        "hostname": hostname,
        "details": event.details,
    }
    return {k: v for k, v in body.items() if v is not None}
