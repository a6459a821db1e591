"""Drift: how the rules differ now from what the last deployment left (changes made through the
Management API or the CLI since), and its printed form. Manual rules are never drift."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bastion.deploy.changes import RuleChanges, RuleState, compare_rules
from bastion.storage.records import Deployment, Rule

__all__ = ["Drift", "compute_drift", "render_drift"]


@dataclass(frozen=True)
class Drift:
    deployment: Deployment | None  # the last deployment; None: nothing was ever deployed
    changes: RuleChanges  # the deployment's rules -> the rules now
    missing_config_keys: tuple[str, ...] = ()  # named by the deployment, no longer set

    @property
    def drifted(self) -> bool:
        return not self.changes.empty or bool(self.missing_config_keys)


def compute_drift(
    deployment: Deployment | None, *, current: Iterable[Rule], manual_names: set[str], stored_keys: Iterable[str]
) -> Drift:
    if deployment is None:
        return Drift(deployment=None, changes=compare_rules([], []))
    deployed = [RuleState.from_json(rule) for rule in deployment.snapshot.get("rules", []) if rule["name"] not in manual_names]
    now = [RuleState.of(rule) for rule in current if rule.name not in manual_names]
    stored_keys = set(stored_keys)
    missing = tuple(sorted(key for key in deployment.snapshot.get("config_keys", []) if key not in stored_keys))
    return Drift(deployment=deployment, changes=compare_rules(deployed, now), missing_config_keys=missing)


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
    for key in drift.missing_config_keys:
        lines.append(f"  - config     {key}  (no longer set)")
    return "\n".join(lines)
