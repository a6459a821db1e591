"""What the server does when a rule calls `api`: each effect performed (or, in a dry
run, recorded and answered without being performed), and every one listed in the
execution record.

    http.request                 httpx, with a timeout, a response-size limit, an SSRF guard
                                 (no private, loopback or link-local address unless
                                 BASTION_RULES_HTTP_ALLOW_PRIVATE) and the optional host allow-list
                                 (security/destinations.py)
    http.queue                   the same request, put in the outbox (outbox.py) and sent after the
                                 login by the outbox poller, retried on failure; the login never waits
    users.update_app_metadata    merged and persisted (Management API PATCH semantics), for the
    users.update_user_metadata   user of this login only
    email.send                   an email through the outbox: the rule's own text, or one of the
                                 account emails (`template="verify_email"` or `"welcome_email"`) to
                                 the user of this login
    redirect.encode_token        an HS256 token for an external page (a key derived from the
    redirect.validate_token      master key unless the rule gives its own secret)

Records never show a URL's query (where vendor keys often go) nor any header or body.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bastion.emails.account import send_account_email
from bastion.emails.templates import html_to_text
from bastion.keys.jose import JoseError, sign_hs256, verify_hs256
from bastion.rules.redaction import Redaction
from bastion.security.destinations import DestinationRefused, check_url, display_url
from bastion.security.handles import digest
from bastion.services import Services
from bastion.storage import users as user_store
from bastion.tenant.users import merge_metadata

__all__ = ["EffectError", "Effects"]

_MAX_TIMEOUT = 15.0
ACCOUNT_EMAIL_TEMPLATES = ("verify_email", "welcome_email")


class EffectError(Exception):
    """Refused or failed; the rule receives the message as an exception."""


class Effects:
    """Handles the `api` calls of one rule execution."""

    def __init__(
        self, services: Services, *, user_id: str | None, user_metadata: dict[str, dict], dry_run: bool,
        execution_id: str | None = None, client_id: str | None = None, redaction: Redaction | None = None,
    ):
        self._services = services
        self._redaction = redaction or Redaction(())
        self._settings = services.settings
        self._user_id = user_id
        self._execution_id = execution_id
        self._client_id = client_id
        self._metadata = user_metadata  # the pipeline user's current metadata, by kind
        self.dry_run = dry_run
        self.performed: list[dict[str, Any]] = []

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        handler = {
            "http.request": self.http_request,
            "http.queue": self.queue_request,
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

    async def _checked_url(self, params: dict[str, Any]) -> tuple[str, str]:
        method = str(params.get("method", "GET")).upper()
        url = str(params.get("url", ""))
        try:
            await check_url(self._settings, url)
        except DestinationRefused as refusal:
            raise EffectError(str(refusal)) from None
        return method, url

    async def http_request(self, params: dict[str, Any]) -> dict[str, Any]:
        method, url = await self._checked_url(params)
        effect = {"type": "http", "method": method, "url": display_url(url)}
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

    async def queue_request(self, params: dict[str, Any]) -> str | None:
        """Put the request in the outbox; the rule goes on at once. Returns the entry's id."""
        method, url = await self._checked_url(params)
        effect = {"type": "http.queued", "method": method, "url": self._redaction.apply(display_url(url))}
        if self.dry_run:
            self._record({**effect, "delivery_id": None})
            return None
        timeout = params.get("timeout")
        async with self._services.database.transaction() as session:
            delivery = await self._services.outbox.http_request(
                session, method=method, url=url, params=params.get("params"), headers=params.get("headers"),
                json_body=params.get("json"), data=params.get("data"), timeout=float(timeout) if timeout else None,
                shown_url=effect["url"], user_id=self._user_id, rules_execution_id=self._execution_id,
            )
        self._record({**effect, "delivery_id": delivery.id})
        return delivery.id

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

    async def send_email(self, params: dict[str, Any]) -> str | None:
        template = params.get("template")
        if template is not None:
            return await self._send_account_email(str(template))
        to, subject = params.get("to"), params.get("subject")
        if not to or not subject or not (params.get("text") or params.get("html")):
            raise EffectError("email.send needs to=, subject= and text= or html= (or template=)")
        effect = {"type": "email", "to": to, "subject": subject}
        if self.dry_run:
            self._record({**effect, "delivery_id": None})
            return None
        text = str(params.get("text") or "")
        html = str(params["html"]) if params.get("html") else None
        async with self._services.database.transaction() as session:
            delivery = await self._services.outbox.email(
                session, to=str(to), subject=str(subject), text=text or html_to_text(html or ""), html=html, source="rules",
                user_id=self._user_id, rules_execution_id=self._execution_id,
            )
        self._record({**effect, "delivery_id": delivery.id})
        return delivery.id

    async def _send_account_email(self, template: str) -> str | None:
        if template not in ACCOUNT_EMAIL_TEMPLATES:
            raise EffectError(f"email.send template must be one of {', '.join(ACCOUNT_EMAIL_TEMPLATES)}")
        if not self._user_id:
            raise EffectError("email.send(template=...) needs a user")
        if self.dry_run:
            self._record({"type": "email", "template": template, "delivery_id": None})
            return None
        async with self._services.database.transaction() as session:
            user = await user_store.get_user(session, user_id=self._user_id)
            if user is None or not user.email:
                raise EffectError("the user has no email address")
            delivery = await send_account_email(
                self._services, session, template, user=user, client_id=self._client_id, source="rules",
                rules_execution_id=self._execution_id,
            )
        self._record({"type": "email", "template": template, "to": user.email, "delivery_id": delivery.id})
        return delivery.id

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

