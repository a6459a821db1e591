"""Plain records that repositories return: the rest of Bastion never sees an ORM row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

__all__ = [
    "record_from_row",
    "Connection",
    "Client",
    "ResourceServer",
    "ClientGrant",
    "User",
    "Identity",
    "SigningKey",
    "AuthorizationCode",
    "RefreshToken",
    "SsoSession",
    "LoginTransactionRecord",
    "LogEvent",
    "Rule",
    "RuleExecution",
    "Authenticator",
    "OneTimeCode",
    "UserGrant",
    "Role",
    "RoleMember",
    "Permission",
    "PermissionSource",
    "EffectivePermission",
    "Delivery",
    "LogStream",
    "EmailTemplate",
]

R = TypeVar("R")


def record_from_row(record_type: type[R], row: Any, **extra: Any) -> R:
    """`record_type` from a row: an ORM row, a Core row, or a mapping (a dict, `Result.mappings()`);
    `extra` gives fields directly."""
    names = [f.name for f in fields(record_type) if f.name not in extra]
    if isinstance(row, Mapping):
        values = {name: row[name] for name in names if name in row}
    else:
        values = {name: getattr(row, name) for name in names if hasattr(row, name)}
    return record_type(**values, **extra)


@dataclass(frozen=True)
class Connection:
    id: str
    name: str
    strategy: str
    options: dict
    enabled_clients: list
    is_domain_connection: bool
    created_at: datetime


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    description: str
    app_type: str
    is_first_party: bool
    callbacks: list
    allowed_logout_urls: list
    web_origins: list
    allowed_origins: list
    grant_types: list
    token_endpoint_auth_method: str
    client_secret_sealed: str | None
    client_secret_digest: str | None
    client_metadata: dict
    jwt_configuration: dict
    refresh_token: dict
    addons: dict
    is_system: bool
    created_at: datetime
    updated_at: datetime

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"


@dataclass(frozen=True)
class ResourceServer:
    id: str
    name: str
    identifier: str
    scopes: list
    signing_alg: str
    token_lifetime: int
    allow_offline_access: bool
    skip_consent_for_verifiable_first_party_clients: bool
    is_system: bool
    created_at: datetime
    enforce_policies: bool = False
    token_dialect: str = "access_token"

    @property
    def scope_values(self) -> set[str]:
        return {s["value"] for s in self.scopes}

    @property
    def uses_permissions(self) -> bool:
        """Whether a user's token for this API depends on the user's permissions (RBAC, or the
        `permissions` claim). The system API never does: it grants users nothing."""
        return not self.is_system and (self.enforce_policies or self.token_dialect == "access_token_authz")


@dataclass(frozen=True)
class ClientGrant:
    id: str
    client_id: str
    audience: str
    scope: list


@dataclass(frozen=True)
class Identity:
    provider: str
    connection: str
    external_id: str
    is_social: bool
    profile_data: dict
    # Set on a primary's identities that come from a linked secondary user: that user's id
    # (what unlinking needs). None for the user's own identities.
    linked_user_id: str | None = None


@dataclass(frozen=True)
class User:
    user_id: str
    connection: str
    email: str | None
    email_verified: bool
    username: str | None
    phone_number: str | None
    phone_verified: bool
    password_hash: str | None
    name: str | None
    nickname: str | None
    given_name: str | None
    family_name: str | None
    picture: str | None
    app_metadata: dict
    user_metadata: dict
    blocked: bool
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None
    last_ip: str | None
    logins_count: int
    last_password_reset: datetime | None
    identities: list[Identity] = field(default_factory=list)
    linked_to: str | None = None  # a linked secondary: its primary's id (docs/identities.md)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key_sealed: str
    public_jwk: dict
    status: str
    created_at: datetime
    rotated_at: datetime | None


@dataclass(frozen=True)
class AuthorizationCode:
    code_digest: str
    client_id: str
    user_id: str
    redirect_uri: str
    grant: dict
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: datetime
    used_at: datetime | None
    refresh_family_id: str | None


@dataclass(frozen=True)
class RefreshToken:
    token_digest: str
    family_id: str
    client_id: str
    user_id: str
    grant: dict
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class SsoSession:
    sid: str
    user_id: str
    auth_time: datetime
    methods: list
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class LoginTransactionRecord:
    id: str
    state: str
    client_id: str
    request: dict
    browser_digest: str
    user_id: str | None
    auth_time: datetime | None
    methods: list
    progress: dict
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class LogEvent:
    log_id: str
    date: datetime
    type: str
    description: str | None
    client_id: str | None
    client_name: str | None
    ip: str | None
    user_agent: str | None
    user_id: str | None
    user_name: str | None
    connection: str | None
    details: dict


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    script: str
    order: int
    enabled: bool
    stage: str
    language: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RuleExecution:
    id: str
    created_at: datetime
    protocol: str
    client_id: str | None
    user_id: str | None
    outcome: str
    duration_ms: float
    dry_run: bool
    rules: list
    effects: list
    warnings: list
    error: str | None


@dataclass(frozen=True)
class Authenticator:
    id: str
    user_id: str
    type: str  # otp | webauthn-roaming | webauthn-platform | recovery-code | duo
    name: str | None
    secret_sealed: str | None
    secret_digest: str | None
    credential: dict
    confirmed: bool
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class OneTimeCode:
    id: str
    purpose: str
    connection: str | None
    recipient: str | None
    client_id: str | None
    code_digest: str
    attempts: int
    data: dict
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class UserGrant:
    id: str
    user_id: str
    client_id: str
    audience: str
    scope: list
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    description: str | None
    created_at: datetime


@dataclass(frozen=True)
class RoleMember:
    """A user as a role's member list shows it (Auth0's RoleUser)."""

    user_id: str
    email: str | None
    name: str | None
    picture: str | None


@dataclass(frozen=True)
class Permission:
    """A scope of an API, held by a role or a user, with what the Management API shows of it."""

    resource_server_identifier: str
    permission_name: str
    resource_server_name: str
    description: str


@dataclass(frozen=True)
class PermissionSource:
    """Why a user holds a permission: directly (no role), or through the role named."""

    role_id: str | None = None
    role_name: str | None = None


@dataclass(frozen=True)
class EffectivePermission(Permission):
    """A permission a user holds, with every assignment that gives it (direct first, then roles by name)."""

    sources: tuple[PermissionSource, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """An outbox entry: an email or a queued HTTP request, and what became of it (payload still sealed)."""

    id: str
    kind: str
    source: str
    state: str
    payload_sealed: str
    summary: dict
    user_id: str | None
    rules_execution_id: str | None
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class LogStream:
    id: str
    name: str
    type: str
    status: str
    sink_sealed: str
    filters: list
    is_priority: bool
    position: int
    failures: int
    last_error: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    next_attempt_at: datetime | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EmailTemplate:
    template: str
    enabled: bool
    syntax: str
    sender: str | None
    subject: str | None
    body: str | None
    result_url: str | None
    url_lifetime_in_seconds: int | None
    include_email_in_redirect: bool
    updated_at: datetime


@dataclass(frozen=True)
class Deployment:
    """A recorded deploy or rollback of rules (storage/deployments.py, docs/deploy.md)."""

    id: str
    created_at: datetime
    source: str
    ref: str | None
    commit: str | None
    path: str | None
    content_hash: str
    actor: str
    snapshot: dict
    summary: dict
    rollback_of: str | None


__all__ += ["Deployment"]
