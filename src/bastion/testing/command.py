"""`bastion rules test [PATH] [PYTEST_ARGS]...`: run a rules folder's tests with the plugin loaded.

PATH defaults to the current folder: a repository laid out for `bastion deploy` keeps its
rules in `rules/` (where every `.py` is a rule) and its tests beside it (e.g. `tests/`). The exit code is pytest's (0 all passed, 1 some failed, 2
interrupted, 4 a usage error, 5 no tests collected), so CI can run the command as is.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

__all__ = ["default_rules_path", "pytest_arguments", "run_rule_tests"]

PLUGIN_ENTRY_POINT = "bastion"
PLUGIN_MODULE = "bastion.testing.plugin"


def default_rules_path() -> Path:
    return Path(".")


def _plugin_name() -> str:
    """Name the plugin as its entry point when installed (pytest then loads it once, whether
    plugins autoload or not), else by its module."""
    installed = any(e.name == PLUGIN_ENTRY_POINT and e.value == PLUGIN_MODULE for e in importlib.metadata.entry_points(group="pytest11"))
    return PLUGIN_ENTRY_POINT if installed else PLUGIN_MODULE


def pytest_arguments(path: str | Path | None, extra: list[str]) -> list[str]:
    """`path` may be a pytest option when no PATH was given (`bastion rules test -x`)."""
    if isinstance(path, str) and path.startswith("-"):
        path, extra = None, [path, *extra]
    return ["-p", _plugin_name(), str(path if path is not None else default_rules_path()), *extra]


def run_rule_tests(path: str | Path | None = None, extra: list[str] | None = None) -> int:
    """pytest in a fresh interpreter (this one has Bastion imported already, which pytest's
    assertion rewriting of the plugin's package needs not to be); returns its exit code."""
    command = [sys.executable, "-m", "pytest", *pytest_arguments(path, list(extra or []))]
    return subprocess.run(command, check=False).returncode
