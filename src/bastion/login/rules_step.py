"""The rules step of every login: build the rule input, run the engine, turn its answer
into a LoginResult or a LoginDenial. Shared by the browser login and the password and
refresh-token grants, so each protocol sees the same rules behave the same way.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from bastion.login.scopes import grant_for_user
from bastion.login.transaction import OIDC_SCOPES, LoginDenial, LoginResult
from bastion.rules.context import RequestInfo, rule_context, rule_user
from bastion.rules.engine import GENERIC_DENIAL, RuleRun
from bastion.services import Services
from bastion.storage import groups as group_store
from bastion.storage import roles as role_store
from bastion.storage import users as user_store
from bastion.storage.records import Client, User

__all__ = ["run_login_rules", "apply_rules", "continue_as_primary_user", "user_authorization", "user_role_names", "SAML_RULE_KEY_PURPOSE"]

SAML_RULE_KEY_PURPOSE = "saml-rule-key"


async def run_login_rules(
    services: Services,
    *,
    protocol: str,
    client: Client,
    original_protocol: str | None = None,
    user: User,
    connection_name: str | None,
    request: RequestInfo,
    result: LoginResult,
    saml_configuration: dict[str, Any] | None = None,
) -> RuleRun:
    connection = await services.tenant.connection(connection_name) if connection_name else None
    roles = await user_role_names(services, user_id=user.user_id)
    context = rule_context(
        issuer=services.settings.issuer,
        protocol=protocol,
        client=client,
        connection=connection,
        request=request,
        user=user,
        session_id=result.sid,
        methods=[(m[0], m[1]) for m in result.methods],
        audience=result.audience,
        roles=roles,
    )
    if original_protocol:
        context["original_protocol"] = original_protocol
    if saml_configuration is not None:
        context["saml_configuration"] = copy.deepcopy(saml_configuration)
    rule_input = rule_user(user)
    rule_input.update(await user_authorization(services, user=user, connection_name=connection_name))
    return await services.rules.run(user=rule_input, context=context)


async def user_authorization(services: Services, *, user: User, connection_name: str | None) -> dict[str, list[str]]:
    """`user.groups`, `user.roles` and `user.permissions` for rules (the Authorization Extension's
    model, docs/access-control.md): the user's groups (direct, nested, mapped from the upstream
    identity's `groups`), the roles of the user and of those groups, and their permissions. One
    query, only when a rule will run and the tenant has roles or groups; `groups` is set only
    when the tenant has groups, so a rule reading an upstream `groups` attribute keeps it."""
    has_groups = await services.tenant.has_groups()
    if not await services.tenant.enabled_rules() or not (has_groups or await services.tenant.has_roles()):
        return {}
    identity = next((i for i in user.identities if i.connection == connection_name), None)
    async with services.database.reader() as session:
        found = await group_store.user_authorization(
            session, user_id=user.user_id, connection=connection_name,
            upstream_groups=identity.profile_data.get("groups") if identity else None,
        )
    values = {"roles": found.roles, "permissions": found.permissions}
    if has_groups:
        values["groups"] = found.groups
    return values


async def user_role_names(services: Services, *, user_id: str) -> list[str]:
    """Auth0's context.authorization.roles. Read (one query) only when a rule will run and the
    tenant has a role at all; both answers come from the tenant cache, so a login on a tenant
    without roles, or without rules, costs nothing more."""
    if not await services.tenant.enabled_rules() or not await services.tenant.has_roles():
        return []
    async with services.database.reader() as session:
        return await role_store.user_role_names(session, user_id=user_id)


async def apply_rules(services: Services, run: RuleRun, result: LoginResult, *, saml_login: bool = False) -> LoginResult | LoginDenial:
    """What the login grants after its rules, or why it does not."""
    if run.status == "denied":
        return LoginDenial(services.settings.rules_unauthorized_error, run.message or "Access denied.")
    if run.status != "ok" or run.outcome is None:
        return LoginDenial("access_denied", GENERIC_DENIAL)
    outcome = run.outcome
    # context.redirect and context.multifactor are the pipeline's business (pipeline.py), or the
    # back-channel grant's (oidc/grants.py): they are never ignored.
    scopes = outcome.scopes
    if scopes is not None:
        # A rule may narrow or widen the scopes, but only to scopes that exist: OIDC's and the API's.
        api = await services.tenant.resource_server(result.audience) if result.audience else None
        registered = set(OIDC_SCOPES) | (api.scope_values if api and not api.is_system else set())
        dropped = [s for s in scopes if s not in registered]
        if dropped:
            outcome.warnings.append(f"scopes not registered on the API were not granted: {' '.join(dropped)}")
            scopes = [s for s in scopes if s in registered]
    saml = None
    if saml_login:
        # What the SAML response is built from: the final user (ad-hoc attributes included, for
        # mappings) and saml_configuration. A signing key a rule set is sealed, since a paused
        # login stores this.
        configuration = run.context.get("saml_configuration")
        configuration = dict(configuration) if isinstance(configuration, dict) else configuration
        if isinstance(configuration, dict) and isinstance(configuration.get("key"), str):
            configuration["key"] = services.sealer.seal(configuration["key"], purpose=SAML_RULE_KEY_PURPOSE)
        saml = {"user": run.user, "configuration": configuration}
    return replace(
        result,
        access_scopes=scopes,
        id_token_claims=outcome.id_token_claims,
        access_token_claims=outcome.access_token_claims,
        jti=outcome.jti,
        profile=outcome.profile,
        saml=saml,
    )


async def continue_as_primary_user(
    services: Services,
    run: RuleRun,
    outcome: LoginResult | LoginDenial,
    *,
    user: User,
    requested: list[str],
) -> tuple[LoginResult | LoginDenial, User]:
    """Auth0's `context.primary_user`: a rule that linked the logging-in user to another
    account names that account, and the login continues as it. Returns the outcome and the
    user the login is now for.

    Only towards the primary the logging-in user is linked to, read now (so a link made
    during the login counts): a rule must not be able to log anyone in as an arbitrary user
    id. Anything else fails the login closed, with a warning on the execution record. The
    scopes and permissions are those of the new user; the profile claims come from its stored
    profile (the rules' changes were made to the other user's).
    """
    wanted = run.outcome.primary_user if run.outcome is not None else None
    if isinstance(outcome, LoginDenial) or wanted is None or wanted == user.user_id:
        return outcome, user
    assert run.outcome is not None
    target = None
    if isinstance(wanted, str):
        async with services.database.reader() as session:
            current = await user_store.get_user(session, user_id=user.user_id)
            target = await user_store.get_user(session, user_id=wanted)
        if current is None or target is None or target.linked_to is not None or current.linked_to != target.user_id:
            target = None
    if target is None:
        run.outcome.warnings.append(
            f"context.primary_user {wanted!r} was refused: it must be the id of the user that {user.user_id} is linked to"
        )
        return LoginDenial("access_denied", GENERIC_DENIAL), user
    if target.blocked:
        return LoginDenial("unauthorized", "user is blocked"), user
    api = await services.tenant.resource_server(outcome.audience) if outcome.audience else None
    granted = await grant_for_user(services, user_id=target.user_id, requested=requested, api=api)
    saml = {**outcome.saml, "user": rule_user(target)} if outcome.saml is not None else None
    switched = replace(
        outcome, user_id=target.user_id, scopes=granted.scopes, permissions=granted.permissions, profile=None, saml=saml,
    )
    return switched, target
