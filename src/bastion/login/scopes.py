"""What a user's login grants on an API: its scopes, and the `permissions` claim.

Auth0's API Authorization Core (docs/access-control.md):

    requested scopes ── OIDC scopes, and the scopes the API defines ──> defined_scopes
                     ── the API enforces RBAC (enforce_policies):
                        only the API scopes the user holds as permissions ──> grant_scopes
    the API's dialect is access_token_authz ──> every permission the user holds on it,
                                                 whatever was asked: the `permissions` claim

Every user flow (the browser login, the password and passwordless grants, the refresh
grant) calls `grant_for_user`, so the permissions are read in one place, in one query,
once per login or grant, and only for an API that uses them. Client-credentials tokens
never come here: a client grant decides their scopes. A rule's `context.access_token.scope`
is applied after this (login/rules_step.py), as Auth0 lets rules and actions override RBAC.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bastion.login.transaction import OIDC_SCOPES
from bastion.services import Services
from bastion.storage import permissions as permission_store
from bastion.storage.records import ResourceServer

__all__ = ["ApiGrant", "defined_scopes", "grant_scopes", "user_permissions", "grant_for_user", "AUTHZ_DIALECT"]

AUTHZ_DIALECT = "access_token_authz"


@dataclass(frozen=True)
class ApiGrant:
    scopes: list[str]
    permissions: list[str] | None  # the access token's `permissions` claim (access_token_authz), else None


def defined_scopes(requested: list[str], api: ResourceServer | None) -> list[str]:
    """The OIDC scopes asked for, plus the asked-for scopes the API defines (others are dropped).

    A system API (the Management API) grants no scope to a user: its scopes are for
    machine-to-machine clients with a client grant.
    """
    allowed = api.scope_values if api and not api.is_system else set()
    return [s for s in requested if s in OIDC_SCOPES or s in allowed]


def grant_scopes(requested: list[str], api: ResourceServer | None, permissions: Collection[str] | None = None) -> list[str]:
    """The scopes a login grants: `defined_scopes`, and on an API that enforces RBAC only the
    API scopes among the user's `permissions` (none when they are not given: RBAC fails closed)."""
    scopes = defined_scopes(requested, api)
    if api is not None and api.enforce_policies:
        held = set(permissions or ())
        scopes = [s for s in scopes if s in OIDC_SCOPES or s in held]
    return scopes


async def user_permissions(services: Services, *, user_id: str, api: ResourceServer | None) -> list[str] | None:
    """The names of the user's permissions on `api` (direct and through roles), sorted; None,
    without touching the database, when the API uses no permissions."""
    if api is None or not api.uses_permissions:
        return None
    async with services.database.reader() as session:
        held = await permission_store.effective_permissions(session, user_id=user_id, resource_server_identifier=api.identifier)
    return [p.permission_name for p in held]


async def grant_for_user(services: Services, *, user_id: str, requested: list[str], api: ResourceServer | None) -> ApiGrant:
    """What the user's login or grant gets on `api` for the `requested` scopes."""
    held = await user_permissions(services, user_id=user_id, api=api)
    claim = held if api is not None and api.token_dialect == AUTHZ_DIALECT and held is not None else None
    return ApiGrant(scopes=grant_scopes(requested, api, held), permissions=claim)
