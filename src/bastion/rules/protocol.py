"""The line-delimited JSON protocol between the server and a rule worker.

    server -> worker   {"op": "run", "job": {rules, user, context, configuration}}
    worker -> server   {"op": "call", "id": N, "method": "http.request", "params": {...}}   (zero or more)
    server -> worker   {"op": "reply", "id": N, "ok": true, "value": ...} | {"op": "reply", "id": N, "ok": false, "error": "..."}
    worker -> server   {"op": "done", "result": {user, context, records, stopped_by}}
    worker -> server   {"op": "ready", "sandbox": {...}}                    (once, after start-up)

One JSON object per line, UTF-8. The same protocol can serve a worker written in
another language (a Node.js worker for Auth0's JavaScript rules).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_MESSAGE_BYTES", "encode", "decode", "to_jsonable"]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def to_jsonable(value: Any) -> Any:
    """Rules may leave any Python value on `user`/`context`: keep what JSON can carry."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=to_jsonable).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict) or "op" not in message:
        raise ValueError("not a protocol message")
    return message
