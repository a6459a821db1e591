"""/api/v2/users, /api/v2/users-by-email and /api/v2/user-blocks.

A linked secondary user (docs/identities.md) is no user of its own here, as in Auth0: every
`/users/{id}` path answers 404 for it; it shows in its primary's `identities`.
"""

from __future__ import annotations

from datetime import timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from bastion.emails.account import send_account_email, send_automatic_email
from bastion.errors import ManagementError
from bastion.management.account_emails import refuse_disabled_template
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.management.user_search import sort_order, user_search_condition
from bastion.management.permissions import checked_permissions, requested_permissions, user_permission_json
from bastion.management.roles import NO_ROLE, role_json
from bastion.management.schemas import LinkIdentityBody, PermissionsBody, UserCreate, UserRolesBody, UserUpdate
from bastion.login.federated_accounts import ACCESS_TOKEN_PURPOSE
from bastion.storage import connections as connection_store
from bastion.storage import identities as identity_store
from bastion.storage import authenticators, login_attempts, refresh_tokens, sso_sessions
from bastion.storage import permissions as permission_store
from bastion.storage import roles as role_store
from bastion.storage import users as user_store
from bastion.keys.access_tokens import InvalidAccessToken, verify_access_token
from bastion.storage.paging import Page
from bastion.storage.records import User
from bastion.tenant.linking import LinkRefused, link_accounts, unlink_account
from bastion.tenant.users import UserConflict, WeakPassword, apply_user_patch, create_database_user, identity_to_json, user_to_json

router = APIRouter()

# Auth0 shows an identity's upstream access token only to callers granted this scope.
IDP_TOKENS_SCOPE = "read:user_idp_tokens"
_NO_USER = ManagementError(404, "The user does not exist.", "inexistent_user")


async def _existing_user(session, user_id: str) -> User:
    """The user, or Auth0's 404: also for a linked secondary, which is no user of its own."""
    user = await user_store.get_user(session, user_id=user_id)
    if user is None or user.linked_to is not None:
        raise _NO_USER
    return user


def _parse_query(q: str | None, search_engine: str | None = None):
    """The condition on `users` of Auth0's user search `q` (search engine v3; the syntax is in
    docs/management-api.md), None for every user. Auth0 refuses the retired engines v1 and v2."""
    if search_engine is not None and search_engine != "v3":
        if search_engine in ("v1", "v2"):
            raise ManagementError(400, f"You are not allowed to use search_engine={search_engine}.", "invalid_query_string")
        raise ManagementError(400, "Query validation error: 'search_engine' must be one of v1, v2, v3.", "invalid_query_string")
    return user_search_condition(q)


@router.get("/users")
async def list_users(
    request: Request,
    params: PageParams = Depends(page_params),
    q: str | None = Query(None),
    search_engine: str | None = Query(None),
    sort: str | None = Query(None),
    caller: Caller = Depends(require("read:users")),
):
    services = services_of(request)
    condition = _parse_query(q, search_engine)
    order_by = sort_order(sort)
    async with services.database.reader() as session:
        page = await user_store.list_users(
            session, page=params.page, per_page=params.per_page, condition=condition, order_by=order_by
        )
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
        await _send_verification(services, session, user, requested=body.verify_email, connection_options=connection.options)
        await audit(session, caller, "Create a User", request, user_id=user.user_id)
    return user_to_json(user)


async def _send_verification(services, session, user: User, *, requested: bool | None, connection_options: dict,
                             client_id: str | None = None) -> None:
    """Auth0's `verify_email` on creating a user or changing its address: true sends the
    verification email, false sends none; left out, the connection decides (its `verify_email`
    option, docs/email.md). An address given as verified gets no link to verify. A disabled
    template refuses an explicit `true` with a 400 (raised inside the caller's transaction, so
    the user is neither created nor changed); left out, it sends nothing, as for any email
    Bastion sends by itself."""
    if not user.email or user.email_verified or requested is False:
        return
    if requested:
        await refuse_disabled_template(services, "verify_email")
        await send_account_email(services, session, "verify_email", user=user, client_id=client_id)
    elif connection_options.get("verify_email"):
        await send_automatic_email(services, session, "verify_email", user=user, client_id=client_id)


