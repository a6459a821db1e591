"""Drift: how the rules differ now from what the last deployment left (changes made through the
Management API or the CLI since), and its printed form. Manual rules are never drift.

Configuration values are compared by their keyed digests (values.py): the deployment recorded
one per key stored then, so a value changed, a key added or a key removed since shows, and
no value is ever read back from a deployment. Deployments recorded before digests existed
only tell the keys they named that are no longer set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bastion.deploy.changes import RuleChanges, RuleState, compare_rules
from bastion.storage.records import Deployment, Rule

__all__ = ["Drift", "compute_drift", "render_drift"]


@dataclass(frozen=True)
class Drift:
    deployment: Deployment | None  # the last deployment; None: nothing was ever deployed
    changes: RuleChanges  # the deployment's rules -> the rules now
    missing_config_keys: tuple[str, ...] = ()  # set when the deployment was recorded (or named by it), no longer set
    changed_config_keys: tuple[str, ...] = ()  # set then and now, to another value
    added_config_keys: tuple[str, ...] = ()  # set since

    @property
    def drifted(self) -> bool:
        return not self.changes.empty or bool(self.missing_config_keys or self.changed_config_keys or self.added_config_keys)


def compute_drift(
    deployment: Deployment | None, *, current: Iterable[Rule], manual_names: set[str],
    stored_digests: Mapping[str, str | None],
) -> Drift:
    """`stored_digests`: every key set now -> the keyed digest of its value (None: unreadable)."""
    if deployment is None:
        return Drift(deployment=None, changes=compare_rules([], []))
    deployed = [RuleState.from_json(rule) for rule in deployment.snapshot.get("rules", []) if rule["name"] not in manual_names]
    now = [RuleState.of(rule) for rule in current if rule.name not in manual_names]
    recorded = deployment.snapshot.get("config_digests")
    named = set(deployment.snapshot.get("config_keys", []))
    if recorded is None:  # recorded before digests: only the named keys are known
        missing = sorted(key for key in named if key not in stored_digests)
        return Drift(deployment=deployment, changes=compare_rules(deployed, now), missing_config_keys=tuple(missing))
    missing = sorted(key for key in named | set(recorded) if key not in stored_digests)
    changed = sorted(key for key in recorded.keys() & stored_digests.keys() if recorded[key] != stored_digests[key])
    added = sorted(key for key in stored_digests.keys() - recorded.keys())
    return Drift(deployment=deployment, changes=compare_rules(deployed, now), missing_config_keys=tuple(missing),
                 changed_config_keys=tuple(changed), added_config_keys=tuple(added))


DRIFT_VERBS = {"replace": "replaced", "change": "changed", "reorder": "reordered", "enable": "enabled", "disable": "disabled"}


def render_drift(drift: Drift) -> str:
    if drift.deployment is None:
        return "nothing deployed yet: no drift to report"
    deployment = drift.deployment
    origin = deployment.source + (f" @ {deployment.commit[:12]}" if deployment.commit else "")
    lines = [f"last deployment {deployment.id} ({deployment.created_at:%Y-%m-%d %H:%M:%S} UTC, {origin}, by {deployment.actor})"]
    if not drift.drifted:
        return "\n".join(lines + ["no drift"])
    lines.append("drift since then (changed through the Management API or the CLI):")
    for rule in drift.changes.added:
        lines.append(f"  + created    {rule.name}  ({rule.stage}, order {rule.order}, {'enabled' if rule.enabled else 'disabled'})")
    for update in drift.changes.updated:
        lines += update.describe(DRIFT_VERBS, width=11, diff_labels=("deployed", "now"))
    for rule in drift.changes.removed:
        lines.append(f"  - deleted    {rule.name}")
    for key in drift.added_config_keys:
        lines.append(f"  + config     {key}  (key added since)")
    for key in drift.changed_config_keys:
        lines.append(f"  ~ config     {key}  (value changed)")
    for key in drift.missing_config_keys:
        lines.append(f"  - config     {key}  (no longer set)")
    return "\n".join(lines)
