"""What the server does when a rule calls `api`: each effect performed (or, in a dry
run, recorded and answered without being performed), and every one listed in the
execution record.

    http.request                 httpx, with a timeout, a response-size limit, an SSRF guard
                                 (no private, loopback or link-local address unless
                                 BASTION_RULES_HTTP_ALLOW_PRIVATE) and the optional host allow-list
    users.update_app_metadata    merged and persisted (Management API PATCH semantics), for the
    users.update_user_metadata   user of this login only
    email.send                   through the configured SMTP server
    redirect.encode_token        an HS256 token for an external page (a key derived from the
    redirect.validate_token      master key unless the rule gives its own secret)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from bastion.keys.jose import JoseError, sign_hs256, verify_hs256
from bastion.security.handles import digest
from bastion.services import Services
from bastion.storage import users as user_store
from bastion.tenant.users import merge_metadata

__all__ = ["EffectError", "Effects"]

_MAX_TIMEOUT = 15.0


class EffectError(Exception):
    """Refused or failed; the rule receives the message as an exception."""


class Effects:
    """Handles the `api` calls of one rule execution."""

    def __init__(self, services: Services, *, user_id: str | None, user_metadata: dict[str, dict], dry_run: bool):
        self._services = services
        self._settings = services.settings
        self._user_id = user_id
        self._metadata = user_metadata  # the pipeline user's current metadata, by kind
        self.dry_run = dry_run
        self.performed: list[dict[str, Any]] = []

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        handler = {
            "http.request": self.http_request,
            "users.update_app_metadata": lambda p: self.update_metadata("app_metadata", p),
            "users.update_user_metadata": lambda p: self.update_metadata("user_metadata", p),
            "email.send": self.send_email,
            "redirect.encode_token": self.encode_token,
            "redirect.validate_token": self.validate_token,
        }.get(method)
        if handler is None:
            raise EffectError(f"unknown api call {method}")
        return await handler(params)

    def _record(self, effect: dict[str, Any]) -> None:
        self.performed.append({**effect, "performed": not self.dry_run})

    # -- http -------------------------------------------------------------

    async def http_request(self, params: dict[str, Any]) -> dict[str, Any]:
        method = str(params.get("method", "GET")).upper()
        url = str(params.get("url", ""))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EffectError(f"api.http accepts http and https URLs only, not {url!r}")
        await self._check_destination(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        effect = {"type": "http", "method": method, "url": f"{parts.scheme}://{parts.netloc}{parts.path}"}
        if self.dry_run:
            self._record({**effect, "status": None})
            return {"status_code": 204, "headers": {}, "text": ""}
        timeout = min(float(params.get("timeout") or 10.0), _MAX_TIMEOUT)
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                async with client.stream(
                    method, url, params=params.get("params"), json=params.get("json"), data=params.get("data"),
                    headers=params.get("headers"),
                ) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self._settings.rules_http_max_response_bytes:
                            raise EffectError("the response is larger than BASTION_RULES_HTTP_MAX_RESPONSE_BYTES")
        except httpx.HTTPError as error:
            self._record({**effect, "status": None, "error": type(error).__name__})
            raise EffectError(f"{method} {effect['url']} failed: {type(error).__name__}") from None
        self._record({**effect, "status": response.status_code, "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
        return {
            "status_code": response.status_code,
            "headers": dict(response.headers),
            "text": body.decode(response.encoding or "utf-8", errors="replace"),
        }

    async def _check_destination(self, host: str, port: int) -> None:
        allowed = self._settings.rules_http_allowed_hosts
        if allowed and not any(host == h or (h.startswith(".") and host.endswith(h)) for h in allowed):
            raise EffectError(f"{host} is not in BASTION_RULES_HTTP_ALLOWED_HOSTS")
        if self._settings.rules_http_allow_private:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise EffectError(f"cannot resolve {host}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not address.is_global:
                raise EffectError(f"{host} resolves to a private or local address; rules may not call it")

    # -- metadata ---------------------------------------------------------

    async def update_metadata(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        user_id, changes = params.get("user_id"), params.get("changes")
        if not isinstance(changes, dict):
            raise EffectError("changes must be an object")
        if not user_id or user_id != self._user_id:
            raise EffectError("rules may update the metadata of the user who is logging in only")
        merged = merge_metadata(self._metadata.get(kind, {}), changes)
        if not self.dry_run:
            async with self._services.database.transaction() as session:
                user = await user_store.get_user(session, user_id=user_id)
                if user is None:
                    raise EffectError("the user no longer exists")
                merged = merge_metadata(getattr(user, kind), changes)
                await user_store.update_user(session, user_id=user_id, changes={kind: merged})
        self._metadata[kind] = merged
        self._record({"type": f"users.update_{kind}", "user_id": user_id, "changes": changes})
        return merged

    # -- email ------------------------------------------------------------

    async def send_email(self, params: dict[str, Any]) -> None:
        to, subject = params.get("to"), params.get("subject")
        if not to or not subject or not (params.get("text") or params.get("html")):
            raise EffectError("email.send needs to=, subject= and text= or html=")
        if not self.dry_run:
            await self._services.mailer.send(to=str(to), subject=str(subject), text=str(params.get("text") or params.get("html")))
        self._record({"type": "email", "to": to, "subject": subject})

    # -- redirect tokens --------------------------------------------------

    def _redirect_secret(self, secret: str | None) -> str:
        return secret or digest("bastion-rules-redirect|" + (self._settings.secret_key or ""))

    async def encode_token(self, params: dict[str, Any]) -> str:
        payload = params.get("payload") or {}
        if not isinstance(payload, dict):
            raise EffectError("payload must be an object")
        now = int(time.time())
        claims = {**payload, "iss": self._settings.token_issuer, "iat": now, "exp": now + int(params.get("expires_in") or 900)}
        if self._user_id:
            claims.setdefault("sub", self._user_id)
        return sign_hs256(claims, self._redirect_secret(params.get("secret")))

    async def validate_token(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            claims = verify_hs256(str(params.get("token", "")), self._redirect_secret(params.get("secret")))
        except (JoseError, ValueError) as error:
            raise EffectError(f"invalid token: {error}") from None
        if claims.get("exp", 0) < time.time():
            raise EffectError("the token has expired")
        if claims.get("iss") != self._settings.token_issuer:
            raise EffectError("the token was not issued by this server")
        if self._user_id and claims.get("sub") != self._user_id:
            raise EffectError("the token was issued for another user")
        return claims
