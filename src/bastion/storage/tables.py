"""The ORM tables. One class per table; columns mirror the records in `records.py`.

Changing a table means adding an Alembic migration under `migrations/versions/`.
"""

from __future__ import annotations

from datetime import datetime

from datetime import timezone

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every database (SQLite keeps no zone: store UTC, read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the database: use datetime.now(timezone.utc)")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON, datetime: UTCDateTime()}


class ConnectionRow(Base):
    __tablename__ = "connections"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    strategy: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict] = mapped_column(default=dict)
    enabled_clients: Mapped[list] = mapped_column(default=list)
    is_domain_connection: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class ClientRow(Base):
    __tablename__ = "clients"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    app_type: Mapped[str] = mapped_column(String(32))
    is_first_party: Mapped[bool] = mapped_column(Boolean, default=True)
    callbacks: Mapped[list] = mapped_column(default=list)
    allowed_logout_urls: Mapped[list] = mapped_column(default=list)
    web_origins: Mapped[list] = mapped_column(default=list)
    allowed_origins: Mapped[list] = mapped_column(default=list)
    grant_types: Mapped[list] = mapped_column(default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    client_secret_sealed: Mapped[str | None] = mapped_column(Text)
    client_secret_digest: Mapped[str | None] = mapped_column(String(64))
    client_metadata: Mapped[dict] = mapped_column(default=dict)
    jwt_configuration: Mapped[dict] = mapped_column(default=dict)
    refresh_token: Mapped[dict] = mapped_column(default=dict)
    addons: Mapped[dict] = mapped_column(default=dict)  # Auth0's addons: `samlp` (docs/saml.md)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ResourceServerRow(Base):
    __tablename__ = "resource_servers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    identifier: Mapped[str] = mapped_column(String(600), unique=True)
    scopes: Mapped[list] = mapped_column(default=list)
    signing_alg: Mapped[str] = mapped_column(String(16))
    token_lifetime: Mapped[int] = mapped_column(Integer)
    allow_offline_access: Mapped[bool] = mapped_column(Boolean, default=False)
    skip_consent_for_verifiable_first_party_clients: Mapped[bool] = mapped_column(Boolean, default=True)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # Auth0's RBAC settings (docs/access-control.md): users get only the scopes they hold as
    # permissions; `access_token_authz` adds the `permissions` claim.
    enforce_policies: Mapped[bool] = mapped_column(Boolean, default=False)
    token_dialect: Mapped[str] = mapped_column(String(32), default="access_token")


class ClientGrantRow(Base):
    __tablename__ = "client_grants"
    __table_args__ = (UniqueConstraint("client_id", "audience"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    audience: Mapped[str] = mapped_column(String(600))
    scope: Mapped[list] = mapped_column(default=list)


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("connection", "email", name="uq_users_connection_email"),
        UniqueConstraint("connection", "username", name="uq_users_connection_username"),
    )
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    connection: Mapped[str] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    username: Mapped[str | None] = mapped_column(String(128))
    phone_number: Mapped[str | None] = mapped_column(String(32))
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    nickname: Mapped[str | None] = mapped_column(Text)
    given_name: Mapped[str | None] = mapped_column(Text)
    family_name: Mapped[str | None] = mapped_column(Text)
    picture: Mapped[str | None] = mapped_column(Text)
    app_metadata: Mapped[dict] = mapped_column(default=dict)
    user_metadata: Mapped[dict] = mapped_column(default=dict)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login: Mapped[datetime | None]
    last_ip: Mapped[str | None] = mapped_column(String(64))
    logins_count: Mapped[int] = mapped_column(Integer, default=0)
    last_password_reset: Mapped[datetime | None]
    # Account linking (docs/identities.md): a linked secondary keeps its row, so its credentials
    # keep working, but it logs in as, and is shown only through, the primary named here. It
    # goes with its primary: deleting the primary deletes its secondaries (as Auth0 does).
    linked_to: Mapped[str | None] = mapped_column(String(128), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    linked_at: Mapped[datetime | None]


class IdentityRow(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("provider", "connection", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    connection: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str] = mapped_column(String(256))
    is_social: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_data: Mapped[dict] = mapped_column(default=dict)
    access_token_sealed: Mapped[str | None] = mapped_column(Text)


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_key_sealed: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict]
    status: Mapped[str] = mapped_column(String(16))  # current | previous | retired
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]


class AuthorizationCodeRow(Base):
    __tablename__ = "authorization_codes"
    code_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(Text)
    grant: Mapped[dict]
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    refresh_family_id: Mapped[str | None] = mapped_column(String(64))


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"
    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    grant: Mapped[dict]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SsoSessionRow(Base):
    __tablename__ = "sso_sessions"
    cookie_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    auth_time: Mapped[datetime]
    methods: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginTransactionRow(Base):
    __tablename__ = "login_transactions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict]
    browser_digest: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(128))
    auth_time: Mapped[datetime | None]
    methods: Mapped[list] = mapped_column(default=list)
    # What the paused steps need: the pending result or denial, the MFA requirement, the
    # rules' redirect, the SSO session to start, the execution records so far (pipeline.py).
    progress: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuthenticatorRow(Base):
    """An enrolled second factor (Auth0's authenticators): otp, webauthn-roaming/-platform, recovery-code."""

    __tablename__ = "mfa_authenticators"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(256))
    secret_sealed: Mapped[str | None] = mapped_column(Text)  # the TOTP secret, sealed
    secret_digest: Mapped[str | None] = mapped_column(String(64))  # a recovery code's digest
    credential: Mapped[dict] = mapped_column(default=dict)  # WebAuthn: credential id, public key, sign count
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class RememberedBrowserRow(Base):
    """A browser where the user passed MFA and asked (or was allowed) to be remembered."""

    __tablename__ = "mfa_remembered_browsers"
    handle_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True, index=True)
    browser_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class OneTimeCodeRow(Base):
    """A passwordless (email/SMS) code or link, or a back-channel MFA token's pending step."""

    __tablename__ = "one_time_codes"
    __table_args__ = (Index("ix_one_time_codes_recipient", "purpose", "connection", "recipient"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    connection: Mapped[str | None] = mapped_column(String(128))
    recipient: Mapped[str | None] = mapped_column(String(320))
    client_id: Mapped[str | None] = mapped_column(String(64))
    code_digest: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class UserGrantRow(Base):
    """Consent a user gave an application for an audience (Auth0's /api/v2/grants)."""

    __tablename__ = "user_grants"
    __table_args__ = (UniqueConstraint("user_id", "client_id", "audience", name="uq_user_grants"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(600))
    scope: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RoleRow(Base):
    """A named set of API permissions that users are given together (Auth0's roles)."""

    __tablename__ = "roles"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class RolePermissionRow(Base):
    """A permission (a scope of an API) that a role grants."""

    __tablename__ = "role_permissions"
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    resource_server_identifier: Mapped[str] = mapped_column(
        ForeignKey("resource_servers.identifier", ondelete="CASCADE"), primary_key=True
    )
    permission_name: Mapped[str] = mapped_column(String(280), primary_key=True)


class UserRoleRow(Base):
    __tablename__ = "user_roles"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True)


class UserPermissionRow(Base):
    """A permission given to a user directly (not through a role)."""

    __tablename__ = "user_permissions"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    resource_server_identifier: Mapped[str] = mapped_column(
        ForeignKey("resource_servers.identifier", ondelete="CASCADE"), primary_key=True
    )
    permission_name: Mapped[str] = mapped_column(String(280), primary_key=True)


class LoginAttemptRow(Base):
    __tablename__ = "login_attempts"
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class LogEventRow(Base):
    __tablename__ = "log_events"
    __table_args__ = (Index("ix_log_events_user", "user_id"),)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    log_id: Mapped[str] = mapped_column(String(64), unique=True)
    date: Mapped[datetime] = mapped_column(index=True)
    type: Mapped[str] = mapped_column(String(32))  # Auth0's codes: "s", "gd_enrollment_complete", ...
    description: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(64))
    client_name: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(128))
    user_name: Mapped[str | None] = mapped_column(Text)
    connection: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(default=dict)
    # The rules execution record of this login lives in `details`; this column finds it by id.
    rules_execution_id: Mapped[str | None] = mapped_column(String(64), index=True)


