"""Comparing two sets of rules by name: what a deploy would change (current -> bundle), what a
rollback restores (current -> snapshot), and what drifted (last deployment -> current)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from bastion.storage.records import Rule

__all__ = ["RuleState", "RuleUpdate", "RuleChanges", "compare_rules"]


@dataclass(frozen=True)
class RuleState:
    """A rule as a deployment sets it: everything but its id and dates."""

    name: str
    script: str
    order: int
    enabled: bool
    stage: str
    language: str

    @classmethod
    def of(cls, rule: Rule) -> RuleState:
        return cls(**{field.name: getattr(rule, field.name) for field in fields(cls)})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleState:
        return cls(**{field.name: data[field.name] for field in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RuleUpdate:
    """One rule in both sets, different in some way."""

    before: RuleState
    after: RuleState

    @property
    def name(self) -> str:
        return self.after.name

    @property
    def script_changed(self) -> bool:
        return self.before.script != self.after.script

    @property
    def order_changed(self) -> bool:
        return self.before.order != self.after.order

    @property
    def enabled_changed(self) -> bool:
        return self.before.enabled != self.after.enabled

    @property
    def replaced(self) -> bool:
        """A rule's stage and language never change in place: it is deleted and created again."""
        return self.before.stage != self.after.stage or self.before.language != self.after.language

    def describe(self, verbs: Mapping[str, str], *, width: int, diff_labels: tuple[str, str] | None) -> list[str]:
        """This update as printed lines: `verbs` names each kind of change (replace, change,
        reorder, enable, disable) in the printout's own tense, padded to `width`; `diff_labels`,
        when given, adds the script's unified diff."""
        before, after = self.before, self.after

        def line(mark: str, verb: str, detail: str = "") -> str:
            return f"  {mark} {verbs[verb].ljust(width)}{self.name}{detail}"

        lines = []
        if self.replaced:
            lines.append(line("~", "replace", f"  (stage/language {before.stage}/{before.language} -> {after.stage}/{after.language})"))
        if self.script_changed:
            lines.append(line("~", "change", "  (script)"))
            if diff_labels:
                lines += ["      " + diff_line for diff_line in self.script_diff(*diff_labels).splitlines()]
        if self.order_changed:
            lines.append(line("^", "reorder", f"  ({before.order} -> {after.order})"))
        if self.enabled_changed:
            lines.append(line("~", "enable" if after.enabled else "disable"))
        return lines

    def script_diff(self, before_label: str, after_label: str) -> str:
        lines = difflib.unified_diff(
            self.before.script.splitlines(keepends=True), self.after.script.splitlines(keepends=True),
            fromfile=f"{self.name} ({before_label})", tofile=f"{self.name} ({after_label})",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass(frozen=True)
class RuleChanges:
    added: tuple[RuleState, ...]
    updated: tuple[RuleUpdate, ...]
    removed: tuple[RuleState, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)

    def summary(self) -> dict[str, list[str]]:
        """Rule names per kind of change (what a deployment records and drift reports)."""
        return {
            "added": [r.name for r in self.added],
            "changed": [u.name for u in self.updated if u.script_changed or u.replaced],
            "reordered": [u.name for u in self.updated if u.order_changed],
            "enabled": [u.name for u in self.updated if u.enabled_changed and u.after.enabled],
            "disabled": [u.name for u in self.updated if u.enabled_changed and not u.after.enabled],
            "removed": [r.name for r in self.removed],
        }


def compare_rules(before: Iterable[RuleState], after: Iterable[RuleState]) -> RuleChanges:
    """What turns `before` into `after`, matching rules by name; each part in name order."""
    old = {rule.name: rule for rule in before}
    new = {rule.name: rule for rule in after}
    return RuleChanges(
        added=tuple(new[name] for name in sorted(new.keys() - old.keys())),
        updated=tuple(RuleUpdate(old[name], new[name]) for name in sorted(old.keys() & new.keys()) if old[name] != new[name]),
        removed=tuple(old[name] for name in sorted(old.keys() - new.keys())),
    )
