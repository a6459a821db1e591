"""Reading a bundle: the rules and rules-configuration keys a folder holds, in one of the three
layouts below (detected, never configured). docs/deploy.md shows each with an example.

    bastion                  rules/NAME.py (+ rules/NAME.json {"order", "enabled", "stage"})
                             the rule's name is the file's stem, '_' read as '-'
    auth0-deploy-extension   rules/NAME.js (+ rules/NAME.json {"enabled", "order", "stage"})
                             (Auth0's GitHub/GitLab/Bitbucket/VSTS deploy extensions)
    auth0-deploy-cli         rules/NAME.json {"name", "script": "./NAME.js", "order", "enabled", "stage"}
                             next to its script (a0deploy's directory format)

All layouts name configuration keys with rules-configs/KEY.json (auth0-deploy-cli: {"key"}).
Values found there are ignored: they are never stored (docs/deploy.md, "Configuration values").

`load_bundle` checks everything it can without the database (names, scripts, stages, orders
unique per stage, JSON) and raises one BundleError listing every problem, each naming its file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bastion.deploy.errors import BundleError
from bastion.errors import ManagementError
from bastion.rules.admin import MAX_ORDER, STAGES, check_config_key, check_rule_name
from bastion.rules.validation import RuleScriptError, check_script

__all__ = ["Bundle", "BundleRule", "BundleError", "load_bundle", "bundle_folder", "LAYOUTS"]

LAYOUTS = ("bastion", "auth0-deploy-extension", "auth0-deploy-cli")
RULES_FOLDER = "rules"
CONFIGS_FOLDER = "rules-configs"
SCRIPT_LANGUAGES = {".py": "python", ".js": "javascript"}
METADATA_FIELDS = {"name", "order", "enabled", "stage"}
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BundleRule:
    """A rule as the bundle gives it; `order` and `enabled` stay None when the bundle says nothing."""

    name: str
    script: str
    language: str  # python | javascript
    stage: str
    order: int | None
    enabled: bool | None
    file: str  # what defines it, relative to the bundle's folder: its .json when it has one, else its script


@dataclass(frozen=True)
class Bundle:
    layout: str
    rules: tuple[BundleRule, ...]
    config_keys: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        """SHA-256 over a canonical JSON of what the bundle deploys (not where its files were)."""
        canonical = {
            "rules": sorted(({k: v for k, v in asdict(rule).items() if k != "file"} for rule in self.rules), key=lambda r: r["name"]),
            "config_keys": sorted(self.config_keys),
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


class _Reader:
    """Collects problems and warnings while reading one folder, so every problem is reported at once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.root = folder.resolve()
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def name_of(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def read_text(self, path: Path) -> str | None:
        shown = self.name_of(path)
        if path.is_symlink():
            self.problems.append(f"{shown}: symbolic links are not followed in a bundle")
            return None
        if not path.resolve().is_relative_to(self.root):
            self.problems.append(f"{shown}: outside the bundle's folder")
            return None
        if not path.is_file():
            self.problems.append(f"{shown}: no such file")
            return None
        if path.stat().st_size > MAX_FILE_BYTES:
            self.problems.append(f"{shown}: larger than {MAX_FILE_BYTES // 1024} KiB")
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self.problems.append(f"{shown}: cannot be read as UTF-8 text ({error})")
            return None

    def read_json_object(self, path: Path) -> dict[str, Any] | None:
        text = self.read_text(path)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError as error:
            self.problems.append(f"{self.name_of(path)}: malformed JSON ({error})")
            return None
        if not isinstance(data, dict):
            self.problems.append(f"{self.name_of(path)}: must hold a JSON object")
            return None
        return data

    def files_in(self, folder: Path) -> list[Path]:
        """The visible files of `folder`, in name order; anything else is mentioned once."""
        found = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.name == "__pycache__":
                continue
            if path.is_dir():
                self.warnings.append(f"{self.name_of(path)}/: sub-folders are not read")
            else:
                found.append(path)
        return found


def bundle_folder(root: Path, path: str | None) -> Path:
    """`root`, or its sub-folder `path` (a repository's --path), which must stay inside it."""
    if not path:
        return root
    folder = (root / path).resolve()
    if not folder.is_relative_to(root.resolve()):
        raise BundleError(f"--path {path!r} leads outside the source")
    if not folder.is_dir():
        raise BundleError(f"--path {path!r}: no such folder in the source")
    return folder


def load_bundle(folder: Path) -> Bundle:
    """The bundle in `folder`; raises BundleError listing every problem (each names its file)."""
    folder = Path(folder)
    rules_folder = folder / RULES_FOLDER
    if not rules_folder.is_dir():
        raise BundleError(f"{folder}: no {RULES_FOLDER}/ folder here (is the source or --path right?)")
    reader = _Reader(folder)
    files = reader.files_in(rules_folder)
    definitions = {path: reader.read_json_object(path) for path in files if path.suffix == ".json"}
    if any(isinstance(data, dict) and "script" in data for data in definitions.values()):
        layout, rules = "auth0-deploy-cli", _deploy_cli_rules(reader, files, definitions)
    else:
        has_python = any(path.suffix == ".py" for path in files)
        layout, rules = ("bastion" if has_python or not files else "auth0-deploy-extension"), _script_rules(reader, files, definitions)
    _check_unique(reader, rules)
    config_keys = _config_keys(reader, folder / CONFIGS_FOLDER)
    if reader.problems:
        raise BundleError(reader.problems)
    return Bundle(layout=layout, rules=tuple(sorted(rules, key=lambda r: r.name)), config_keys=tuple(config_keys),
                  warnings=tuple(reader.warnings))


def _script_rules(reader: _Reader, files: list[Path], definitions: dict[Path, dict | None]) -> list[BundleRule]:
    """Bastion's and the deploy extensions' layout: one script per rule, metadata in a same-named .json."""
    scripts: dict[str, list[Path]] = {}
    for path in files:
        if path.suffix in SCRIPT_LANGUAGES:
            scripts.setdefault(path.stem, []).append(path)
        elif path.suffix != ".json":
            reader.warnings.append(f"{reader.name_of(path)}: not a rule (.py, .js or .json): ignored")
    for path in definitions:
        if path.stem not in scripts:
            reader.problems.append(f"{reader.name_of(path)}: no {path.stem}.py or {path.stem}.js next to it")
    rules = []
    for stem, paths in scripts.items():
        if len(paths) > 1:
            reader.problems.append(f"{', '.join(reader.name_of(p) for p in paths)}: two scripts for one rule")
            continue
        path = paths[0]
        metadata_path = path.with_suffix(".json")
        metadata = definitions.get(metadata_path) or {}
        unknown = set(metadata) - METADATA_FIELDS
        if unknown:
            reader.warnings.append(f"{reader.name_of(metadata_path)}: unknown fields ignored: {', '.join(sorted(unknown))}")
        default_name = stem.replace("_", "-") if path.suffix == ".py" else stem
        rule = _rule(reader, path, metadata, default_name=default_name, shown=reader.name_of(metadata_path if metadata else path))
        if rule is not None:
            rules.append(rule)
    return rules


def _deploy_cli_rules(reader: _Reader, files: list[Path], definitions: dict[Path, dict | None]) -> list[BundleRule]:
    """a0deploy's directory format: each rules/*.json names its script, relative to rules/."""
    used: set[Path] = set()
    rules = []
    for path, definition in definitions.items():
        if definition is None:
            continue
        shown = reader.name_of(path)
        script = definition.get("script")
        if not isinstance(script, str) or not script:
            reader.problems.append(f"{shown}: no \"script\" (the path of the rule's script, e.g. \"./{path.stem}.js\")")
            continue
        script_path = path.parent / script
        if Path(script).suffix not in SCRIPT_LANGUAGES:
            reader.problems.append(f"{shown}: script {script!r} must be a .js or .py file")
            continue
        unknown = set(definition) - METADATA_FIELDS - {"script"}
        if unknown:
            reader.warnings.append(f"{shown}: unknown fields ignored: {', '.join(sorted(unknown))}")
        used.add(script_path.resolve())
        rule = _rule(reader, script_path, definition, default_name=path.stem, shown=shown)
        if rule is not None:
            rules.append(rule)
    for path in files:
        if path.suffix in SCRIPT_LANGUAGES and path.resolve() not in used:
            reader.warnings.append(f"{reader.name_of(path)}: not named by any rules/*.json: ignored")
    return rules


def _rule(reader: _Reader, script_path: Path, metadata: dict[str, Any], *, default_name: str, shown: str) -> BundleRule | None:
    """One rule, checked as the Management API would check it; None (and problems noted) when invalid."""
    problems_before = len(reader.problems)
    name = metadata.get("name", default_name)
    try:
        check_rule_name(name)
    except ManagementError:
        reader.problems.append(
            f"{shown}: invalid rule name {name!r}: at least 3 characters, only letters, digits, spaces and '-', "
            "neither starting nor ending with '-' or a space"
        )
    order = metadata.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= MAX_ORDER):
        reader.problems.append(f"{shown}: \"order\" must be an integer from 0 to {MAX_ORDER}, not {order!r}")
    enabled = metadata.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        reader.problems.append(f"{shown}: \"enabled\" must be true or false, not {enabled!r}")
    stage = metadata.get("stage", "login_success")
    if stage not in STAGES:
        reader.problems.append(f"{shown}: unknown stage {stage!r} (one of {', '.join(STAGES)})")
    script = reader.read_text(script_path)
    language = SCRIPT_LANGUAGES[script_path.suffix]
    if script is not None:
        _check_rule_script(reader, reader.name_of(script_path), script, language)
    if len(reader.problems) > problems_before:
        return None
    return BundleRule(name=name, script=script, language=language, stage=stage, order=order, enabled=enabled, file=shown)