@router.get("/users/{user_id}")
async def get_user(request: Request, user_id: str, caller: Caller = Depends(require("read:users"))):
    services = services_of(request)
    async with services.database.reader() as session:
        user = await _existing_user(session, user_id)
        body = user_to_json(user)
        if IDP_TOKENS_SCOPE in caller.scopes:
            for identity in body["identities"]:
                sealed = await identity_store.get_identity_access_token_sealed(
                    session, provider=identity["provider"], connection=identity["connection"], external_id=identity["user_id"]
                )
                if sealed:
                    identity["access_token"] = services.sealer.open(sealed, purpose=ACCESS_TOKEN_PURPOSE).decode()
    return body


@router.patch("/users/{user_id}")
async def patch_user(request: Request, user_id: str, body: UserUpdate, caller: Caller = Depends(require("update:users", "update:users_app_metadata"))):
    services = services_of(request)
    patch = body.model_dump(exclude_unset=True, exclude={"connection", "verify_email", "client_id"})
    if "update:users" not in caller.scopes and set(patch) - {"app_metadata", "user_metadata"}:
        raise ManagementError(403, "Insufficient scope, expected any of: update:users", "insufficient_scope")
    for key in ("email", "username", "email_verified", "blocked", "password"):
        if key in patch and patch[key] is None:
            raise ManagementError(400, f"Payload validation error: '{key}' cannot be null.", "invalid_body")
    async with services.database.transaction() as session:
        user = await _existing_user(session, user_id)
        try:
            updated = await apply_user_patch(session, user=user, patch=patch)
        except WeakPassword as error:
            raise ManagementError(400, f"PasswordStrengthError: {error}", "invalid_body") from None
        except UserConflict as error:
            raise ManagementError(409, str(error), "auth0_idp_error") from None
        if updated.email != user.email:  # a new address: verify it as a new user's would be
            connection = await services.tenant.connection(updated.connection)
            if body.client_id and await services.tenant.client(body.client_id) is None:
                raise ManagementError(400, "Payload validation error: 'client_id is not a known application'.", "invalid_body")
            await _send_verification(services, session, updated, requested=body.verify_email,
                                     connection_options=connection.options if connection else {}, client_id=body.client_id)
        if "password" in patch:
            await login_attempts.clear_user_blocks(session, user_id=user_id)
        if patch.get("blocked"):
            await sso_sessions.revoke_user_sso_sessions(session, user_id=user_id)
            await refresh_tokens.revoke_user_refresh_tokens(session, user_id=user_id)
        await audit(session, caller, "Update a User", request, user_id=user_id, fields=sorted(patch))
    return user_to_json(updated)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(request: Request, user_id: str, caller: Caller = Depends(require("delete:users"))):
    """Deletes the user and the secondaries linked to it (as Auth0 does): their credentials
    log in nobody any more. Unlink a secondary first to keep it."""
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        secondaries = await user_store.linked_user_ids(session, user_id=user_id)
        for doomed in [user_id, *secondaries]:
            await sso_sessions.revoke_user_sso_sessions(session, user_id=doomed)
            await refresh_tokens.revoke_user_refresh_tokens(session, user_id=doomed)
            await login_attempts.clear_user_blocks(session, user_id=doomed)
        if not await user_store.delete_user(session, user_id=user_id):
            raise _NO_USER
        await audit(session, caller, "Delete a User", request, user_id=user_id, linked_users=secondaries)
    return Response(status_code=204)


# -- account linking (docs/identities.md) ---------------------------------------------------

_LINK_ERRORS = {
    "same_user": (400, "invalid_body"),
    "no_primary": (404, "inexistent_user"),
    "no_secondary": (404, "inexistent_user"),
    "already_linked": (409, "identity_already_linked"),
    "has_linked_users": (409, "identity_has_linked_users"),
    "unverified": (400, "email_not_verified"),
    "main_identity": (400, "operation_not_supported"),
    "not_linked": (404, "inexistent_identity"),
}


def _refused(refusal: LinkRefused) -> ManagementError:
    status, code = _LINK_ERRORS[refusal.reason]
    return ManagementError(status, refusal.message, code)


