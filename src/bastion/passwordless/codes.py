"""Passwordless codes: issued, verified and rate limited in the `one_time_codes` table.

    issue_code    refuse past `passwordless_codes_per_hour` codes per recipient and connection;
                  revoke the recipient's live codes (a new code replaces the previous one);
                  store a new one: a 6-digit code, or a 256-bit secret for a magic link
    verify_code   the recipient's newest live code: one attempt is counted first, then the
                  secret is compared; the first right answer spends the code (compare-and-set)

Only `code_digest` is stored: an HMAC-SHA256 of the row id and the code under a key derived
from the master key. A 6-digit code has a million values, so a plain hash in a leaked
database could be reversed at once; the HMAC cannot without the key.

A code is bound to where it was asked for: the client, the universal-login transaction (if
any) and how it was sent (`code` or `link`). Presented anywhere else it is a wrong code.

Attempts: each verification counts one attempt *before* comparing, in the same database
transaction that reads the count back. The k-th attempt sees at least k, and only attempts
that see at most `passwordless_max_attempts` are compared, so even parallel guesses get no
more than that many comparisons per code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from bastion.security.handles import new_handle
from bastion.services import Services
from bastion.storage import one_time_codes
from bastion.storage.records import OneTimeCode

__all__ = ["PURPOSE", "CODE_DIGITS", "IssuedCode", "TooManyCodes", "CodeRejected", "issue_code", "verify_code", "code_digest"]

PURPOSE = "passwordless"
CODE_DIGITS = 6
Send = Literal["code", "link"]


@dataclass(frozen=True)
class IssuedCode:
    id: str
    secret: str  # the code or the link's secret: sent to the recipient, never stored or logged
    send: Send
    expires_at: datetime


class TooManyCodes(Exception):
    """The recipient was sent `passwordless_codes_per_hour` codes in the last hour."""


class CodeRejected(Exception):
    """The code does not log in: `wrong`, `expired` (or already used, or none), `exhausted` (too many tries)."""

    def __init__(self, reason: Literal["wrong", "expired", "exhausted"]):
        super().__init__(reason)
        self.reason = reason


def _key(master_key: str) -> bytes:
    return hashlib.sha256(b"bastion-passwordless-v1|" + master_key.encode()).digest()


def code_digest(master_key: str, code_id: str, code: str) -> str:
    """HMAC-SHA256(key, id|code): what the table keeps instead of the code."""
    return hmac.new(_key(master_key), f"{code_id}|{code}".encode(), hashlib.sha256).hexdigest()


def _new_secret(send: Send) -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}" if send == "code" else new_handle(32)


async def issue_code(
    services: Services,
    *,
    connection: str,
    recipient: str,
    client_id: str,
    send: Send,
    transaction_id: str | None = None,
) -> IssuedCode:
    """A new code (or link secret) for `recipient`, replacing the live ones. Raises TooManyCodes."""
    settings = services.settings
    now = datetime.now(timezone.utc)
    code_id = secrets.token_hex(12)  # Auth0's `_id` looks like this (24 hex digits)
    secret = _new_secret(send)
    data: dict[str, Any] = {"send": send, "transaction": transaction_id}
    async with services.database.transaction() as session:
        sent = await one_time_codes.count_recent_codes(
            session, purpose=PURPOSE, connection=connection, recipient=recipient, since=now - timedelta(hours=1)
        )
        if sent >= settings.passwordless_codes_per_hour:
            raise TooManyCodes()
        await one_time_codes.revoke_codes(session, purpose=PURPOSE, connection=connection, recipient=recipient)
        record = await one_time_codes.insert_code(
            session, id=code_id, purpose=PURPOSE, connection=connection, recipient=recipient, client_id=client_id,
            code_digest=code_digest(settings.secret_key or "", code_id, secret), data=data,
            expires_at=now + timedelta(seconds=settings.passwordless_code_lifetime),
        )
    return IssuedCode(id=record.id, secret=secret, send=send, expires_at=record.expires_at)


async def verify_code(
    services: Services,
    *,
    connection: str,
    recipient: str,
    code: str,
    client_id: str,
    send: Send,
    transaction_id: str | None = None,
) -> OneTimeCode:
    """Spend the recipient's live code if `code` is it, presented where it was asked for. Raises CodeRejected."""
    limit = services.settings.passwordless_max_attempts
    async with services.database.transaction() as session:
        live = await one_time_codes.latest_live_code(session, purpose=PURPOSE, connection=connection, recipient=recipient)
        if live is None:
            raise CodeRejected("expired")
        await one_time_codes.count_attempt(session, id=live.id)
        counted = await one_time_codes.get_code(session, id=live.id)
    assert counted is not None
    if counted.attempts > limit:
        raise CodeRejected("exhausted")
    expected = code_digest(services.settings.secret_key or "", counted.id, code.strip()[:128])
    bound = (
        counted.client_id == client_id
        and counted.data.get("send") == send
        and counted.data.get("transaction") == transaction_id
    )
    if not hmac.compare_digest(expected, counted.code_digest) or not bound:
        raise CodeRejected("exhausted" if counted.attempts >= limit else "wrong")
    async with services.database.transaction() as session:
        if not await one_time_codes.consume_code(session, id=counted.id):
            raise CodeRejected("expired")  # spent by a parallel request, or it expired meanwhile
    return counted
