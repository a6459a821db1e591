"""The passwordless connections and their recipients.

As in Auth0, the connections are named after their strategy: `email` (strategy `email`)
and `sms` (strategy `sms`), and work only for the clients in their `enabled_clients`.
Recipients are kept in one canonical form, so a code is found again whatever the spelling:
an email address lower-cased, a phone number in E.164 (`+` and up to 15 digits).
"""

from __future__ import annotations

import re

from bastion.services import Services
from bastion.storage.records import Connection
from bastion.tenant.users import is_valid_email

__all__ = [
    "STRATEGIES",
    "PHONE_PATTERN",
    "ConnectionUnavailable",
    "passwordless_connection",
    "enabled_passwordless_connections",
    "normalize_email",
    "normalize_phone",
    "normalize_recipient",
]

STRATEGIES = ("email", "sms")
PHONE_PATTERN = r"^\+[0-9]{1,15}$"  # Auth0's pattern for phone_number
_PHONE = re.compile(PHONE_PATTERN)
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")


class ConnectionUnavailable(Exception):
    """The connection does not exist, is not passwordless, or is not enabled for the client."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # missing | disabled
        self.message = message


async def passwordless_connection(services: Services, name: str | None, *, client_id: str) -> Connection:
    """The `email` or `sms` connection `name`, enabled for `client_id`."""
    if name not in STRATEGIES:
        raise ConnectionUnavailable("missing", "Connection does not exist")
    connection = await services.tenant.connection(name)
    if connection is None or connection.strategy != name:
        raise ConnectionUnavailable("missing", "Connection does not exist")
    if client_id not in connection.enabled_clients:
        raise ConnectionUnavailable("disabled", "Connection is disabled")
    return connection


async def enabled_passwordless_connections(services: Services, client_id: str) -> list[str]:
    """The passwordless connections (`email`, `sms`) enabled for the client, for the login page's links."""
    names = []
    for name in STRATEGIES:
        connection = await services.tenant.connection(name)
        if connection is not None and connection.strategy == name and client_id in connection.enabled_clients:
            names.append(name)
    return names


def normalize_email(value: str | None) -> str | None:
    """The address lower-cased, or None when it is not an email address."""
    email = (value or "").strip().lower()
    return email if email and is_valid_email(email) else None


def normalize_phone(value: str | None, *, lenient: bool = False) -> str | None:
    """The number in E.164, or None. `lenient` (a person typing) drops spaces, dots, dashes, parentheses."""
    phone = (value or "").strip()
    if lenient:
        phone = _PHONE_PUNCTUATION.sub("", phone)
        if phone.startswith("00"):
            phone = "+" + phone[2:]
    return phone if _PHONE.match(phone) else None


def normalize_recipient(strategy: str, value: str | None, *, lenient: bool = False) -> str | None:
    return normalize_email(value) if strategy == "email" else normalize_phone(value, lenient=lenient)
