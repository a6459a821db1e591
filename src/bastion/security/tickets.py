"""Signed, expiring tickets: `base64url(json).base64url(HMAC-SHA256)`, one key per purpose.

Used for the `state` of a rule's redirect (/continue). Emailed links use stored,
single-use tickets instead (emails/account.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["Tickets", "InvalidTicket"]


class InvalidTicket(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tickets:
    def __init__(self, master_key: str):
        self._master = master_key.encode()

    def _key(self, purpose: str) -> bytes:
        return hmac.new(self._master, b"bastion-ticket|" + purpose.encode(), hashlib.sha256).digest()

    def issue(self, purpose: str, payload: dict[str, Any], *, ttl: int) -> str:
        body = _b64(json.dumps({**payload, "exp": int(time.time()) + ttl}, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._key(purpose), body.encode(), hashlib.sha256).digest())
        return f"{body}.{signature}"

    def open(self, purpose: str, ticket: str | None) -> dict[str, Any]:
        if not ticket or len(ticket) > 4096 or "." not in ticket:
            raise InvalidTicket("malformed ticket")
        body, _, signature = ticket.partition(".")
        expected = _b64(hmac.new(self._key(purpose), body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), expected.encode()):
            raise InvalidTicket("bad signature")
        try:
            payload = json.loads(_unb64(body))
        except ValueError:
            raise InvalidTicket("malformed ticket") from None
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            raise InvalidTicket("expired ticket")
        return payload
