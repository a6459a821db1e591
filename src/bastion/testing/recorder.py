"""The server side of a rule's `api` calls in a test: every effect recorded, nothing sent.

`EffectRecorder` answers the worker's calls (the `effects` callable RuleWorkerPool.run
takes), as the server's `Effects` does, with these differences:

- `http.request` (`api.http.get/post/...`) is answered by a stub the test registered with
  `HttpStubs.stub(method, url, ...)`; a call no stub answers is refused (the rule sees an
  error, as for a refused destination) and fails the test afterwards (`UnexpectedHttpCall`),
  even if the rule caught the error;
- `http.queue` and `email.send` are recorded, never sent nor queued; each gets an outbox
  id (`dlv_test_...`) as in production;
- metadata updates and redirect tokens are handled by production's `Effects` (in its dry
  run mode): the same checks, the same merge, the same tokens; the merged metadata is
  what the database would hold.

The destination checks are production's (`security/destinations.check_url`): http(s)
only, the operator's allow-list when the test sets one; there is no DNS lookup (the
private-address check needs the real network, which tests never reach).
"""

from __future__ import annotations

import copy
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bastion.rules.effects import EffectError, Effects
from bastion.security.destinations import DestinationRefused, check_url, display_url
from bastion.settings import Settings

__all__ = [
    "HttpStub",
    "HttpStubs",
    "RecordedRequest",
    "RecordedEmail",
    "MetadataUpdate",
    "RedirectToken",
    "RecordedEffects",
    "EffectRecorder",
    "UnexpectedHttpCall",
]


class UnexpectedHttpCall(AssertionError):
    """A rule called a URL that no stub answers: tests never reach the network."""


def _query_of(url: str, params: Any) -> dict[str, str]:
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if isinstance(params, Mapping):
        query.update({str(k): str(v) for k, v in params.items()})
    return query


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass(frozen=True)
class RecordedRequest:
    """An outbound request a rule made (`api.http.*`) or queued (`api.http.queue`)."""

    method: str
    url: str  # as the rule gave it, query string included
    params: dict[str, Any] | None = None
    json: Any = None
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None

    @property
    def query(self) -> dict[str, str]:
        """The URL's query parameters and `params=` together."""
        return _query_of(self.url, self.params)

    @property
    def base_url(self) -> str:
        """Scheme, host and path: the URL without its query."""
        return _without_query(self.url)

    def header(self, name: str) -> str | None:
        """A request header, whatever its case."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


@dataclass
class HttpStub:
    """The answer to the requests matching `method` and `url` (and `query`, when given)."""

    method: str
    url: str
    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    prefix: bool = False
    error: str | None = None  # a transport failure instead of an answer, e.g. "ConnectTimeout"
    calls: list[RecordedRequest] = field(default_factory=list)

    def matches(self, method: str, url: str, params: Any) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        wanted = _without_query(self.url)
        actual = _without_query(url)
        if not (actual.startswith(wanted) if self.prefix else actual == wanted):
            return False
        required = {**dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True)), **(self.query or {})}
        query = _query_of(url, params)
        return all(query.get(k) == str(v) for k, v in required.items())

    def answer(self) -> dict[str, Any]:
        """What the worker receives, in the shape `Effects.http_request` returns."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.json is not None:
            headers.setdefault("content-type", "application/json")
            text = jsonlib.dumps(self.json)
        else:
            text = self.text or ""
        return {"status_code": self.status, "headers": headers, "text": text}

    def __str__(self) -> str:
        extra = " (prefix)" if self.prefix else ""
        if self.query:
            extra += f" with query {self.query}"
        return f"{self.method} {self.url}{extra} -> {self.error or self.status}"


