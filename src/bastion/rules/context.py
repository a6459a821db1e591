"""Building what a rule receives: the Auth0 `user` and `context`, in the contract's snake_case.

Takes plain records and values, never a login transaction: the rules package does
not know the protocols that call it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bastion.storage.records import Client, Connection, User
from bastion.tenant.users import user_to_json

__all__ = ["RequestInfo", "rule_user", "rule_context", "SECRET_PARAMETERS"]

# Never shown to rules, whatever the request carried.
SECRET_PARAMETERS = frozenset({"password", "client_secret", "code_verifier", "code", "refresh_token", "otp", "csrf_token", "client_assertion"})


@dataclass(frozen=True)
class RequestInfo:
    ip: str
    user_agent: str | None
    hostname: str
    query: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] = field(default_factory=dict)


def _is_secret_option(name: str) -> bool:
    """Connection options rules never see: client secrets, provider tokens (an sms connection's
    `twilio_token`), passwords and keys."""
    lowered = name.lower()
    return any(word in lowered for word in ("secret", "token", "password", "key"))


def _public(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in SECRET_PARAMETERS}


def rule_user(user: User) -> dict[str, Any]:
    data = user_to_json(user)
    data.setdefault("multifactor", [])
    for identity in data["identities"]:
        identity["profile_data"] = identity.pop("profileData", {})
        identity["is_social"] = identity.pop("isSocial")
    return data


def rule_context(
    *,
    issuer: str,
    protocol: str,
    client: Client,
    connection: Connection | None,
    request: RequestInfo,
    user: User,
    session_id: str | None,
    methods: list[tuple[str, int]],
    audience: str | None = None,
    roles: Sequence[str] = (),
) -> dict[str, Any]:
    """Auth0's context object (rules-contract.md), as plain data. `roles` are the names of the
    user's roles (context.authorization.roles); the caller looks them up."""
    return {
        "tenant": urlsplit(issuer).hostname or "bastion",
        "client_id": client.client_id,
        "client_name": client.name,
        "client_metadata": dict(client.client_metadata),
        "connection": connection.name if connection else None,
        "connection_id": connection.id if connection else None,
        "connection_strategy": connection.strategy if connection else None,
        "connection_options": {k: v for k, v in (connection.options if connection else {}).items() if not _is_secret_option(k)},
        "protocol": protocol,
        "audience": audience,
        "stats": {"logins_count": user.logins_count},
        "sso": {"with_auth0": False, "with_dbconn": bool(connection and connection.strategy == "auth0"), "current_clients": []},
        "session_id": session_id,
        "request": {
            "user_agent": request.user_agent,
            "ip": request.ip,
            "hostname": request.hostname,
            "query": _public(request.query),
            "body": _public(request.body),
            "geoip": None,
        },
        "authentication": {"methods": [{"name": name, "timestamp": timestamp} for name, timestamp in methods]},
        "authorization": {"roles": list(roles)},
        "primary_user": None,
        "access_token": {},
        "id_token": {},
        "multifactor": None,
        "redirect": None,
        "saml_configuration": {},
    }


def now_ms() -> int:
    return int(time.time() * 1000)