def _check_rule_script(reader: _Reader, shown: str, script: str, language: str) -> None:
    if not script.strip():
        reader.problems.append(f"{shown}: the script is empty")
    elif "\x00" in script:
        reader.problems.append(f"{shown}: the script holds a NUL character")
    elif language == "python":
        try:
            check_script(script)
        except RuleScriptError as error:
            reader.problems.append(f"{shown}: {error}")
    else:
        reader.warnings.append(f"{shown}: Bastion does not run JavaScript yet: stored disabled")


def _check_unique(reader: _Reader, rules: list[BundleRule]) -> None:
    """Names unique in the bundle; orders unique per stage (as the rules table requires)."""
    by_name: dict[str, BundleRule] = {}
    by_order: dict[tuple[str, int], BundleRule] = {}
    for rule in sorted(rules, key=lambda r: r.file):
        if rule.name in by_name:
            reader.problems.append(f"{by_name[rule.name].file}, {rule.file}: two rules named {rule.name!r}")
        by_name.setdefault(rule.name, rule)
        if rule.order is not None:
            key = (rule.stage, rule.order)
            if key in by_order:
                reader.problems.append(
                    f"{by_order[key].file}, {rule.file}: two rules with order {rule.order} in stage {rule.stage}"
                )
            by_order.setdefault(key, rule)