class HttpStubs:
    """The test's answers to `api.http` calls. The last stub registered that matches answers."""

    def __init__(self) -> None:
        self._stubs: list[HttpStub] = []

    def stub(
        self,
        method: str,
        url: str,
        *,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        prefix: bool = False,
        error: str | None = None,
    ) -> HttpStub:
        """Answer `method` (or "*" for any) `url` with `status` and a `json` or `text` body.

        `url` is matched without its query string, exactly, or as a prefix with `prefix=True`;
        query parameters in `url` or in `query` must be present with those values.
        `error="ConnectTimeout"` (any httpx error name) makes the call fail as a network
        failure does in production. Returns the stub; its `calls` lists the requests it answered.
        """
        if json is not None and text is not None:
            raise ValueError("give json= or text=, not both")
        stub = HttpStub(
            method=method.upper(), url=url, status=status, json=json, text=text, headers=dict(headers or {}),
            query={str(k): str(v) for k, v in query.items()} if query else None, prefix=prefix, error=error,
        )
        self._stubs.append(stub)
        return stub

    def find(self, method: str, url: str, params: Any) -> HttpStub | None:
        return next((s for s in reversed(self._stubs) if s.matches(method, url, params)), None)

    def __iter__(self):
        return iter(self._stubs)

    def __len__(self) -> int:
        return len(self._stubs)

    def clear(self) -> None:
        self._stubs.clear()


@dataclass(frozen=True)
class RecordedEmail:
    to: str | None
    subject: str | None
    text: str | None = None
    html: str | None = None
    template: str | None = None  # "verify_email" or "welcome_email": Bastion's account email to the user


@dataclass(frozen=True)
class MetadataUpdate:
    kind: str  # "app_metadata" or "user_metadata"
    user_id: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class RedirectToken:
    payload: dict[str, Any]
    token: str
    expires_in: int
    own_secret: bool  # the rule gave its own secret (else the server's key signed it)


@dataclass
class RecordedEffects:
    """Everything a run's `api` calls did, in the order they came."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # every api call: (method, params)
    http_requests: list[RecordedRequest] = field(default_factory=list)  # awaited, answered by a stub
    queued_requests: list[RecordedRequest] = field(default_factory=list)  # api.http.queue: recorded, not sent
    unexpected_requests: list[RecordedRequest] = field(default_factory=list)  # no stub answered
    emails: list[RecordedEmail] = field(default_factory=list)
    metadata_updates: list[MetadataUpdate] = field(default_factory=list)
    redirect_tokens: list[RedirectToken] = field(default_factory=list)
    app_metadata: dict[str, Any] = field(default_factory=dict)  # as stored after the login
    user_metadata: dict[str, Any] = field(default_factory=dict)

    def queued(self, method: str | None = None, url: str | None = None, *, prefix: bool = False) -> list[RecordedRequest]:
        """The queued requests, optionally only those of `method` and `url` (matched without query)."""
        return _filtered(self.queued_requests, method, url, prefix)

    def requested(self, method: str | None = None, url: str | None = None, *, prefix: bool = False) -> list[RecordedRequest]:
        """The awaited requests, optionally only those of `method` and `url` (matched without query)."""
        return _filtered(self.http_requests, method, url, prefix)


def _filtered(requests: list[RecordedRequest], method: str | None, url: str | None, prefix: bool) -> list[RecordedRequest]:
    found = []
    for request in requests:
        if method and request.method != method.upper():
            continue
        if url and not (request.base_url.startswith(_without_query(url)) if prefix else request.base_url == _without_query(url)):
            continue
        found.append(request)
    return found


@dataclass
class _KitServices:
    """What production's Effects reads from the services in its dry-run mode: the settings."""

    settings: Settings


def _request(params: dict[str, Any]) -> RecordedRequest:
    timeout = params.get("timeout")
    return RecordedRequest(
        method=str(params.get("method", "GET")).upper(), url=str(params.get("url", "")),
        params=copy.deepcopy(params.get("params")), json=copy.deepcopy(params.get("json")), data=copy.deepcopy(params.get("data")),
        headers={str(k): str(v) for k, v in (params.get("headers") or {}).items()},
        timeout=float(timeout) if timeout is not None else None,
    )


