"""Random identifiers and bearer handles, and their stored digests.

Handles that grant something (codes, refresh tokens, session ids) are stored only
as SHA-256 digests: a leaked database row cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

__all__ = ["new_handle", "digest", "same_digest", "new_id", "new_client_id"]

_ALNUM = string.ascii_letters + string.digits


def new_handle(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same_digest(value: str, expected_digest: str) -> bool:
    return hmac.compare_digest(digest(value), expected_digest)


def new_id(prefix: str = "", length: int = 16) -> str:
    """`prefix` + `length` random alphanumerics, from one read of the CSPRNG (rejection
    sampling keeps them uniform: bytes of 248 and more are dropped)."""
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(_ALNUM[b % 62] for b in secrets.token_bytes(length + 8) if b < 248)
    return prefix + "".join(chars[:length])


def new_client_id() -> str:
    return new_id(length=32)