def _config_keys(reader: _Reader, folder: Path) -> list[str]:
    """The keys rules-configs/KEY.json names ({"key"} may rename it); values there are ignored."""
    if not folder.is_dir():
        return []
    keys: dict[str, str] = {}
    for path in reader.files_in(folder):
        shown = reader.name_of(path)
        if path.suffix != ".json":
            reader.warnings.append(f"{shown}: not a rules configuration (KEY.json): ignored")
            continue
        data = reader.read_json_object(path)
        if data is None:
            continue
        key = data.get("key", path.stem)
        if not isinstance(key, str):
            reader.problems.append(f"{shown}: \"key\" must be a string")
            continue
        try:
            check_config_key(key)
        except ManagementError:
            reader.problems.append(f"{shown}: invalid key {key!r}: letters, digits, '_' and '-' only, at most 128 characters")
            continue
        if key in keys:
            reader.problems.append(f"{keys[key]}, {shown}: the key {key} is named twice")
            continue
        keys[key] = shown
        if "value" in data:
            reader.warnings.append(
                f"{shown}: the value given in the repository is ignored and never stored; "
                f"it comes from the environment variable {key} (after the prefix: --env-prefix, or "
                "BASTION_DEPLOY_ENV_PREFIX for a webhook) or what is already set"
            )
    return sorted(keys)
