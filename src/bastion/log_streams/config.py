"""A log stream's configuration as the Management API receives it: the type, the sink (Auth0's
field names, plus Bastion's `httpSigningSecret`) and the category filters. Every check answers
an Auth0-shaped 400. The sink is stored sealed: it holds the receiver's credentials."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from bastion.errors import ManagementError
from bastion.log_streams.categories import CATEGORIES
from bastion.security.sealing import Sealer

__all__ = [
    "STREAM_TYPES",
    "CONTENT_FORMATS",
    "SIGNING_SECRET_MIN_LENGTH",
    "check_type",
    "check_sink",
    "merge_sink",
    "check_filters",
    "seal_sink",
    "open_sink",
    "sink_secrets",
]

STREAM_TYPES = ("http", "segment", "splunk")
CONTENT_FORMATS = ("JSONARRAY", "JSONLINES", "JSONOBJECT")
SIGNING_SECRET_MIN_LENGTH = 16
_SINK_PURPOSE = "log_streams.sink"

# Headers a custom header may not replace: they carry the body's framing, the credentials and the signature.
_RESERVED_HEADERS = {"authorization", "content-type", "content-length", "host", "transfer-encoding", "x-bastion-signature"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SINK_FIELDS = {
    "http": {"httpEndpoint", "httpContentType", "httpContentFormat", "httpAuthorization", "httpCustomHeaders", "httpSigningSecret"},
    "segment": {"segmentWriteKey"},
    "splunk": {"splunkDomain", "splunkToken", "splunkPort", "splunkSecure"},
}


def _invalid(message: str) -> ManagementError:
    return ManagementError(400, f"Payload validation error: {message}", "invalid_body")


def check_type(value: Any) -> str:
    if value not in STREAM_TYPES:
        raise _invalid(f"'No enum match for: {json.dumps(value)}' on property type (one of {', '.join(STREAM_TYPES)}).")
    return value


def _text(sink: dict, name: str, *, required: bool = False) -> str | None:
    value = sink.get(name)
    if value is None:
        if required:
            raise _invalid(f"'Missing required property: {name}' on property sink.")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise _invalid(f"'Expected a non-empty string' on property sink.{name}.")
    return value


def _http_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(f"'Expected an http or https URL' on property sink.{name}.")
    return value


def _check_http(sink: dict) -> dict:
    endpoint = _http_url(_text(sink, "httpEndpoint", required=True), "httpEndpoint")
    content_format = sink.get("httpContentFormat") or "JSONLINES"
    if content_format not in CONTENT_FORMATS:
        raise _invalid(f"'No enum match for: {json.dumps(content_format)}' on property sink.httpContentFormat.")
    checked: dict[str, Any] = {
        "httpEndpoint": endpoint,
        "httpContentType": _text(sink, "httpContentType") or "application/json",
        "httpContentFormat": content_format,
    }
    authorization = _text(sink, "httpAuthorization")
    if authorization:
        checked["httpAuthorization"] = authorization
    headers = sink.get("httpCustomHeaders") or []
    if not isinstance(headers, list):
        raise _invalid("'Expected an array of {header, value}' on property sink.httpCustomHeaders.")
    for entry in headers:
        if not isinstance(entry, dict) or not isinstance(entry.get("header"), str) or not isinstance(entry.get("value"), str):
            raise _invalid("'Expected an array of {header, value}' on property sink.httpCustomHeaders.")
        if not _HEADER_NAME.match(entry["header"]) or entry["header"].lower() in _RESERVED_HEADERS:
            raise _invalid(f"'Header not allowed: {entry['header']}' on property sink.httpCustomHeaders.")
        if any(c in entry["value"] for c in "\r\n"):
            raise _invalid("'Header values must not contain line breaks' on property sink.httpCustomHeaders.")
    if headers:
        checked["httpCustomHeaders"] = [{"header": e["header"], "value": e["value"]} for e in headers]
    secret = _text(sink, "httpSigningSecret")
    if secret is not None:
        if len(secret) < SIGNING_SECRET_MIN_LENGTH:
            raise _invalid(f"'Must be at least {SIGNING_SECRET_MIN_LENGTH} characters' on property sink.httpSigningSecret.")
        checked["httpSigningSecret"] = secret
    return checked


def _check_segment(sink: dict) -> dict:
    return {"segmentWriteKey": _text(sink, "segmentWriteKey", required=True)}


def _check_splunk(sink: dict) -> dict:
    domain = _text(sink, "splunkDomain", required=True).strip().rstrip("/")
    if "://" in domain:  # an explicit scheme: http:// is for tests and internal collectors
        parts = urlsplit(domain)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.port:
            raise _invalid("'Expected a host name, optionally prefixed with http:// or https://' on property sink.splunkDomain.")
    elif "/" in domain or ":" in domain:
        raise _invalid("'Expected a host name (the port goes in splunkPort)' on property sink.splunkDomain.")
    port = sink.get("splunkPort", "8088")
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
        raise _invalid("'Expected a port number' on property sink.splunkPort.")
    secure = sink.get("splunkSecure", False)
    if not isinstance(secure, bool):
        raise _invalid("'Expected a boolean' on property sink.splunkSecure.")
    return {"splunkDomain": domain, "splunkToken": _text(sink, "splunkToken", required=True), "splunkPort": str(port),
            "splunkSecure": secure}


_CHECKS = {"http": _check_http, "segment": _check_segment, "splunk": _check_splunk}


def check_sink(stream_type: str, sink: Any) -> dict:
    """The sink as stored: checked, with Auth0's defaults filled in."""
    if not isinstance(sink, dict):
        raise _invalid("'Expected an object' on property sink.")
    unknown = sorted(set(sink) - _SINK_FIELDS[stream_type])
    if unknown:
        raise _invalid(f"'Additional properties not allowed: {', '.join(unknown)}' on property sink (type {stream_type}).")
    return _CHECKS[stream_type](sink)


