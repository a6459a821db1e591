"""Turning what the rules left on `user` and `context` into what the tokens carry.

Applied after the last rule (Auth0 applies it then too):
- custom claims from `context.id_token` / `context.access_token`; reserved claims are
  dropped, and each attempt becomes a warning on the execution;
- `context.access_token["scope"]` (a list or a space-separated string) replaces the
  granted scopes;
- `user.jti` becomes the access token's `jti`;
- the standard profile claims of the ID token come from the final `user`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RuleOutcome", "outcome_from", "RESERVED_CLAIMS", "PROFILE_FIELDS"]

# Auth0's restricted claim names (create-custom-claims), plus Bastion's own protocol claims.
RESERVED_CLAIMS = frozenset(
    """acr act active amr at_hash ath attest aud auth_time authorization_details azp c_hash client_id cnf cty dest
    entitlements events exp gty htm htu iat internalService iss jcard jku jti jwe jwk kid may_act mky nbf nonce
    object_id org_id org_name orig origid permissions rph s_hash scope sid sip_callid sip_cseq_num sip_date
    sip_from_tag sip_via_branch sub sub_jwk toe txn typ uuid vot vtm x5t#S256""".split()
)

PROFILE_FIELDS = (
    "name", "nickname", "picture", "given_name", "family_name", "email", "email_verified", "phone_number",
    "phone_verified", "updated_at",
)


@dataclass(frozen=True)
class RuleOutcome:
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    access_token_claims: dict[str, Any] = field(default_factory=dict)
    scopes: list[str] | None = None
    jti: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    redirect: dict[str, Any] | None = None
    multifactor: dict[str, Any] | None = None
    primary_user: str | None = None
    warnings: list[str] = field(default_factory=list)


def _claims(source: Any, token: str, warnings: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    for name, value in (source or {}).items() if isinstance(source, dict) else []:
        if name == "scope" and token == "access_token":
            continue
        if name in RESERVED_CLAIMS or name.startswith("urn:auth0"):
            warnings.append(f"context.{token}[{name!r}] is a reserved claim and was ignored")
            continue
        claims[name] = value
    return claims


def _scopes(value: Any, warnings: list[str]) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [s for s in value.split() if s]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(dict.fromkeys(value))
    warnings.append("context.access_token['scope'] must be a list of strings or a space-separated string; ignored")
    return None


def outcome_from(user: dict[str, Any], context: dict[str, Any]) -> RuleOutcome:
    warnings: list[str] = []
    access_token = context.get("access_token") or {}
    jti = user.get("jti")
    return RuleOutcome(
        id_token_claims=_claims(context.get("id_token"), "id_token", warnings),
        access_token_claims=_claims(access_token, "access_token", warnings),
        scopes=_scopes(access_token.get("scope") if isinstance(access_token, dict) else None, warnings),
        jti=jti if isinstance(jti, str) and jti else None,
        profile={k: user.get(k) for k in PROFILE_FIELDS if user.get(k) is not None},
        redirect=context.get("redirect") or None,
        multifactor=context.get("multifactor") or None,
        primary_user=context.get("primary_user") or None,
        warnings=warnings,
    )