async def _secondary_id(request: Request, session, body: LinkIdentityBody, caller: Caller) -> str:
    """The user the link request names: by its ID token (`link_with`), or by provider and id."""
    services = services_of(request)
    if body.link_with:
        # Auth0: an ID token this tenant issued to the application that calls (the `azp` of
        # the Management API token), unexpired; its `sub` is the secondary.
        try:
            if not caller.client_id:
                raise InvalidAccessToken("no calling application")
            claims = await verify_access_token(
                services.keyring, body.link_with, issuer=services.settings.token_issuer, audience=caller.client_id
            )
        except InvalidAccessToken:
            raise ManagementError(
                400, "link_with must be an unexpired ID token issued by this tenant to the calling application.", "invalid_body"
            ) from None
        if not isinstance(claims.get("sub"), str):
            raise ManagementError(400, "link_with has no subject.", "invalid_body")
        return claims["sub"]
    if not body.provider or body.user_id is None or body.user_id == "":
        missing = "provider" if not body.provider else "user_id"
        raise ManagementError(400, f"Payload validation error: 'Missing required property: {missing}'.", "invalid_body")
    connection = None
    if body.connection_id:
        found = await connection_store.get_connection(session, id=body.connection_id)
        if found is None:
            raise ManagementError(400, "The connection does not exist.", "inexistent_connection")
        connection = found.name
    external_id = str(body.user_id)
    users = await user_store.find_users_by_identity(session, provider=body.provider, external_id=external_id, connection=connection)
    if not users and external_id.startswith(f"{body.provider}|"):  # the full user id, as many callers send
        users = await user_store.find_users_by_identity(
            session, provider=body.provider, external_id=external_id[len(body.provider) + 1:], connection=connection
        )
    if not users:
        raise ManagementError(404, "The secondary account does not exist.", "inexistent_user")
    if len(users) > 1:
        raise ManagementError(400, "Several accounts have this identity: add connection_id.", "invalid_body")
    return users[0].user_id


@router.post("/users/{user_id}/identities", status_code=201)
async def link_user_identity(request: Request, user_id: str, body: LinkIdentityBody, caller: Caller = Depends(require("update:users"))):
    """Auth0's "Link a User Account": the secondary's identities join the primary's. Answers the
    primary's identities. Refused while either email is unverified, unless `"force": true`."""
    services = services_of(request)
    async with services.database.transaction() as session:
        secondary_id = await _secondary_id(request, session, body, caller)
        try:
            primary = await link_accounts(session, primary_id=user_id, secondary_id=secondary_id, force=body.force)
        except LinkRefused as refusal:
            raise _refused(refusal) from None
        await audit(
            session, caller, "Link a User Account", request, user_id=user_id, linked_user_id=secondary_id, forced=body.force
        )
    return [identity_to_json(i) for i in primary.identities]


@router.delete("/users/{user_id}/identities/{provider}/{identity_user_id}")
async def unlink_user_identity(
    request: Request, user_id: str, provider: str, identity_user_id: str, caller: Caller = Depends(require("update:users"))
):
    """Auth0's "Unlink a User Identity": the secondary is a user of its own again (GET works, its
    credentials log it in as itself). Answers the primary's remaining identities."""
    services = services_of(request)
    async with services.database.transaction() as session:
        try:
            primary = await unlink_account(session, primary_id=user_id, provider=provider, external_id=identity_user_id)
        except LinkRefused as refusal:
            raise _refused(refusal) from None
        await audit(session, caller, "Unlink a User Account", request, user_id=user_id, provider=provider, identity=identity_user_id)
    return [identity_to_json(i) for i in primary.identities]


@router.get("/user-blocks/{user_id}")
async def get_user_blocks(request: Request, user_id: str, caller: Caller = Depends(require("read:users"))):
    services = services_of(request)
    async with services.database.reader() as session:
        await _existing_user(session, user_id)
        ips = await login_attempts.list_user_blocks(session, user_id=user_id)
    return {"blocked_for": [{"identifier": user_id, "ip": ip} for ip in ips]}


@router.delete("/user-blocks/{user_id}", status_code=204)
async def delete_user_blocks(request: Request, user_id: str, caller: Caller = Depends(require("update:users"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        await login_attempts.clear_user_blocks(session, user_id=user_id)
        await audit(session, caller, "Unblock a User", request, user_id=user_id)
    return Response(status_code=204)


# -- roles and permissions (docs/access-control.md) -----------------------------------------


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
        await _existing_user(session, user_id)
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
        await _existing_user(session, user_id)
        await authenticators.delete_user_authenticators(session, user_id=user_id)
        await audit(session, caller, "Delete all authenticators of a User", request, user_id=user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/multifactor/actions/invalidate-remember-browser", status_code=204)
async def invalidate_remember_browser(request: Request, user_id: str, caller: Caller = Depends(require("update:users"))):
    """Auth0's "Invalidate All Remembered Browsers for MFA": every browser asks for the second factor again."""
    services = services_of(request)
    async with services.database.transaction() as session:
        await _existing_user(session, user_id)
        await authenticators.forget_browsers(session, user_id=user_id)
        await audit(session, caller, "Invalidate Remember Browser for a User", request, user_id=user_id)
    return Response(status_code=204)


def _timestamp(moment) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
