"""Deploying rules: plan, apply, roll back, report drift (docs/deploy.md). The CLI
(deploy/cli.py) and the webhooks call these; each apply and rollback is ONE transaction:

    lock            one deploy at a time (PostgreSQL advisory lock; SQLite has one writer)
    plan            the bundle against what is stored (plan.py); any error: nothing changes
    write rules     1. delete the removed rules (and the replaced: stage or language changed)
                    2. move the re-ordered rules to temporary negative orders (never a real order)
                    3. update the kept rules: script, final order, enabled
                    4. create the new rules
                    so the unique (stage, order) constraint never trips midway; every write goes
                    through bastion.rules.admin, the Management API's own checks
    write config    set the keys whose value comes from the environment, remove the keys the
                    last deployment named and this bundle no longer does
    record          the deployment (the rules exactly as left, the configuration keys it names,
                    a keyed digest of every configuration value now stored: values.py; the
                    plan's summary) and a log event
    then            the tenant cache is invalidated
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.deploy.bundle import Bundle, load_bundle
from bastion.deploy.changes import RuleChanges, RuleState
from bastion.deploy.drift import Drift, compute_drift
from bastion.deploy.errors import BundleError, DeployError, Superseded
from bastion.deploy.git import display_url
from bastion.deploy.plan import ConfigState, Plan, build_plan, build_rollback_plan
from bastion.deploy.values import ValueDigests
from bastion.errors import ManagementError
from bastion.events import EventType, record_event
from bastion.rules import admin
from bastion.security.handles import new_id
from bastion.security.sealing import Sealer, SealingError
from bastion.services import Services
from bastion.storage import deployments as deployment_store
from bastion.storage import rules as rule_store
from bastion.storage.records import Deployment, Rule
from bastion.tenant.cache import RULE_CONFIG_PURPOSE

__all__ = [
    "load_bundle",
    "plan",
    "apply",
    "plan_rollback",
    "rollback",
    "drift",
    "history",
    "manual_rules",
    "add_manual_rule",
    "remove_manual_rule",
]


# -- reading what is stored ----------------------------------------------------------


async def _all_rules(session: AsyncSession) -> list[Rule]:
    return await rule_store.all_rules(session)


async def _stored_config(session: AsyncSession, sealer: Sealer) -> dict[str, str | None]:
    """Key -> value (None when it cannot be unsealed: it then counts as set, with a value unknown)."""
    values: dict[str, str | None] = {}
    for key, sealed in (await rule_store.rule_config_values(session)).items():
        try:
            values[key] = sealer.open(sealed, purpose=RULE_CONFIG_PURPOSE).decode()
        except SealingError:
            values[key] = None
    return values


async def _value_digests(session: AsyncSession, services: Services) -> dict[str, str | None]:
    """Key -> the keyed digest of its value (None when the value cannot be unsealed)."""
    digests = ValueDigests(services.settings.secret_key or "")
    return {key: None if value is None else digests.of(key, value)
            for key, value in (await _stored_config(session, services.sealer)).items()}


async def _latest(session: AsyncSession) -> Deployment | None:
    found = await deployment_store.list_deployments(session, limit=1)
    return found[0] if found else None


async def _plan_in(
    session: AsyncSession, services: Services, bundle: Bundle, *, source: str | None, env_prefix: str,
    environment: Mapping[str, str] | None,
) -> Plan:
    described = f"{display_url(source) if source else 'bundle'} ({bundle.layout} layout, {len(bundle.rules)} rules)"
    return build_plan(
        bundle, description=described, current=await _all_rules(session),
        manual_names=await deployment_store.manual_rule_names(session),
        config=ConfigState(stored=await _stored_config(session, services.sealer),
                           environment=os.environ if environment is None else environment, env_prefix=env_prefix),
        previous=await _latest(session),
    )


# -- deploying -----------------------------------------------------------------------


async def plan(
    services: Services, bundle: Bundle, *, source: str | None = None, env_prefix: str = "",
    environment: Mapping[str, str] | None = None,
) -> Plan:
    """What `apply` would do now. Configuration values come from `environment` (default: the
    process's), each key under `env_prefix` + KEY."""
    async with services.database.reader() as session:
        return await _plan_in(session, services, bundle, source=source, env_prefix=env_prefix, environment=environment)


async def apply(
    services: Services, bundle: Bundle, *, actor: str, source: str, ref: str | None, commit: str | None,
    path: str | None, env_prefix: str = "", environment: Mapping[str, str] | None = None,
    skip_if_deployed: bool = False, still_current: Callable[[], Awaitable[str | None]] | None = None,
) -> Deployment | None:
    """Plan and apply in one transaction, and record the deployment. Nothing changes when it raises:
    BundleError when the plan has errors, DeployError when a write is refused.

    With `skip_if_deployed` (a webhook's redelivery), when the latest deployment is of this same
    commit and path and the plan changes nothing, nothing is recorded and None is returned: a
    provider delivering one push twice must not fill the history with empty deployments. It is
    decided under the deploy lock, so two deliveries at once record one deployment at most.

    `still_current` (a webhook's) is asked under the lock, before anything is planned, whether
    this commit is still the one to deploy; a reason back raises Superseded and changes nothing.
    So two pushes racing (the older one's fetch finishing last) cannot leave the older applied."""
    async with services.database.transaction() as session:
        await deployment_store.lock_deployments(session)
        if still_current is not None and (reason := await still_current()):
            raise Superseded(reason)
        planned = await _plan_in(session, services, bundle, source=source, env_prefix=env_prefix, environment=environment)
        if planned.errors:  # the bundle cannot be deployed here (a key without a value, an order a manual rule holds)
            raise BundleError(list(planned.errors))
        if skip_if_deployed and commit and not planned.has_changes:
            latest = await _latest(session)
            if latest is not None and latest.commit == commit and latest.path == path:
                return None
        await _write_rules(session, planned.changes, await _all_rules(session))
        for key in planned.config_set:
            await _admin_write(admin.set_rule_config(session, services.sealer, key=key, value=planned.config_values[key]), key)
        for key in planned.config_removed:
            await _admin_write(admin.delete_rule_config(session, key=key), key)
        deployment = await _record(
            session, services, planned, actor=actor, source=display_url(source), ref=ref, commit=commit, path=path,
            rollback_of=None,
        )
    services.tenant.invalidate()
    return deployment


# -- rolling back --------------------------------------------------------------------


async def _rollback_target(session: AsyncSession, deployment_id: str | None) -> tuple[Deployment, Deployment | None]:
    """The deployment to go back to (default: the one before the latest), and the latest."""
    recent = await deployment_store.list_deployments(session, limit=2)
    latest = recent[0] if recent else None
    if deployment_id is None:
        if len(recent) < 2:
            raise DeployError("nothing to roll back to: there is no deployment before the latest")
        return recent[1], latest
    target = await deployment_store.get_deployment(session, id=deployment_id)
    if target is None:
        raise DeployError(f"no deployment {deployment_id}")
    return target, latest


async def _rollback_plan_in(session: AsyncSession, deployment_id: str | None) -> tuple[Plan, Deployment]:
    target, latest = await _rollback_target(session, deployment_id)
    planned = build_rollback_plan(
        target, current=await _all_rules(session), manual_names=await deployment_store.manual_rule_names(session),
        stored_keys=await rule_store.list_rule_config_keys(session), latest=latest,
    )
    return planned, target


async def plan_rollback(services: Services, deployment_id: str | None = None) -> Plan:
    """What `rollback` would do now."""
    async with services.database.reader() as session:
        return (await _rollback_plan_in(session, deployment_id))[0]


async def rollback(services: Services, deployment_id: str | None, *, actor: str) -> Deployment:
    """Restore the rules of deployment `deployment_id` (default: the one before the latest)
    exactly, in one transaction, and record it as a new deployment (`rollback_of`)."""
    async with services.database.transaction() as session:
        await deployment_store.lock_deployments(session)
        planned, target = await _rollback_plan_in(session, deployment_id)
        if planned.errors:
            raise DeployError(list(planned.errors))
        await _write_rules(session, planned.changes, await _all_rules(session))
        deployment = await _record(
            session, services, planned, actor=actor, source=target.source, ref=target.ref, commit=target.commit, path=target.path,
            rollback_of=target.id,
        )
    services.tenant.invalidate()
    return deployment


# -- writing -------------------------------------------------------------------------


async def _admin_write(write, what: str):
    """A write through bastion.rules.admin; its refusal (a ManagementError) becomes a DeployError
    naming the rule or key, which rolls the whole transaction back."""
    try:
        return await write
    except ManagementError as error:
        raise DeployError(f"{what}: {error.message}") from None


async def _write_rules(session: AsyncSession, changes: RuleChanges, current: list[Rule]) -> None:
    ids = {rule.name: rule.id for rule in current}
    replaced = [update for update in changes.updated if update.replaced]
    kept = [update for update in changes.updated if not update.replaced]
    for rule in [*changes.removed, *(update.before for update in replaced)]:
        await _admin_write(admin.delete_rule(session, ids[rule.name]), rule.name)
    # Temporary orders are negative, which no real rule can have: nothing can collide with them.
    for position, update in enumerate(u for u in kept if u.order_changed):
        await rule_store.update_rule(session, id=ids[update.name], changes={"order": -1 - position})
    for update in kept:
        after = update.after
        await _admin_write(
            admin.update_rule(session, ids[update.name], {"script": after.script, "order": after.order, "enabled": after.enabled}),
            update.name,
        )
    for rule in [*changes.added, *(update.after for update in replaced)]:
        await _admin_write(
            admin.create_rule(session, name=rule.name, script=rule.script, order=rule.order, enabled=rule.enabled,
                              stage=rule.stage, language=rule.language),
            rule.name,
        )


async def _record(
    session: AsyncSession, services: Services, planned: Plan, *, actor: str, source: str, ref: str | None,
    commit: str | None, path: str | None, rollback_of: str | None,
) -> Deployment:
    """The deployment, with the managed rules read back as they now are, the digests of every
    configuration value now stored (named by the deployment or set by hand: drift reports a
    change to either), and its log event."""
    manual_names = await deployment_store.manual_rule_names(session)
    applied = [RuleState.of(rule) for rule in await _all_rules(session) if rule.name not in manual_names]
    digests = await _value_digests(session, services)
    deployment = await deployment_store.insert_deployment(
        session, id=new_id("dep_"), source=source, ref=ref, commit=commit, path=path,
        content_hash=planned.content_hash, actor=actor[:255], rollback_of=rollback_of, summary=planned.summary(),
        snapshot={"rules": [rule.to_json() for rule in applied], "config_keys": list(planned.config_keys),
                  "config_digests": dict(sorted(digests.items()))},
    )
    details = {"deployment_id": deployment.id, "source": source, "commit": commit, "actor": deployment.actor}
    if rollback_of:
        details["rollback_of"] = rollback_of
    await record_event(session, EventType.SUCCESS_API_OPERATION, description="Deploy rules", details=details)
    return deployment


# -- reading -------------------------------------------------------------------------


async def drift(services: Services) -> Drift:
    """How the rules differ from what the last deployment left."""
    async with services.database.reader() as session:
        return compute_drift(
            await _latest(session), current=await _all_rules(session),
            manual_names=await deployment_store.manual_rule_names(session),
            stored_digests=await _value_digests(session, services),
        )


async def history(services: Services, *, limit: int = 20) -> list[Deployment]:
    """Deployments, newest first."""
    async with services.database.reader() as session:
        return await deployment_store.list_deployments(session, limit=limit)


# -- manual rules --------------------------------------------------------------------


async def manual_rules(services: Services) -> list[str]:
    async with services.database.reader() as session:
        return sorted(await deployment_store.manual_rule_names(session))


async def add_manual_rule(services: Services, name: str) -> bool:
    """Mark `name` manual (the rule need not exist yet); False when it already was."""
    try:
        admin.check_rule_name(name)
    except ManagementError:
        raise DeployError(f"invalid rule name {name!r}") from None
    async with services.database.transaction() as session:
        return await deployment_store.add_manual_rule(session, name=name)


async def remove_manual_rule(services: Services, name: str) -> bool:
    """False when `name` was not marked manual."""
    async with services.database.transaction() as session:
        return await deployment_store.remove_manual_rule(session, name=name)
