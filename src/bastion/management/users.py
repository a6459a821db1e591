"""/api/v2/users, /api/v2/users-by-email and /api/v2/user-blocks."""

from __future__ import annotations

import re
from datetime import timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.permissions import checked_permissions, requested_permissions, user_permission_json
from bastion.management.roles import NO_ROLE, role_json
from bastion.management.schemas import PermissionsBody, UserCreate, UserRolesBody, UserUpdate
from bastion.storage import connections as connection_store
from bastion.storage import authenticators, login_attempts, refresh_tokens, sso_sessions
from bastion.storage import permissions as permission_store
from bastion.storage import roles as role_store
from bastion.storage import users as user_store
from bastion.storage.paging import Page
from bastion.tenant.users import UserConflict, WeakPassword, apply_user_patch, create_database_user, user_to_json

router = APIRouter()

_NO_USER = ManagementError(404, "The user does not exist.", "inexistent_user")
# The subset of Auth0's user search (Lucene) that maps to indexed columns: email:"x" and connection:"y".
_QUERY_TERM = re.compile(r'^\s*(email|connection|identities\.connection)\s*:\s*"?([^"\s]+)"?\s*$')


def _parse_query(q: str | None) -> dict[str, str]:
    filters: dict[str, str] = {}
    if not q:
        return filters
    for term in re.split(r"\s+AND\s+", q.strip()):
        match = _QUERY_TERM.match(term)
        if not match:
            raise ManagementError(
                400, "Unsupported query: use email:\"...\" and/or connection:\"...\" (joined with AND)", "invalid_query_string"
            )
        field = "connection" if match.group(1) != "email" else "email"
        filters[field] = match.group(2)
    return filters


@router.get("/users")
async def list_users(
    request: Request,
    params: PageParams = Depends(page_params),
    q: str | None = Query(None),
    search_engine: str | None = Query(None),
    caller: Caller = Depends(require("read:users")),
):
    services = services_of(request)
    filters = _parse_query(q)
    async with services.database.reader() as session:
        page = await user_store.list_users(session, page=params.page, per_page=params.per_page, **filters)
    return list_body("users", page, [user_to_json(u) for u in page.items], params)


@router.get("/users-by-email")
async def users_by_email(request: Request, email: str = Query(..., min_length=3), caller: Caller = Depends(require("read:users"))):
    services = services_of(request)
    async with services.database.reader() as session:
        users = await user_store.find_users_by_email(session, email=email)
    return [user_to_json(u) for u in users]


