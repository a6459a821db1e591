"""The login transaction and the two values at its ends.

States (each transition is a compare-and-set on the stored state, so a step can
run once only, on any server process; pipeline.py drives them):

    awaiting_login ─(credentials, code, SSO session)─> authenticated
    authenticated ─(third-party app, no grant yet)─> awaiting_consent ─(accepted)─> consented
    authenticated | consented ─(rules run)─> decided
    decided ─(rules asked for MFA, not yet passed)─> awaiting_mfa ─(factor passed)─> decided
    decided ─(rules asked for a redirect, once)─> awaiting_redirect ─(/continue)─> resumed
    resumed ─(rules run again, protocol redirect-callback)─> decided
    decided ─> completed | failed
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

__all__ = ["LoginState", "AuthorizationRequest", "LoginResult", "LoginDenial", "OIDC_SCOPES", "MFA_ACR"]

OIDC_SCOPES = ("openid", "profile", "email", "address", "phone", "offline_access")


class LoginState(str, enum.Enum):
    AWAITING_LOGIN = "awaiting_login"
    AUTHENTICATED = "authenticated"
    AWAITING_CONSENT = "awaiting_consent"
    CONSENTED = "consented"
    DECIDED = "decided"
    AWAITING_MFA = "awaiting_mfa"
    AWAITING_REDIRECT = "awaiting_redirect"
    RESUMED = "resumed"
    COMPLETED = "completed"
    FAILED = "failed"


MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1)."""

    client_id: str
    redirect_uri: str
    response_mode: str
    scopes: list[str]
    state: str | None = None
    nonce: str | None = None
    audience: str | None = None
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    acr_values: str | None = None
    connection: str | None = None
    login_hint: str | None = None
    protocol: str = "oidc-basic-profile"
    query: dict[str, str] = field(default_factory=dict)  # the raw request parameters, shown to rules
    # A SAML login (protocol samlp): the AuthnRequest's id, the service provider, and the
    # `saml_configuration` the rules start from (saml/routes.py builds it).
    saml: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthorizationRequest:
        return cls(**data)


@dataclass(frozen=True)
class LoginResult:
    """What a completed login grants; stored with the authorization code and refresh tokens."""

    user_id: str
    client_id: str
    scopes: list[str]
    audience: str | None
    auth_time: int
    sid: str | None = None
    nonce: str | None = None
    amr: list[str] = field(default_factory=list)
    acr: str | None = None
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    access_token_claims: dict[str, Any] = field(default_factory=dict)
    jti: str | None = None
    access_scopes: list[str] | None = None  # the access token's scopes when a rule replaced them
    profile: dict[str, Any] | None = None  # standard claims from the rules' final user
    methods: list[list] = field(default_factory=list)  # [name, timestamp ms] of each authentication method
    saml: dict[str, Any] | None = None  # a SAML login: the rules' final `user` and `saml_configuration`
    permissions: list[str] | None = None  # the access token's `permissions` claim (login/scopes.py)

    @property
    def token_scopes(self) -> list[str]:
        """The access token's scopes: the granted ones, unless a rule replaced them."""
        return self.access_scopes if self.access_scopes is not None else self.scopes

    def to_json(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoginResult:
        return cls(**data)


@dataclass(frozen=True)
class LoginDenial:
    """The login ends without tokens: the application receives `error` and `description`."""

    error: str
    description: str

    def to_json(self) -> dict[str, Any]:
        return _shallow(self)


def _shallow(record: Any) -> dict[str, Any]:
    """A frozen record's fields as a dict, its lists and dicts copied one level down.

    What these records hold is already JSON (strings, numbers, lists, the claims rules
    set), so `dataclasses.asdict`'s recursive deep copy is not needed, and it cost more
    than the rules themselves on a login with ten claims (docs/performance.md).
    """
    values = {}
    for f in fields(record):
        value = getattr(record, f.name)
        values[f.name] = value.copy() if isinstance(value, (list, dict)) else value
    return values


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())
