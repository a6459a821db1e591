"""The rules engine: operators' Python rules, run in sandboxed worker processes on every login.

Importable by rule code and tests: `from bastion.rules import UnauthorizedError`.
This package's __init__ stays light: the worker imports it inside the sandbox.
"""

from bastion.rules.objects import UnauthorizedError

__all__ = ["UnauthorizedError"]
