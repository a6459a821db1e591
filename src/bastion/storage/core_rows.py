"""Rows on the login path, written and read with SQLAlchemy Core.

Every login, code exchange and refresh goes through a handful of statements (the login
transaction, the SSO session, the user, the code, the refresh token, the log event). Through
the ORM each one pays for building the statement, the unit-of-work flush and the mapped
objects: measured here, `session.get(UserRow, ...)` costs ~160 µs of CPU where a Core
statement built once costs ~60 µs, and building a `select()` anew costs ~80 µs by itself
(docs/performance.md, "The database layer"). So the repositories on that path build their
statements once, at import, and execute them through the caller's session, inside its unit
of work; everything else keeps the ORM.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["insert_row"]


def _python_defaults(table: Table) -> dict[str, Any]:
    defaults = {}
    for column in table.columns:
        default = column.default
        if default is not None and (default.is_callable or default.is_scalar):
            defaults[column.name] = default
    return defaults


_DEFAULTS: dict[str, dict[str, Any]] = {}


def _with_defaults(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    defaults = _DEFAULTS.get(table.name)
    if defaults is None:
        defaults = _DEFAULTS[table.name] = _python_defaults(table)
    given = dict(values)
    for name, default in defaults.items():
        if name not in given:
            given[name] = default.arg(None) if default.is_callable else default.arg
    return given


_INSERTS: dict[str, Any] = {}


async def insert_row(session: AsyncSession, table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Insert one row (defaults filled in here) and return it as a dict of every column.

    Columns neither given nor defaulted are left out of the INSERT, as the ORM leaves them, so
    that autoincrement keys are numbered by the database."""
    given = _with_defaults(table, values)
    statement = _INSERTS.get(table.name)
    if statement is None:
        statement = _INSERTS[table.name] = insert(table)
    await session.execute(statement, given)
    return {**dict.fromkeys(table.columns.keys()), **given}