@router.post("/users", status_code=201)
async def post_user(request: Request, body: UserCreate, caller: Caller = Depends(require("create:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        connection = await connection_store.find_connection(session, name=body.connection)
        if connection is None:
            raise ManagementError(400, "The connection does not exist.", "inexistent_connection")
        if connection.strategy != "auth0":
            raise ManagementError(400, "Users can only be created in database connections.", "operation_not_supported")
        if not body.password:
            raise ManagementError(400, "Payload validation error: 'Missing required property: password'.", "invalid_body")
        if not body.email and not body.username:
            raise ManagementError(400, "Payload validation error: 'Missing required property: email'.", "invalid_body")
        profile = body.model_dump(exclude_none=True, exclude={"connection", "password", "email", "username", "email_verified", "user_metadata", "app_metadata", "verify_email"})
        try:
            user = await create_database_user(
                session, connection=connection.name, email=body.email, password=body.password, username=body.username,
                email_verified=bool(body.email_verified), user_metadata=body.user_metadata, app_metadata=body.app_metadata,
                profile=profile,
            )
        except WeakPassword as error:
            raise ManagementError(400, f"PasswordStrengthError: {error}", "invalid_body") from None
        except UserConflict as error:
            raise ManagementError(409, str(error), "auth0_idp_error") from None
        await audit(session, caller, "Create a User", request, user_id=user.user_id)
    return user_to_json(user)


@router.get("/users/{user_id}")
async def get_user(request: Request, user_id: str, caller: Caller = Depends(require("read:users"))):
    services = services_of(request)
    async with services.database.reader() as session:
        user = await user_store.get_user(session, user_id=user_id)
    if user is None:
        raise _NO_USER
    return user_to_json(user)


@router.patch("/users/{user_id}")
async def patch_user(request: Request, user_id: str, body: UserUpdate, caller: Caller = Depends(require("update:users", "update:users_app_metadata"))):
    services = services_of(request)
    patch = body.model_dump(exclude_unset=True, exclude={"connection", "verify_email"})
    if "update:users" not in caller.scopes and set(patch) - {"app_metadata", "user_metadata"}:
        raise ManagementError(403, "Insufficient scope, expected any of: update:users", "insufficient_scope")
    for key in ("email", "username", "email_verified", "blocked", "password"):
        if key in patch and patch[key] is None:
            raise ManagementError(400, f"Payload validation error: '{key}' cannot be null.", "invalid_body")
    async with services.database.transaction() as session:
        user = await user_store.get_user(session, user_id=user_id)
        if user is None:
            raise _NO_USER
        try:
            updated = await apply_user_patch(session, user=user, patch=patch)
        except WeakPassword as error:
            raise ManagementError(400, f"PasswordStrengthError: {error}", "invalid_body") from None
        except UserConflict as error:
            raise ManagementError(409, str(error), "auth0_idp_error") from None
        if "password" in patch:
            await login_attempts.clear_user_blocks(session, user_id=user_id)
        if patch.get("blocked"):
            await sso_sessions.revoke_user_sso_sessions(session, user_id=user_id)
            await refresh_tokens.revoke_user_refresh_tokens(session, user_id=user_id)
        await audit(session, caller, "Update a User", request, user_id=user_id, fields=sorted(patch))
    return user_to_json(updated)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(request: Request, user_id: str, caller: Caller = Depends(require("delete:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await sso_sessions.revoke_user_sso_sessions(session, user_id=user_id)
        await refresh_tokens.revoke_user_refresh_tokens(session, user_id=user_id)
        await login_attempts.clear_user_blocks(session, user_id=user_id)
        if not await user_store.delete_user(session, user_id=user_id):
            raise _NO_USER
        await audit(session, caller, "Delete a User", request, user_id=user_id)
    return Response(status_code=204)


@router.get("/user-blocks/{user_id}")
async def get_user_blocks(request: Request, user_id: str, caller: Caller = Depends(require("read:users"))):
    services = services_of(request)
    async with services.database.reader() as session:
        if await user_store.get_user(session, user_id=user_id) is None:
            raise _NO_USER
        ips = await login_attempts.list_user_blocks(session, user_id=user_id)
    return {"blocked_for": [{"identifier": user_id, "ip": ip} for ip in ips]}


@router.delete("/user-blocks/{user_id}", status_code=204)
async def delete_user_blocks(request: Request, user_id: str, caller: Caller = Depends(require("update:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if await user_store.get_user(session, user_id=user_id) is None:
            raise _NO_USER
        await login_attempts.clear_user_blocks(session, user_id=user_id)
        await audit(session, caller, "Unblock a User", request, user_id=user_id)
    return Response(status_code=204)


# -- roles and permissions (docs/access-control.md) -----------------------------------------


async def _existing_user(session, user_id: str) -> None:
    if not await user_store.get_user(session, user_id=user_id):
        raise _NO_USER


@router.get("/users/{user_id}/roles")
async def list_user_roles(
    request: Request, user_id: str, params: PageParams = Depends(page_params),
    caller: Caller = Depends(require("read:users", "read:roles", all_of=True)),
):
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_user(session, user_id)
        page = await role_store.list_user_roles(session, user_id=user_id, page=params.page, per_page=params.per_page)
    return list_body("roles", page, [role_json(r) for r in page.items], params, length=False)


@router.post("/users/{user_id}/roles", status_code=204)
async def post_user_roles(request: Request, user_id: str, body: UserRolesBody, caller: Caller = Depends(require("update:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        if await role_store.missing_roles(session, ids=body.roles):
            raise NO_ROLE
        await role_store.assign_roles(session, user_ids=[user_id], role_ids=body.roles)
        await audit(session, caller, "Assign roles to a User", request, user_id=user_id, roles=list(body.roles))
    return Response(status_code=204)


@router.delete("/users/{user_id}/roles", status_code=204)
async def delete_user_roles(request: Request, user_id: str, body: UserRolesBody, caller: Caller = Depends(require("update:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        await role_store.unassign_roles(session, user_id=user_id, role_ids=body.roles)
        await audit(session, caller, "Remove roles from a User", request, user_id=user_id, roles=list(body.roles))
    return Response(status_code=204)


@router.get("/users/{user_id}/permissions")
async def list_user_permissions(
    request: Request, user_id: str, params: PageParams = Depends(page_params), caller: Caller = Depends(require("read:users"))
):
    """Direct permissions and those of the user's roles, each with its `sources` (Auth0's shape)."""
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_user(session, user_id)
        held = await permission_store.effective_permissions(session, user_id=user_id)
    start = params.page * params.per_page
    page = Page(held[start:start + params.per_page], start, params.per_page, len(held))
    return list_body("permissions", page, [user_permission_json(p) for p in page.items], params, length=False)


@router.post("/users/{user_id}/permissions", status_code=201)
async def post_user_permissions(request: Request, user_id: str, body: PermissionsBody, caller: Caller = Depends(require("update:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        permissions = await checked_permissions(session, body)
        await permission_store.add_user_permissions(session, user_id=user_id, permissions=permissions)
        await audit(session, caller, "Assign permissions to a User", request, user_id=user_id, permissions=[list(p) for p in permissions])
    return Response(status_code=201)


@router.delete("/users/{user_id}/permissions", status_code=204)
async def delete_user_permissions(request: Request, user_id: str, body: PermissionsBody, caller: Caller = Depends(require("update:users"))):
    """Removes direct assignments only; a permission the user has through a role stays."""
    services = services_of(request)
    permissions = requested_permissions(body)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        await permission_store.remove_user_permissions(session, user_id=user_id, permissions=permissions)
        await audit(session, caller, "Remove permissions from a User", request, user_id=user_id, permissions=[list(p) for p in permissions])
    return Response(status_code=204)


# -- MFA: what Auth0's tools call to see and reset a user's second factors ----------------

_ENROLLMENT_TYPES = {"otp": "authenticator", "webauthn-roaming": "webauthn-roaming", "webauthn-platform": "webauthn-platform"}


@router.get("/users/{user_id}/enrollments")
async def get_user_enrollments(request: Request, user_id: str, caller: Caller = Depends(require("read:users"))):
    """Auth0's "Get the first confirmed MFA enrollment": the user's confirmed factors (recovery codes are not enrollments)."""
    services = services_of(request)
    async with services.database.reader() as session:
        if await user_store.get_user(session, user_id=user_id) is None:
            raise _NO_USER
        factors = await authenticators.list_authenticators(session, user_id=user_id)
    return [
        {
            "id": factor.id, "status": "confirmed", "type": _ENROLLMENT_TYPES[factor.type], "auth_method": _ENROLLMENT_TYPES[factor.type],
            "name": factor.name, "enrolled_at": _timestamp(factor.created_at),
            **({"last_auth": _timestamp(factor.last_used_at)} if factor.last_used_at else {}),
        }
        for factor in factors
        if factor.type in _ENROLLMENT_TYPES
    ]


@router.delete("/users/{user_id}/authenticators", status_code=204)
async def delete_user_authenticators(request: Request, user_id: str, caller: Caller = Depends(require("delete:guardian_enrollments"))):
    """Auth0's "Delete All Authenticators": every factor and recovery code; the next MFA login enrols again."""
    services = services_of(request)
    async with services.database.transaction() as session:
        if await user_store.get_user(session, user_id=user_id) is None:
            raise _NO_USER
        await authenticators.delete_user_authenticators(session, user_id=user_id)
        await audit(session, caller, "Delete all authenticators of a User", request, user_id=user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/multifactor/actions/invalidate-remember-browser", status_code=204)
async def invalidate_remember_browser(request: Request, user_id: str, caller: Caller = Depends(require("update:users"))):
    """Auth0's "Invalidate All Remembered Browsers for MFA": every browser asks for the second factor again."""
    services = services_of(request)
    async with services.database.transaction() as session:
        if await user_store.get_user(session, user_id=user_id) is None:
            raise _NO_USER
        await authenticators.forget_browsers(session, user_id=user_id)
        await audit(session, caller, "Invalidate Remember Browser for a User", request, user_id=user_id)
    return Response(status_code=204)


def _timestamp(moment) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
