"""The Management API application, mounted at /api/v2."""

from __future__ import annotations

import ipaddress
import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.errors import ManagementError
from bastion.management import account_emails, clients, connections, email_templates, grants, groups, log_streams, logs, resource_servers, roles, rules, tenant_settings, users
from bastion.management.rate_limit import RateLimiter
from bastion.services import Services

__all__ = ["create_management_app"]

log = logging.getLogger("bastion.management")



def _unstorable(value) -> bool:
    """True when a JSON value holds text no database column can store: NUL or a lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


def _error(error: ManagementError) -> JSONResponse:
    return JSONResponse(error.as_json(), status_code=error.status)


def _validation_message(error: RequestValidationError) -> tuple[str, str]:
    first = error.errors()[0] if error.errors() else {}
    location = [str(p) for p in first.get("loc", ())]
    where = location[0] if location else "body"
    field = ".".join(location[1:]) or where
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return f"Payload validation error: 'Missing required property: {field}'.", where
    return f"Payload validation error: '{message}' on property {field}.", where


def create_management_app(services: Services) -> FastAPI:
    app = FastAPI(title="Bastion Management API", version="2", docs_url="/docs", openapi_url="/openapi.json", redoc_url=None)
    app.state.services = services
    app.state.trusted_proxies = tuple(ipaddress.ip_network(p, strict=False) for p in services.settings.trusted_proxies)
    settings = services.settings
    app.state.rate_limiter = (
        RateLimiter(rate=settings.management_rate_limit, burst=settings.management_rate_burst)
        if settings.management_rate_limit > 0 else None
    )

    @app.middleware("http")
    async def refuse_unstorable_text(request: Request, call_next):
        """NUL characters and lone surrogates cannot be stored (PostgreSQL refuses them): a 400, not a 500."""
        if "\x00" in request.url.path or "%00" in request.url.query:
            return _error(ManagementError(400, "Path and query must not contain NUL characters", "invalid_query_string"))
        if request.method in ("POST", "PUT", "PATCH"):
            try:
                parsed = json.loads(await request.body() or b"null")
            except (ValueError, RecursionError):
                parsed = None  # FastAPI answers the malformed body itself
            if _unstorable(parsed):
                return _error(ManagementError(400, "Payload validation error: text must not contain NUL characters or lone surrogates", "invalid_body"))
        response = await call_next(request)
        decision = getattr(request.state, "rate_limit", None)
        if decision is not None:
            response.headers.update(decision.headers())
        return response

    for module in (clients, resource_servers, connections, users, roles, groups, logs, log_streams, rules, grants, tenant_settings, account_emails, email_templates):
        app.include_router(module.router)

    @app.exception_handler(ManagementError)
    async def management_error(_request: Request, error: ManagementError):
        return _error(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError):
        message, where = _validation_message(error)
        if where in ("query", "path"):
            message = message.replace("Payload validation error", "Query validation error")
        code = "invalid_body" if where == "body" else "invalid_query_string"
        return _error(ManagementError(400, message, code))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException):
        message = "Not Found" if error.status_code == 404 else str(error.detail)
        return _error(ManagementError(error.status_code, message))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception):
        log.exception("management API error")
        return _error(ManagementError(500, "Internal error"))

    return app