class RuleRow(Base):
    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("stage", "order", name="uq_rules_stage_order"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    script: Mapped[str] = mapped_column(Text)
    order: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    stage: Mapped[str] = mapped_column(String(32), default="login_success")
    language: Mapped[str] = mapped_column(String(16), default="python")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RuleConfigRow(Base):
    __tablename__ = "rule_configs"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value_sealed: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class TenantSettingsRow(Base):
    """The tenant's settings (Auth0's /api/v2/tenants/settings): one row (id 1) holding the JSON
    document of what was set; what was never set is filled in from the defaults when read
    (tenant/tenant_settings.py)."""

    __tablename__ = "tenant_settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    settings: Mapped[dict] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class DeliveryRow(Base):
    """The outbox: an email or an HTTP request that Bastion must deliver, retried with backoff until
    it is delivered or gives up (docs/email.md). The payload (addresses, bodies, headers with keys)
    is sealed; `summary` holds what may be shown (recipient and subject, or method and URL without
    its query)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # email | http
    source: Mapped[str] = mapped_column(String(64))  # verify_email, reset_email, welcome_email, rules, ...
    state: Mapped[str] = mapped_column(String(16))  # pending | sending | sent | failed
    payload_sealed: Mapped[str] = mapped_column(Text)
    summary: Mapped[dict] = mapped_column(default=dict)
    user_id: Mapped[str | None] = mapped_column(String(128), index=True)
    rules_execution_id: Mapped[str | None] = mapped_column(String(64), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class LogStreamRow(Base):
    """A log stream (Auth0's /api/v2/log-streams): where the tenant log is delivered, and how far
    delivery got (`position`: the last log_events.seq delivered)."""

    __tablename__ = "log_streams"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))  # http | segment | splunk
    status: Mapped[str] = mapped_column(String(16))  # active | paused | suspended
    sink_sealed: Mapped[str] = mapped_column(Text)
    filters: Mapped[list] = mapped_column(default=list)
    is_priority: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed attempts
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EmailTemplateRow(Base):
    """An operator's email template (Auth0's /api/v2/email-templates/{templateName}); a template
    without a row uses the file shipped with Bastion (or the operator's templates folder)."""

    __tablename__ = "email_templates"
    template: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    syntax: Mapped[str] = mapped_column(String(16), default="liquid")
    sender: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    result_url: Mapped[str | None] = mapped_column(Text)
    url_lifetime_in_seconds: Mapped[int | None] = mapped_column(Integer)
    include_email_in_redirect: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class DeploymentRow(Base):
    """One deploy of rules from a folder or a git repository, or a rollback (docs/deploy.md):
    where it came from, who ran it, and the rules exactly as it left them (`snapshot`)."""

    __tablename__ = "deployments"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(Text)  # a folder, a git URL, or "rollback"
    ref: Mapped[str | None] = mapped_column(String(255))
    commit: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    snapshot: Mapped[dict] = mapped_column(default=dict)  # {"rules": [...], "config_keys": [...]}
    summary: Mapped[dict] = mapped_column(default=dict)
    rollback_of: Mapped[str | None] = mapped_column(String(64))


class DeployManualRuleRow(Base):
    """A rule a deploy never creates, changes, re-orders or deletes (Auth0's "manual" rules)."""

    __tablename__ = "deploy_manual_rules"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime]
