"""Request bodies of the Management API (pydantic). Unknown Auth0 fields are accepted and ignored,
so Auth0's tools (auth0-deploy-cli) can send their full objects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.saml.configuration import check_addon
from bastion.tenant.users import EMAIL_PATTERN

__all__ = [
    "ClientCreate",
    "ClientUpdate",
    "ResourceServerCreate",
    "ResourceServerUpdate",
    "ConnectionCreate",
    "ConnectionUpdate",
    "ClientGrantCreate",
    "ClientGrantUpdate",
    "UserCreate",
    "UserUpdate",
    "LinkIdentityBody",
    "RoleCreate",
    "RoleUpdate",
    "PermissionsBody",
    "RoleUsersBody",
    "UserRolesBody",
]

AppType = Literal["regular_web", "spa", "native", "non_interactive"]
AuthMethod = Literal["none", "client_secret_post", "client_secret_basic"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _check_urls(urls: list[str] | None) -> list[str] | None:
    if urls is None:
        return None
    for url in urls:
        if "://" not in url or len(url) > 2048:
            raise ValueError(f"{url!r} is not an absolute URL")
    return urls


class _ClientFields(_Body):
    description: str | None = Field(None, max_length=140)
    app_type: AppType | None = None
    is_first_party: bool | None = None
    callbacks: list[str] | None = None
    allowed_logout_urls: list[str] | None = None
    web_origins: list[str] | None = None
    allowed_origins: list[str] | None = None
    grant_types: list[str] | None = None
    token_endpoint_auth_method: AuthMethod | None = None
    client_metadata: dict[str, str] | None = None
    jwt_configuration: dict[str, Any] | None = None
    refresh_token: dict[str, Any] | None = None
    addons: dict[str, Any] | None = None

    _urls = field_validator("callbacks", "allowed_logout_urls", "web_origins", "allowed_origins")(_check_urls)

    @field_validator("addons")
    @classmethod
    def _addons(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Each addon is an object; `samlp` (the SAML 2.0 IdP) is checked setting by setting.
        Other Auth0 addons are kept as sent (so exported tenants import) and have no effect."""
        for name, addon in (value or {}).items():
            if not isinstance(addon, dict):
                raise ValueError(f"addons.{name} must be an object")
        if value and "samlp" in value:
            value = {**value, "samlp": check_addon(value["samlp"])}
        return value

    @field_validator("grant_types")
    @classmethod
    def _known_grants(cls, value: list[str] | None) -> list[str] | None:
        known = {
            "authorization_code", "implicit", "refresh_token", "client_credentials", "password",
            "http://auth0.com/oauth/grant-type/password-realm", "http://auth0.com/oauth/grant-type/mfa-oob",
            "http://auth0.com/oauth/grant-type/mfa-otp", "http://auth0.com/oauth/grant-type/mfa-recovery-code",
            "http://auth0.com/oauth/grant-type/passwordless/otp", "urn:ietf:params:oauth:grant-type:device_code",
        }
        for grant in value or []:
            if grant not in known:
                raise ValueError(f"unknown grant type {grant!r}")
        return value


class ClientCreate(_ClientFields):
    name: str = Field(min_length=1, max_length=256)
    client_secret: str | None = Field(None, min_length=32, max_length=256)


class ClientUpdate(_ClientFields):
    name: str | None = Field(None, min_length=1, max_length=256)
    client_secret: str | None = Field(None, min_length=32, max_length=256)


class Scope(_Body):
    value: str = Field(min_length=1, max_length=280)
    description: str = ""


class _ResourceServerFields(_Body):
    scopes: list[Scope] | None = None
    signing_alg: Literal["RS256", "ES256", "EdDSA"] | None = None
    token_lifetime: int | None = Field(None, ge=60, le=2592000)
    allow_offline_access: bool | None = None
    skip_consent_for_verifiable_first_party_clients: bool | None = None
    enforce_policies: bool | None = None  # RBAC (docs/access-control.md)
    token_dialect: Literal["access_token", "access_token_authz"] | None = None


class ResourceServerCreate(_ResourceServerFields):
    identifier: str = Field(min_length=1, max_length=600)
    name: str | None = Field(None, max_length=256)


class ResourceServerUpdate(_ResourceServerFields):
    name: str | None = Field(None, max_length=256)


class ConnectionCreate(_Body):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?$")
    display_name: str | None = Field(None, min_length=1, max_length=128)
    strategy: str = Field(min_length=1, max_length=64)
    options: dict[str, Any] = Field(default_factory=dict)
    enabled_clients: list[str] = Field(default_factory=list)
    is_domain_connection: bool = False


class ConnectionUpdate(_Body):
    display_name: str | None = Field(None, min_length=1, max_length=128)
    options: dict[str, Any] | None = None
    enabled_clients: list[str] | None = None
    is_domain_connection: bool | None = None


class ClientGrantCreate(_Body):
    client_id: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    scope: list[str] = Field(default_factory=list)


class ClientGrantUpdate(_Body):
    scope: list[str]


class _UserFields(_Body):
    email: str | None = Field(None, max_length=320, pattern=EMAIL_PATTERN)
    email_verified: bool | None = None
    username: str | None = Field(None, min_length=1, max_length=128)
    phone_number: str | None = Field(None, max_length=32)
    phone_verified: bool | None = None
    given_name: str | None = Field(None, max_length=150)
    family_name: str | None = Field(None, max_length=150)
    name: str | None = Field(None, max_length=300)
    nickname: str | None = Field(None, max_length=300)
    picture: str | None = Field(None, max_length=2048)
    blocked: bool | None = None
    user_metadata: dict[str, Any] | None = None
    app_metadata: dict[str, Any] | None = None
    password: str | None = Field(None, max_length=1024)
    verify_email: bool | None = None


class UserCreate(_UserFields):
    connection: str = Field(min_length=1)


class UserUpdate(_UserFields):
    connection: str | None = None
    client_id: str | None = Field(None, max_length=128)  # Auth0's: the application a new address's verification email names


class LinkIdentityBody(_Body):
    """Auth0's link request: the secondary by `provider` and `user_id` (its identity's id, or its
    full user id), optionally `connection_id`; or `link_with`, the secondary's ID token.
    `force` is Bastion's: link even when an email is not verified (docs/identities.md)."""

    provider: str | None = Field(None, min_length=1, max_length=64)
    user_id: str | int | None = None  # Auth0's SDKs send a string; older clients sent numbers
    connection_id: str | None = Field(None, min_length=1, max_length=64)
    link_with: str | None = Field(None, min_length=1, max_length=16_384)
    force: bool = False


# -- roles and permissions (docs/access-control.md) ---------------------------------------


class RoleCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=255)


class RoleUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=255)


class PermissionRef(_Body):
    resource_server_identifier: str = Field(min_length=1, max_length=600)
    permission_name: str = Field(min_length=1, max_length=280)


class PermissionsBody(_Body):
    """`{"permissions": [{resource_server_identifier, permission_name}, ...]}` (one at least)."""

    permissions: list[PermissionRef] = Field(min_length=1)


class RoleUsersBody(_Body):
    users: list[str] = Field(min_length=1)

    @field_validator("users")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        return _check_ids(value, 128)


class UserRolesBody(_Body):
    roles: list[str] = Field(min_length=1)

    @field_validator("roles")
    @classmethod
    def _role_ids(cls, value: list[str]) -> list[str]:
        return _check_ids(value, 64)


def _check_ids(value: list[str], longest: int) -> list[str]:
    for item in value:
        if not item or len(item) > longest:
            raise ValueError(f"{item!r} is not a valid id")
    return value
