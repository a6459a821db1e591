"""CSRF tokens for the login pages: an HMAC of the transaction and the browser's binding cookie.

A form posted from another site cannot carry the token, and a token taken from
one browser does not work with another browser's cookie.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["CsrfTokens"]


class CsrfTokens:
    def __init__(self, master_key: str):
        self._key = hashlib.sha256(b"bastion-csrf-v1|" + master_key.encode()).digest()

    def issue(self, *bound_to: str) -> str:
        return hmac.new(self._key, "|".join(bound_to).encode(), hashlib.sha256).hexdigest()

    def verify(self, token: str | None, *bound_to: str) -> bool:
        return bool(token) and hmac.compare_digest(token, self.issue(*bound_to))
