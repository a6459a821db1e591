"""HTTP edge helpers shared by every route: parameters, the caller's address, JSON answers,
and the request-size limit."""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.errors import OAuthError

__all__ = ["client_ip", "request_hostname", "read_params", "read_form", "clean_params", "json_response", "BodySizeLimit"]


def client_ip(request: Request) -> str:
    """The caller's address: the TCP peer, or, when the peer is a trusted proxy
    (BASTION_TRUSTED_PROXIES), the right-most untrusted address of X-Forwarded-For."""
    peer = request.client.host if request.client else "0.0.0.0"
    proxies = getattr(request.app.state, "trusted_proxies", ())
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def request_hostname(request: Request) -> str:
    """The host name the client asked for (Host header, without port or IPv6 brackets, lower
    case), as `request.url.hostname` gives it without building the whole URL."""
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server")
        return str(server[0]) if server else ""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host[1:]
    return host.split(":", 1)[0]


def _trusted(address: str, proxies) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
    )


def _check_text(value: str) -> str:
    """Refuse what no database column should hold: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise OAuthError("invalid_request", "Parameters must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise OAuthError("invalid_request", "Parameters must be valid UTF-8") from None
    return value


def clean_params(items) -> dict[str, str]:
    """String parameters from (key, value) pairs: each key once, no NUL, valid UTF-8."""
    params: dict[str, str] = {}
    for key, value in items:
        if not isinstance(value, str):
            raise OAuthError("invalid_request", "File uploads are not accepted here")
        if key in params:
            raise OAuthError("invalid_request", f"Parameter {key} is repeated")
        params[_check_text(key)] = _check_text(value)
    return params


async def read_form(request: Request) -> dict[str, str]:
    """A browser form's fields (for the login pages), cleaned like every other parameter."""
    try:
        form: FormData = await request.form()
    except Exception:  # malformed multipart or encoding
        raise OAuthError("invalid_request", "The form body could not be parsed") from None
    return clean_params(form.multi_items())


async def read_params(request: Request) -> dict[str, str]:
    """A form or JSON body as flat string parameters (JSON null values are dropped).

    Auth0's SDKs send JSON to /oauth/token; everything else sends forms.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(await request.body() or b"{}")
        except (ValueError, RecursionError):
            raise OAuthError("invalid_request", "The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise OAuthError("invalid_request", "The body must be a JSON object")
        pairs = []
        for key, value in data.items():
            if value is None:
                continue
            if isinstance(value, (dict, list)):
                value = json.dumps(value, ensure_ascii=False)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            pairs.append((key, str(value)))
        return clean_params(pairs)
    if content_type == "application/x-www-form-urlencoded":
        # Parsed as Starlette's form parser does (latin-1, then percent-decoding as UTF-8, blank
        # values kept), without its streaming machinery: this is every token request's body.
        body = await request.body()
        return clean_params(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    if content_type == "multipart/form-data":
        return await read_form(request)
    if request.method in ("GET", "HEAD"):
        return clean_params(request.query_params.multi_items())
    if not await request.body():
        return {}
    raise OAuthError("invalid_request", "Unsupported content type: send a form or JSON body")


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()):
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes  # routes that bound their bodies themselves

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt_prefixes and scope.get("path", "").startswith(self.exempt_prefixes)):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send)
                    return
        # Bodies here are small (forms, JSON): read them whole, up to the limit, then replay.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": "invalid_request", "error_description": "Request body too large"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
