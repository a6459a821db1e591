"""Checking a rule's script when it is saved: it parses, defines `rule(user, context, api)`,
and imports only what the sandbox offers. Problems name their line."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from bastion.rules.policy import REFUSED_ATTRIBUTES, REFUSED_NAMES, is_allowed_module

__all__ = ["RuleScriptError", "check_script", "MAX_SCRIPT_BYTES"]

MAX_SCRIPT_BYTES = 100 * 1024


@dataclass
class RuleScriptError(Exception):
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def check_script(script: str) -> None:
    """Raise RuleScriptError naming the first problem."""
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise RuleScriptError(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
    try:
        tree = ast.parse(script, filename="<rule>")
    except SyntaxError as error:
        raise RuleScriptError(f"syntax error: {error.msg}", error.lineno) from None
    _check_entry_point(tree)
    for node in ast.walk(tree):
        _check_node(node)


def _check_entry_point(tree: ast.Module) -> None:
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "rule"]
    if not functions:
        raise RuleScriptError("the script must define `def rule(user, context, api)` (or `async def rule`) at the top level")
    arguments = functions[-1].args
    positional = [a.arg for a in arguments.posonlyargs + arguments.args]
    if len(positional) != 3 or arguments.vararg or arguments.kwonlyargs and any(d is None for d in arguments.kw_defaults):
        raise RuleScriptError("`rule` must take exactly three arguments: (user, context, api)", functions[-1].lineno)


def _check_node(node: ast.AST) -> None:
    line = getattr(node, "lineno", None)
    if isinstance(node, ast.Import):
        for alias in node.names:
            if not is_allowed_module(alias.name):
                raise RuleScriptError(f"import of {alias.name!r} is not allowed in rules (it reaches the OS, the network or the interpreter)", line)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            raise RuleScriptError("relative imports are not allowed in rules", line)
        if not node.module or not is_allowed_module(node.module):
            raise RuleScriptError(f"import from {node.module!r} is not allowed in rules", line)
        if node.module.startswith("bastion") and any(a.name != "UnauthorizedError" for a in node.names):
            raise RuleScriptError("rules may import only UnauthorizedError from bastion.rules", line)
    elif isinstance(node, ast.Name) and node.id in REFUSED_NAMES:
        raise RuleScriptError(f"{node.id!r} is not available in rules", line)
    elif isinstance(node, ast.Attribute) and node.attr in REFUSED_ATTRIBUTES:
        raise RuleScriptError(f"the attribute {node.attr!r} is not available in rules", line)
    elif isinstance(node, (ast.Global, ast.Nonlocal)) and "__builtins__" in node.names:
        raise RuleScriptError("__builtins__ is not available in rules", line)
