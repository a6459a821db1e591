"""Which rules a test runs, and in which order: a file, a script, a rules folder or a bundle.

A **bundle** (a folder holding `rules/`, what `bastion deploy` reads, docs/deploy.md) is
read by the deploy's own reader (`bastion.deploy.bundle.load_bundle`), in any of its
layouts. A **rules folder** is read the same way, leaving out the tests that may sit beside
the rules: `NAME.py` holds a rule's script (named `NAME` with '_' read as '-', as a deploy
and `bastion rules add` name it), and an optional `NAME.json` beside it holds its settings,
`{"name", "order", "enabled", "stage"}` (or, auth0-deploy-cli's layout, names its script:
`"script": "./NAME.js"`). Test modules (`test_*.py`, `*_test.py`), `conftest.py` and files
starting with `_` are not rules.

The pipeline is what a deploy of the folder runs on a login: enabled `login_success` Python
rules only, those with an `order` first (ascending), then the others by name (a deploy puts
rules without an order after the others, in name order).

Every script passes the check Bastion applies when a rule is saved
(rules/validation.check_script); a refused script raises `RuleScriptRefused`, naming the
file and the line, as saving it would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bastion.rules.validation import RuleScriptError, check_script
from bastion.storage.records import Rule

__all__ = ["RuleSource", "RuleScriptRefused", "RulesFolderError", "rule_from_file", "rule_from_script", "rules_from_folder"]


class RuleScriptRefused(Exception):
    """Bastion would refuse to save this script (the save-time check)."""


class RulesFolderError(Exception):
    """A rules folder that cannot be read as a deploy would read it."""


@dataclass(frozen=True)
class RuleSource:
    name: str
    script: str
    path: Path | None = None
    order: int | None = None
    enabled: bool = True
    stage: str = "login_success"
    language: str = "python"

    def check(self) -> None:
        """Raise RuleScriptRefused when Bastion would refuse to save the script."""
        try:
            check_script(self.script)
        except RuleScriptError as error:
            where = str(self.path) if self.path else f"rule {self.name!r}"
            line = f", line {error.line}" if error.line else ""
            raise RuleScriptRefused(f"{where}{line}: {error.message} (Bastion refuses to save this script)") from None

    def record(self, position: int) -> Rule:
        """The stored rule the engine would be given."""
        now = datetime.now(timezone.utc)
        return Rule(
            id=f"rul_test{position:03d}_{_slug(self.name)}", name=self.name, script=self.script,
            order=self.order if self.order is not None else position, enabled=self.enabled, stage=self.stage,
            language=self.language, created_at=now, updated_at=now,
        )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40]


def rule_from_script(script: str, *, name: str = "rule") -> RuleSource:
    return RuleSource(name=name, script=script)


def _settings_of(script_path: Path) -> dict[str, Any]:
    settings_path = script_path.with_suffix(".json")
    if not settings_path.is_file():
        return {}
    try:
        settings = json.loads(settings_path.read_text())
    except (OSError, ValueError) as error:
        raise RulesFolderError(f"{settings_path}: not a JSON object ({error})") from None
    if not isinstance(settings, dict):
        raise RulesFolderError(f"{settings_path}: must hold a JSON object")
    order = settings.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise RulesFolderError(f"{settings_path}: order must be a whole number")
    return settings


def rule_from_file(path: str | Path, *, settings: dict[str, Any] | None = None) -> RuleSource:
    path = Path(path)
    try:
        script = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RulesFolderError(f"cannot read the rule {path}: {error}") from None
    settings = _settings_of(path) if settings is None else settings
    default_name = path.stem.replace("_", "-") if path.suffix == ".py" else path.stem
    return RuleSource(
        name=str(settings.get("name") or default_name), script=script, path=path, order=settings.get("order"),
        enabled=settings.get("enabled", True) is not False, stage=str(settings.get("stage") or "login_success"),
        language=str(settings.get("language") or "python"),
    )


def _is_rule_file(path: Path) -> bool:
    name = path.name
    return (
        path.suffix == ".py" and path.is_file() and not name.startswith(("_", "test_"))
        and not name.endswith("_test.py") and name != "conftest.py"
    )


def _pipeline(sources: list[RuleSource]) -> list[RuleSource]:
    pipeline = [s for s in sources if s.enabled and s.stage == "login_success" and s.language == "python"]
    pipeline.sort(key=lambda s: (s.order is None, s.order if s.order is not None else 0, s.name))
    return pipeline


def _bundle_rules(folder: Path) -> list[RuleSource]:
    from bastion.deploy.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(folder)
    except BundleError as error:
        raise RulesFolderError(f"{folder}: {error}") from None
    return [
        RuleSource(
            name=rule.name, script=rule.script, path=folder / rule.file, order=rule.order, enabled=rule.enabled is not False,
            stage=rule.stage, language=rule.language,
        )
        for rule in bundle.rules
    ]


def rules_from_folder(folder: str | Path) -> list[RuleSource]:
    """The pipeline of a bundle or a rules folder, in the order a login runs it (see above)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RulesFolderError(f"{folder} is not a folder")
    if (folder / "rules").is_dir():
        return _pipeline(_bundle_rules(folder))
    sources: dict[Path, RuleSource] = {}
    for path in sorted(folder.glob("*.py")):
        if _is_rule_file(path):
            sources[path.resolve()] = rule_from_file(path)
    for settings_path in sorted(folder.glob("*.json")):  # deploy-cli's layout: the JSON names its script
        if settings_path.with_suffix(".py").is_file():
            continue  # NAME.py's settings, read with it
        settings = _settings_of(settings_path)
        script = settings.get("script")
        if isinstance(script, str) and script:
            script_path = (folder / script).resolve()
            if script_path not in sources:
                sources[script_path] = rule_from_file(script_path, settings=settings)
    return _pipeline(list(sources.values()))
