"""Keeping the rules configuration's values (vendor keys, secrets) out of what is stored and shown.

Whatever a rule prints or logs, the messages of its errors and tracebacks, a denial's
message and the effects it asked for pass through `Redaction.apply` before they reach the
execution record, the tenant log or the application: every configuration value found in a
string becomes `[redacted]`. Values shorter than MIN_SECRET_LENGTH (flags like `true`, a port) are
left alone, since replacing them would garble the record without protecting anything.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["Redaction", "MIN_SECRET_LENGTH", "REDACTED"]

MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"
T = TypeVar("T")


class Redaction:
    @staticmethod
    @functools.lru_cache(maxsize=8)
    def of(secrets: frozenset[str]) -> "Redaction":
        """One compiled redaction per set of configuration values (they change rarely)."""
        return Redaction(secrets)

    def __init__(self, secrets: Iterable[str]):
        values = sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def apply(self, value: T) -> T:
        """`value` (a string, or lists and dicts of them) with every secret replaced."""
        if self._pattern is None:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._pattern.sub(REDACTED, value)
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        return value