def merge_sink(stream_type: str, current: dict, changes: Any) -> dict:
    """A PATCH's sink: the given fields replace the stored ones (null removes one), then the whole is checked."""
    if not isinstance(changes, dict):
        raise _invalid("'Expected an object' on property sink.")
    merged = {**current, **changes}
    return check_sink(stream_type, {k: v for k, v in merged.items() if v is not None})


def check_filters(filters: Any) -> list[dict]:
    if filters is None:
        return []
    if not isinstance(filters, list):
        raise _invalid("'Expected an array' on property filters.")
    checked: list[dict] = []
    for entry in filters:
        if not isinstance(entry, dict) or entry.get("type") != "category":
            raise _invalid("'Expected {\"type\": \"category\", \"name\": ...}' on property filters.")
        if entry.get("name") not in CATEGORIES:
            raise _invalid(f"'No enum match for: {json.dumps(entry.get('name'))}' on property filters.name.")
        if entry not in checked:
            checked.append({"type": "category", "name": entry["name"]})
    return checked


def seal_sink(sealer: Sealer, sink: dict) -> str:
    return sealer.seal(json.dumps(sink), purpose=_SINK_PURPOSE)


def open_sink(sealer: Sealer, sealed: str) -> dict:
    return json.loads(sealer.open(sealed, purpose=_SINK_PURPOSE))


def sink_secrets(sink: dict) -> list[str]:
    """The values that must never appear in an error or a log: credentials, header values, and the
    endpoint's path and query (a webhook URL often carries its key there)."""
    values = [sink.get(name) for name in ("httpAuthorization", "httpSigningSecret", "segmentWriteKey", "splunkToken")]
    values += [entry["value"] for entry in sink.get("httpCustomHeaders", [])]
    if sink.get("httpEndpoint"):
        parts = urlsplit(sink["httpEndpoint"])
        values += [sink["httpEndpoint"], parts.path if len(parts.path) > 1 else None, parts.query]
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)