class EffectRecorder:
    """Answers one run's `api` calls; `effects` holds what they did."""

    def __init__(self, *, settings: Settings, stubs: HttpStubs, user: Mapping[str, Any]):
        self._settings = settings
        self._stubs = stubs
        self._next_delivery = 0
        app_metadata = copy.deepcopy(dict(user.get("app_metadata") or {}))
        user_metadata = copy.deepcopy(dict(user.get("user_metadata") or {}))
        self.effects = RecordedEffects(app_metadata=app_metadata, user_metadata=user_metadata)
        self._production = Effects(
            _KitServices(settings),  # type: ignore[arg-type]  # dry run: only the settings are read
            user_id=user.get("user_id"), dry_run=True, client_id=None,
            user_metadata={"app_metadata": app_metadata, "user_metadata": user_metadata},
        )

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        self.effects.calls.append((method, copy.deepcopy(params)))
        if method == "http.request":
            return await self._http_request(params)
        if method == "http.queue":
            await self._production.queue_request(params)  # production's checks (scheme, allow-list)
            self.effects.queued_requests.append(_request(params))
            return self._delivery_id()
        if method in ("users.update_app_metadata", "users.update_user_metadata"):
            kind = method.removeprefix("users.update_")
            merged = await self._production(method, params)
            setattr(self.effects, kind, merged)
            self.effects.metadata_updates.append(MetadataUpdate(kind, str(params.get("user_id")), copy.deepcopy(params.get("changes"))))
            return merged
        if method == "email.send":
            await self._production.send_email(params)  # production's checks of the arguments
            self.effects.emails.append(RecordedEmail(
                to=params.get("to"), subject=params.get("subject"), text=params.get("text"), html=params.get("html"),
                template=params.get("template"),
            ))
            return self._delivery_id()
        if method == "redirect.encode_token":
            token = await self._production.encode_token(params)
            self.effects.redirect_tokens.append(RedirectToken(
                payload=copy.deepcopy(params.get("payload") or {}), token=token,
                expires_in=int(params.get("expires_in") or 900), own_secret=bool(params.get("secret")),
            ))
            return token
        return await self._production(method, params)  # redirect.validate_token; unknown calls fail as in production

    def _delivery_id(self) -> str:
        self._next_delivery += 1
        return f"dlv_test_{self._next_delivery:04d}"

    async def _http_request(self, params: dict[str, Any]) -> dict[str, Any]:
        request = _request(params)
        try:
            await check_url(self._settings, request.url)
        except DestinationRefused as refusal:
            raise EffectError(str(refusal)) from None
        stub = self._stubs.find(request.method, request.url, request.params)
        if stub is None:
            self.effects.unexpected_requests.append(request)
            raise EffectError(f"{request.method} {display_url(request.url)}: no stub answers this request in the test")
        stub.calls.append(request)
        self.effects.http_requests.append(request)
        if stub.error:
            raise EffectError(f"{request.method} {display_url(request.url)} failed: {stub.error}")
        answer = stub.answer()
        if len(answer["text"].encode()) > self._settings.rules_http_max_response_bytes:
            raise EffectError("the response is larger than BASTION_RULES_HTTP_MAX_RESPONSE_BYTES")
        return answer

    def unexpected_call_report(self) -> str | None:
        """Why the test must fail, when the rules called URLs no stub answers."""
        if not self.effects.unexpected_requests:
            return None
        lines = ["The rules made HTTP requests that no stub answers (tests never reach the network):"]
        lines += [f"  {request.method} {request.url}" for request in self.effects.unexpected_requests]
        first = self.effects.unexpected_requests[0]
        lines.append(f'Stub it in the test: rule_runner.http.stub("{first.method}", "{first.base_url}", status=200, json={{...}})')
        stubs = list(self._stubs)
        lines.append("Stubs registered: " + ("; ".join(str(s) for s in stubs) if stubs else "none"))
        return "\n".join(lines)
