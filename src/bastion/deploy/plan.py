"""The plan: what a deploy (or a rollback) will do, computed from the bundle and what is stored,
and its printed form. Pure: service.py reads the database and applies the plan.

    desired rules     every bundle rule but the manual ones, each with its final order and enabled
                      (orders missing from the bundle: after the others of its stage, in name order;
                      JavaScript always disabled)
    rule changes      current managed rules -> desired rules (added, changed, re-ordered, enabled,
                      disabled, removed; a stage or language change replaces the rule)
    configuration     per key the bundle names: set (from the environment), kept (already set),
                      or an error (no value anywhere, or a key or variable that would read one of
                      the server's own settings: values.py); keys the last deployment named and
                      this bundle does not: removed
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.deploy.bundle import Bundle, BundleRule
from bastion.deploy.changes import RuleChanges, RuleState, compare_rules
from bastion.deploy.values import environment_problem
from bastion.rules.admin import MAX_ORDER
from bastion.storage.records import Deployment, Rule

__all__ = ["Plan", "ConfigState", "build_plan", "build_rollback_plan", "render_plan", "JAVASCRIPT_WARNING"]

JAVASCRIPT_WARNING = "Bastion does not run JavaScript yet: stored disabled"


@dataclass(frozen=True)
class Plan:
    """What applying will do. `config_values` (the values to write) is never printed nor recorded."""

    description: str
    content_hash: str
    rules: tuple[RuleState, ...]  # the managed rules once applied
    changes: RuleChanges
    config_keys: tuple[str, ...]  # the keys the deployment manages (recorded)
    config_set: tuple[str, ...] = ()
    config_kept: tuple[str, ...] = ()
    config_removed: tuple[str, ...] = ()
    skipped_manual: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    config_values: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def has_changes(self) -> bool:
        return not self.changes.empty or bool(self.config_set or self.config_removed)

    def summary(self) -> dict[str, Any]:
        """What a deployment records of its plan (names only, never a value)."""
        return {
            **self.changes.summary(),
            "config_set": list(self.config_set),
            "config_removed": list(self.config_removed),
            "skipped_manual": list(self.skipped_manual),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class ConfigState:
    """The rules configuration as a plan sees it: the values now stored (unsealed) and the
    environment the values of a deploy come from."""

    stored: Mapping[str, str]
    environment: Mapping[str, str]
    env_prefix: str = ""


# -- deploying a bundle ------------------------------------------------------------


def build_plan(
    bundle: Bundle, *, description: str, current: Iterable[Rule], manual_names: set[str], config: ConfigState,
    previous: Deployment | None,
) -> Plan:
    current = list(current)
    warnings = list(bundle.warnings)
    errors: list[str] = []
    manual_rules = [rule for rule in current if rule.name in manual_names]
    deployable = [rule for rule in bundle.rules if rule.name not in manual_names]
    skipped = sorted(rule.name for rule in bundle.rules if rule.name in manual_names)
    for rule in bundle.rules:
        if rule.name in manual_names:
            warnings.append(f"{rule.file}: {rule.name!r} is a manual rule: skipped (`bastion deploy manual remove` to deploy it)")

    taken = {(rule.stage, rule.order): f"the manual rule {rule.name!r}" for rule in manual_rules}
    for rule in deployable:
        if rule.order is not None and (rule.stage, rule.order) in taken:
            errors.append(f"{rule.file}: order {rule.order} in stage {rule.stage} is held by {taken[rule.stage, rule.order]}")
    orders = _assign_orders(deployable, set(taken), errors)
    desired = tuple(
        RuleState(name=rule.name, script=rule.script, order=orders[rule.name], stage=rule.stage, language=rule.language,
                  enabled=rule.language == "python" and (rule.enabled is None or rule.enabled))
        for rule in deployable
    )
    changes = compare_rules((RuleState.of(rule) for rule in current if rule.name not in manual_names), desired)
    warnings += _replacement_warnings(changes)

    config_set, config_kept, values = [], [], {}
    for key in bundle.config_keys:
        refused = environment_problem(key, config.env_prefix)
        if refused:  # never look it up: the server's own settings must not reach api.configuration
            errors.append(f"rules-configs/{key}.json: {refused}")
            continue
        variable = config.env_prefix + key
        value = config.environment.get(variable)
        if value:
            if config.stored.get(key) == value:
                config_kept.append(key)
            else:
                config_set.append(key)
                values[key] = value
        elif key in config.stored:
            config_kept.append(key)
        else:
            errors.append(f"rules-configs/{key}.json: no value for {key}: set the environment variable {variable} "
                          "(values are never read from the repository)")
    previous_keys = set(previous.snapshot.get("config_keys", [])) if previous else set()
    config_removed = sorted(key for key in previous_keys - set(bundle.config_keys) if key in config.stored)

    return Plan(
        description=description, content_hash=bundle.content_hash, rules=desired, changes=changes,
        config_keys=tuple(bundle.config_keys), config_set=tuple(config_set), config_kept=tuple(config_kept),
        config_removed=tuple(config_removed), skipped_manual=tuple(skipped), warnings=tuple(warnings),
        errors=tuple(errors), config_values=values,
    )


def _assign_orders(rules: list[BundleRule], taken: set[tuple[str, int]], errors: list[str]) -> dict[str, int]:
    """The bundle's orders, and for rules without one: after every other rule of the stage
    (the bundle's and the manual rules'), in name order, so the result is deterministic."""
    orders = {rule.name: rule.order for rule in rules if rule.order is not None}
    taken = taken | {(rule.stage, rule.order) for rule in rules if rule.order is not None}
    for stage in sorted({rule.stage for rule in rules}):
        next_order = max((order for (s, order) in taken if s == stage), default=0) + 1
        for rule in sorted((r for r in rules if r.stage == stage and r.order is None), key=lambda r: r.name):
            if next_order > MAX_ORDER:
                errors.append(f"{rule.file}: no order left after {MAX_ORDER} in stage {stage}: give the rules orders")
            orders[rule.name] = next_order
            next_order += 1
    return orders


def _replacement_warnings(changes: RuleChanges) -> list[str]:
    return [
        f"{update.name}: its stage or language changes ({update.before.stage}/{update.before.language} -> "
        f"{update.after.stage}/{update.after.language}): the rule is deleted and created again (a new id)"
        for update in changes.updated if update.replaced
    ]


# -- rolling back ------------------------------------------------------------------


def build_rollback_plan(
    target: Deployment, *, current: Iterable[Rule], manual_names: set[str], stored_keys: Iterable[str],
    latest: Deployment | None,
) -> Plan:
    """Back to the rules `target` left, exactly; manual rules stay as they are. Values are never
    stored in a deployment, so configuration is not restored: keys `target` named and no longer
    set are warnings, and no key is removed (the deployments after `target` keep theirs managed)."""
    current = list(current)
    stored_keys = set(stored_keys)
    warnings, errors = [], []
    snapshot = [RuleState.from_json(rule) for rule in target.snapshot.get("rules", [])]
    desired = tuple(rule for rule in snapshot if rule.name not in manual_names)
    skipped = sorted(rule.name for rule in snapshot if rule.name in manual_names)
    for name in skipped:
        warnings.append(f"{name!r} is a manual rule now: left as it is")
    taken = {(rule.stage, rule.order): rule.name for rule in current if rule.name in manual_names}
    for rule in desired:
        if (rule.stage, rule.order) in taken:
            errors.append(f"{rule.name}: order {rule.order} in stage {rule.stage} is held by the manual rule {taken[rule.stage, rule.order]!r}")
    changes = compare_rules((RuleState.of(rule) for rule in current if rule.name not in manual_names), desired)
    warnings += _replacement_warnings(changes)
    target_keys = list(target.snapshot.get("config_keys", []))
    for key in target_keys:
        if key not in stored_keys:
            warnings.append(f"rules config {key} is not set: set it again (deployments never store values)")
    latest_keys = set(latest.snapshot.get("config_keys", [])) if latest else set()
    return Plan(
        description=f"rollback to deployment {target.id}", content_hash=target.content_hash, rules=desired,
        changes=changes, config_keys=tuple(sorted(set(target_keys) | (latest_keys & stored_keys))),
        config_kept=tuple(sorted(k for k in target_keys if k in stored_keys)), skipped_manual=tuple(skipped),
        warnings=tuple(warnings), errors=tuple(errors),
    )


# -- printing ----------------------------------------------------------------------


PLAN_VERBS = {"replace": "replace", "change": "change", "reorder": "reorder", "enable": "enable", "disable": "disable"}


def render_plan(plan: Plan, *, diffs: bool = True) -> str:
    """The plan for a person: one line per change, the scripts' unified diffs, then the
    configuration keys (never their values), warnings and errors."""
    lines = [f"Plan: {plan.description} (content sha256 {plan.content_hash[:12]})"]
    rule_lines = []
    for rule in plan.changes.added:
        state = "enabled" if rule.enabled else "disabled"
        rule_lines.append(f"  + add      {rule.name}  ({rule.stage}, order {rule.order}, {state}, {rule.language})")
    for update in plan.changes.updated:
        rule_lines += update.describe(PLAN_VERBS, width=9, diff_labels=("current", "new") if diffs else None)
    for rule in plan.changes.removed:
        rule_lines.append(f"  - remove   {rule.name}  ({rule.stage}, order {rule.order})")
    for name in plan.skipped_manual:
        rule_lines.append(f"  = skip     {name}  (manual)")
    lines += ["Rules:"] + (rule_lines or ["  no change"])
    config_lines = [f"  set      {key}" for key in plan.config_set]
    config_lines += [f"  keep     {key}" for key in plan.config_kept]
    config_lines += [f"  - remove {key}" for key in plan.config_removed]
    if config_lines:
        lines += ["Rules configuration (values never shown):"] + config_lines
    if plan.warnings:
        lines += ["Warnings:"] + [f"  ! {warning}" for warning in plan.warnings]
    if plan.errors:
        lines += ["Errors (nothing will be changed):"] + [f"  x {error}" for error in plan.errors]
    elif not plan.has_changes:
        lines.append("No changes.")
    return "\n".join(lines)
