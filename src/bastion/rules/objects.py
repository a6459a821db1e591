"""What a rule sees: `user`, `context` and `api` (the contract in docs/rules.md).

`user` and `context` are attribute-access records over plain data; `api` sends
every effect to the server, which performs it (or records it, in a dry run).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

__all__ = ["UnauthorizedError", "Record", "Api", "HttpResponse", "wrap_user", "wrap_context"]


class UnauthorizedError(Exception):
    """Raise it to deny the login; the application receives `error=unauthorized` and this message."""


class Record:
    """Attribute access over a dict; rules may also set new attributes."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any] | None = None):
        object.__setattr__(self, "_data", dict(data or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            return None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delattr__(self, name: str) -> None:
        self._data.pop(name, None)

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def get(self, name: str, default: Any = None) -> Any:
        return self._data.get(name, default)

    def keys(self):
        return self._data.keys()

    def items(self):
        return self._data.items()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._data.update(*args, **kwargs)

    def setdefault(self, name: str, default: Any = None) -> Any:
        return self._data.setdefault(name, default)

    def pop(self, name: str, *default: Any) -> Any:
        return self._data.pop(name, *default)

    def to_json(self) -> dict[str, Any]:
        return {k: (v.to_json() if isinstance(v, Record) else v) for k, v in self._data.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


# saml_configuration is a record too: Auth0's rules write `context.samlConfiguration.mappings = {...}`.
_CONTEXT_RECORDS = ("request", "stats", "authentication", "authorization", "sso", "saml_configuration")


def wrap_user(data: dict[str, Any]) -> Record:
    data = dict(data)
    data.setdefault("app_metadata", {})
    data.setdefault("user_metadata", {})
    data["identities"] = [Record(i) for i in data.get("identities") or []]
    return Record(data)


def wrap_context(data: dict[str, Any]) -> Record:
    data = dict(data)
    for key in _CONTEXT_RECORDS:
        data[key] = Record(data.get(key) or {})
    for key in ("access_token", "id_token", "client_metadata"):
        data[key] = dict(data.get(key) or {})
    return Record(data)


class HttpResponse:
    def __init__(self, data: dict[str, Any]):
        self.status_code: int = data["status_code"]
        self.headers: dict[str, str] = data.get("headers", {})
        self.text: str = data.get("text", "")

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status_code}>"


Call = Callable[[str, dict[str, Any]], Any]


class _Http:
    def __init__(self, call: Call):
        self._call = call

    async def request(self, method: str, url: str, *, params=None, json=None, data=None, headers=None, timeout: float = 10.0) -> HttpResponse:
        return HttpResponse(
            self._call("http.request", {"method": method.upper(), "url": url, "params": params, "json": json,
                                        "data": data, "headers": headers, "timeout": timeout})
        )

    async def get(self, url: str, **kwargs) -> HttpResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs) -> HttpResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs) -> HttpResponse:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs) -> HttpResponse:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs) -> HttpResponse:
        return await self.request("DELETE", url, **kwargs)

    async def queue(self, method: str, url: str, *, params=None, json=None, data=None, headers=None,
                    timeout: float | None = None) -> str | None:
        """Send the request after the login, without waiting for it: the host keeps it in its outbox
        and retries it until the service takes it (2xx). Returns the outbox entry's id (None in a
        dry run); the execution record shows what became of it."""
        return self._call("http.queue", {"method": method.upper(), "url": url, "params": params, "json": json,
                                         "data": data, "headers": headers, "timeout": timeout})


class _Users:
    def __init__(self, call: Call, user: Record):
        self._call = call
        self._user = user

    async def _update(self, which: str, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise TypeError("changes must be a dict")
        merged = self._call(f"users.update_{which}", {"user_id": user_id, "changes": changes})
        if user_id == self._user.user_id:
            self._user[which] = merged  # later rules see the change
        return merged

    async def update_app_metadata(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return await self._update("app_metadata", user_id, changes)

    async def update_user_metadata(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return await self._update("user_metadata", user_id, changes)


class _Email:
    def __init__(self, call: Call):
        self._call = call

    async def send(self, *, to: str | None = None, subject: str | None = None, text: str | None = None,
                   html: str | None = None, template: str | None = None) -> str | None:
        """Queue an email (the host's outbox sends it, retrying): your own `to`, `subject`, `text`
        and/or `html`, or `template="verify_email"` / `"welcome_email"` for the user of this login.
        Returns the outbox entry's id (None in a dry run)."""
        return self._call("email.send", {"to": to, "subject": subject, "text": text, "html": html, "template": template})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Jwt:
    """HS256 JWTs for rules that talk to their own services (Auth0 rules used `jsonwebtoken`)."""

    def sign(self, payload: dict[str, Any], secret: str, algorithm: str = "HS256", expires_in: int | None = None) -> str:
        if algorithm != "HS256":
            raise ValueError("api.jwt signs HS256 only")
        claims = dict(payload)
        now = int(time.time())
        claims.setdefault("iat", now)
        if expires_in is not None:
            claims["exp"] = now + int(expires_in)
        signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def verify(self, token: str, secret: str, algorithms: tuple[str, ...] = ("HS256",), leeway: int = 0) -> dict[str, Any]:
        try:
            header_part, payload_part, signature_part = token.split(".")
            header = json.loads(_unb64(header_part))
            claims = json.loads(_unb64(payload_part))
        except ValueError:
            raise ValueError("malformed token") from None
        if header.get("alg") not in algorithms or header.get("alg") != "HS256":
            raise ValueError("unexpected algorithm")
        expected = hmac.new(secret.encode(), f"{header_part}.{payload_part}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature_part)):
            raise ValueError("invalid signature")
        if "exp" in claims and claims["exp"] + leeway < time.time():
            raise ValueError("token expired")
        return claims


class _Redirect:
    def __init__(self, call: Call):
        self._call = call

    def encode_token(self, payload: dict[str, Any], *, secret: str | None = None, expires_in: int = 900) -> str:
        return self._call("redirect.encode_token", {"payload": payload, "secret": secret, "expires_in": expires_in})

    def validate_token(self, token: str, *, secret: str | None = None) -> dict[str, Any]:
        return self._call("redirect.validate_token", {"token": token, "secret": secret})


class _Cache:
    """Per-worker cache with expiry (Auth0's `global`): may be empty at any time."""

    def __init__(self, store: dict[str, tuple[float, Any]]):
        self._store = store

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._store.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._store.pop(key, None)
            return default
        return entry[1]

    def set(self, key: str, value: Any, ttl: float = 300.0) -> None:
        if len(self._store) > 10_000:
            self._store.clear()
        self._store[key] = (time.monotonic() + ttl, value)

    def delete(self, key: str) -> None:
        self._store.pop(key, None)


class Api:
    """Everything with an effect; the server performs it."""

    def __init__(self, call: Call, *, configuration: dict[str, str], cache_store: dict, user: Record):
        self.configuration = MappingProxyType(dict(configuration))
        self.cache = _Cache(cache_store)
        self.http = _Http(call)
        self.users = _Users(call, user)
        self.email = _Email(call)
        self.jwt = _Jwt()
        self.redirect = _Redirect(call)
