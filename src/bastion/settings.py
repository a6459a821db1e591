"""Bastion's settings: environment variables `BASTION_*`, then an optional TOML file.

Every setting is documented in docs/configuration.md. Precedence, highest first:
environment variables, the file named by `BASTION_CONFIG_FILE`, the defaults below.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

__all__ = ["Settings", "load_settings"]

log = logging.getLogger("bastion.settings")

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "xxx", ""}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    issuer: str = "http://127.0.0.1:8000"
    database_url: str = ""
    secret_key: str | None = None
    var_dir: Path = Path("./var")
    config_file: Path | None = None

    bootstrap_client_id: str | None = None
    bootstrap_client_secret: str | None = None

    signing_alg: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    id_token_lifetime: int = 36000
    access_token_lifetime: int = 86400
    authorization_code_lifetime: int = 300
    refresh_token_lifetime: int = 30 * 86400
    session_lifetime: int = 7 * 86400
    session_idle_lifetime: int = 3 * 86400
    login_transaction_lifetime: int = 3600
    redirect_state_lifetime: int = 3600  # a rule's redirect must come back to /continue within this
    mfa_remember_browser_days: int = 30
    mfa_token_lifetime: int = 600  # the password grant's mfa_token
    management_rate_limit: float = 50.0  # Management API requests per second per caller and process (0: no limit)
    management_rate_burst: int = 100  # ... and how many may come at once
    saml_clock_skew: int = 180  # seconds of clock difference allowed with service providers
    saml_request_max_age: int = 600  # an AuthnRequest older than this (plus the skew) is refused
    duo_ca_file: Path | None = None  # CA bundle for Duo's API (default: the duo_universal package's own)
    passwordless_code_lifetime: int = 300
    passwordless_max_attempts: int = 3
    passwordless_codes_per_hour: int = 10
    sms_provider_url: str = "https://api.twilio.com"  # a Twilio-compatible Messages API
    brute_force_max_attempts: int = 10
    max_body_bytes: int = 64 * 1024
    trusted_proxies: list[str] = Field(default_factory=list)
    cache_ttl: float = 5.0
    environment: Literal["development", "production"] = "development"

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_ca_file: FilePath | None = None  # CA bundle the SMTP server's certificate must chain to (default: the system's)
    smtp_from: str = "Bastion <no-reply@localhost>"

    # Log streams (docs/log-streams.md)
    log_stream_batch_size: int = 100  # events per delivery (per request, except JSONOBJECT: one request each)
    log_stream_poll_interval: float = 1.0  # seconds between looks for new events when nothing is due sooner
    log_stream_request_timeout: float = 10.0  # seconds one request to a receiver may take
    log_stream_retry_base: float = 5.0  # seconds before the first retry; doubles with each failure...
    log_stream_retry_cap: float = 300.0  # ... up to this
    log_stream_suspend_after: float = 7 * 86400.0  # seconds of failing in a row before a stream is suspended (Auth0: 7 days)
    log_stream_gap_grace: float = 10.0  # seconds a missing log seq is waited for (a transaction not yet committed)
    segment_api_url: str = "https://api.segment.io"  # Segment's HTTP Tracking API (segment log streams)
    password_reset_ticket_lifetime: int = 5 * 86400  # Auth0's default for password-change tickets: 5 days
    email_verification_ticket_lifetime: int = 5 * 86400  # Auth0's default for verification links: 5 days
    email_templates_dir: Path | None = None  # the operator's email templates, used before Bastion's own (docs/email.md)
    outbox_max_attempts: int = 12  # attempts of an email or queued request before it is marked failed
    outbox_retry_base: float = 30.0  # seconds before the second attempt; doubles with each failure...
    outbox_retry_max: float = 3600.0  # ... up to this
    outbox_lease: float = 120.0  # an attempt still running after this is presumed dead and made again
    outbox_poll_interval: float = 5.0  # how often each process looks for due deliveries (new ones wake it at once)
    demo: bool = False

    # Deploying rules on push (docs/deploy.md): the repository and branch a webhook may deploy
    deploy_repository: str | None = None  # its full name (acme/rules) or URL, as the provider's payload names it
    deploy_branch: str = "main"
    deploy_path: str = ""  # the bundle's folder inside the repository
    deploy_git_url: str | None = None  # where git fetches it (default: deploy_repository, when a URL or path)
    deploy_webhook_secret: str | None = None  # GitHub/Bitbucket HMAC secret, GitLab token, Azure DevOps password
    deploy_webhook_username: str = "bastion"  # Azure DevOps basic-auth user name
    deploy_git_timeout: float = 60.0  # seconds git may take to fetch a commit
    # a webhook deploy reads rules-configs/KEY's value from the variable PREFIX+KEY only (never a BASTION_ setting)
    deploy_env_prefix: str = Field("BASTION_RULES_CONFIG_", min_length=1)

    rules_workers: int = 2
    rules_timeout: float = 20.0
    rules_cpu_seconds: int = 5
    rules_memory_mb: int = 512
    rules_jobs_per_worker: int = 1000
    rules_unauthorized_error: Literal["unauthorized", "access_denied"] = "unauthorized"
    rules_http_allowed_hosts: list[str] = Field(default_factory=list)
    rules_http_allow_private: bool = False
    rules_http_max_response_bytes: int = 1024 * 1024
    rules_queued_request_timeout: float = 10.0  # each attempt of a request a rule queued (api.http.queue)

    @field_validator("issuer")
    @classmethod
    def _strip_issuer(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("BASTION_ISSUER must start with http:// or https://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("BASTION_CONFIG_FILE")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # Derived values -------------------------------------------------------

    @property
    def token_issuer(self) -> str:
        """The `iss` claim: the base URL with a trailing slash, as Auth0 writes it."""
        return self.issuer + "/"

    @property
    def issuer_host(self) -> str:
        """The issuer's host name: the `hostname` of log events, the `host` of Splunk events."""
        return urlsplit(self.issuer).hostname or "bastion"

    @property
    def management_audience(self) -> str:
        return self.issuer + "/api/v2/"

    @property
    def userinfo_audience(self) -> str:
        return self.issuer + "/userinfo"

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'bastion.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def load_settings(**overrides) -> Settings:
    """Build the settings and resolve the master key (generated for development when unset)."""
    settings = Settings(**overrides)
    if settings.environment == "production":
        if settings.secret_key is None:
            raise ValueError("BASTION_SECRET_KEY must be set when BASTION_ENVIRONMENT=production")
        if settings.is_sqlite:
            log.warning("BASTION_ENVIRONMENT=production with the embedded SQLite database: use PostgreSQL")
        if not settings.issuer.startswith("https://"):
            log.warning("BASTION_ISSUER is not https: cookies are not Secure and Auth0 SDKs will refuse it")
    if settings.secret_key is None:
        settings.secret_key = _development_secret_key(settings.var_dir)
    elif settings.secret_key.strip().lower() in PLACEHOLDER_SECRETS or len(settings.secret_key) < 16:
        raise ValueError("BASTION_SECRET_KEY is a placeholder or shorter than 16 characters: set a long random value")
    if settings.bootstrap_client_secret is not None and (
        settings.bootstrap_client_secret.strip().lower() in PLACEHOLDER_SECRETS or len(settings.bootstrap_client_secret) < 16
    ):
        raise ValueError("BASTION_BOOTSTRAP_CLIENT_SECRET is a placeholder or shorter than 16 characters")
    return settings


def _development_secret_key(var_dir: Path) -> str:
    """A generated master key, kept under var/ so restarts can still decrypt what was stored."""
    path = var_dir / "secret.key"
    var_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
    else:
        key = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
    log.warning(
        "BASTION_SECRET_KEY is not set: using the development key stored in %s. "
        "Set BASTION_SECRET_KEY to a long random value in production.",
        path,
    )
    return key
