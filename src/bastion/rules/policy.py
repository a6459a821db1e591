"""What a Python rule may use. Shared by the save-time check and the worker.

The worker pre-imports these modules before it locks itself down (after that it
cannot open files, so it cannot import anything new), and a rule's `import`
statement only reaches this list.
"""

from __future__ import annotations

__all__ = ["ALLOWED_MODULES", "REFUSED_NAMES", "REFUSED_ATTRIBUTES", "RULE_GLOBALS", "is_allowed_module"]

ALLOWED_MODULES = frozenset(
    {
        "asyncio", "base64", "binascii", "bisect", "calendar", "collections", "collections.abc", "copy",
        "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "hashlib", "heapq",
        "hmac", "html", "ipaddress", "itertools", "json", "logging", "math", "operator", "random", "re",
        "secrets", "statistics", "string", "struct", "textwrap", "time", "typing", "unicodedata",
        "urllib.parse", "uuid", "zlib",
        "bastion", "bastion.rules",
    }
)

# Builtins and attributes that reach the interpreter itself; refused when a rule is saved.
REFUSED_NAMES = frozenset({"open", "exec", "eval", "compile", "__import__", "breakpoint", "input", "globals", "vars", "memoryview"})
REFUSED_ATTRIBUTES = frozenset(
    {
        "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__getattribute__", "__dict__",
        "__bases__", "__base__", "__mro__", "__loader__", "__spec__", "f_globals", "f_locals", "f_back",
        "gi_frame", "cr_frame", "ag_frame", "tb_frame",
    }
)

# Names a rule finds in its global namespace without importing them (as Auth0's sandbox globals).
RULE_GLOBALS = ("UnauthorizedError",)


def is_allowed_module(name: str) -> bool:
    """Exact names only: `urllib.parse` is allowed, `urllib.request` is not."""
    return name in ALLOWED_MODULES
