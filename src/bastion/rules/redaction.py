"""Keeping the rules configuration's secrets (vendor keys, passwords, tokens) out of what is
stored and shown.

Whatever a rule prints or logs, the messages of its errors and tracebacks, a denial's
message and the effects it asked for pass through `Redaction.apply` before they reach the
execution record, the tenant log, the outbox's lists or the application: every secret found
in a string becomes `[redacted]`.

Which values are secrets: every configuration value, except those whose key names them as
public by its ending (`PUBLIC_KEY_ENDINGS`: `KEEN_API_URL`, `AZURE_AD_DOMAIN`,
`CLAIMS_NAMESPACE`, `SALESFORCE_CLIENT_ID`, `SPLUNK_TIMEOUT_SECONDS`...), so that records
still say which service was called and an address at a configured domain stays readable.
A key that also names a secret (`SECRET_KEY_MARKERS`: `SLACK_WEBHOOK_URL`, whose path is the
credential; `SIGNING_KEY_ID`; `TOKEN_URL`...) stays secret whatever its ending.
A public URL may still carry secrets: its password and its query values are secrets. Values
shorter than MIN_SECRET_LENGTH (flags like `true`, a port) are left alone, since replacing
them would garble the record without protecting anything.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Redaction", "secret_values", "is_public_key", "MIN_SECRET_LENGTH", "REDACTED", "PUBLIC_KEY_ENDINGS",
           "SECRET_KEY_MARKERS"]

MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"
PUBLIC_KEY_ENDINGS = ("_URL", "_URI", "_DOMAIN", "_HOST", "NAMESPACE", "_ID", "_IDS", "_NAME", "_NAMES", "_SECONDS")
# Words that make a key secret even with a public ending (a webhook URL is its own credential).
SECRET_KEY_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "HOOK", "PRIVATE", "CREDENTIAL", "SIGNATURE")
T = TypeVar("T")


def is_public_key(key: str) -> bool:
    name = key.upper()
    return name.endswith(PUBLIC_KEY_ENDINGS) and not any(marker in name for marker in SECRET_KEY_MARKERS)


def secret_values(configuration: Mapping[str, str]) -> frozenset[str]:
    secrets: set[str] = set()
    for key, value in configuration.items():
        if not isinstance(value, str):
            continue
        if not is_public_key(key):
            secrets.add(value)
            continue
        try:
            parts = urlsplit(value)
            secrets.update(v for _, v in parse_qsl(parts.query))
            if parts.password:
                secrets.add(parts.password)
        except ValueError:
            continue
    return frozenset(secrets)


class Redaction:
    @staticmethod
    @functools.lru_cache(maxsize=8)
    def of(secrets: frozenset[str]) -> "Redaction":
        """One compiled redaction per set of secrets (the configuration changes rarely)."""
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
