"""Repository: rules, rule configuration values (sealed), and reading rule execution records
(they are written inside log events: events.record_event)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.paging import Page, fetch_page
from bastion.storage.records import Rule, RuleExecution, record_from_row
from bastion.storage.tables import LogEventRow, RuleConfigRow, RuleRow

__all__ = [
    "insert_rule",
    "get_rule",
    "find_rule_by_name",
    "find_rule_by_order",
    "list_rules",
    "all_rules",
    "enabled_rules",
    "max_rule_order",
    "update_rule",
    "delete_rule",
    "list_rule_config_keys",
    "rule_config_values",
    "put_rule_config",
    "delete_rule_config",
    "get_rule_execution",
    "list_rule_executions",
]


async def insert_rule(session: AsyncSession, **values: Any) -> Rule:
    now = datetime.now(timezone.utc)
    row = RuleRow(created_at=now, updated_at=now, **values)
    session.add(row)
    await session.flush()
    return record_from_row(Rule, row)


async def get_rule(session: AsyncSession, *, id: str) -> Rule | None:
    row = await session.get(RuleRow, id)
    return record_from_row(Rule, row) if row else None


async def find_rule_by_name(session: AsyncSession, *, name: str) -> Rule | None:
    row = await session.scalar(select(RuleRow).where(RuleRow.name == name))
    return record_from_row(Rule, row) if row else None


async def find_rule_by_order(session: AsyncSession, *, stage: str, order: int) -> Rule | None:
    row = await session.scalar(select(RuleRow).where(RuleRow.stage == stage, RuleRow.order == order))
    return record_from_row(Rule, row) if row else None


async def list_rules(
    session: AsyncSession, *, page: int, per_page: int, stage: str | None = None, enabled: bool | None = None
) -> Page[Rule]:
    statement = select(RuleRow).order_by(RuleRow.stage, RuleRow.order)
    if stage:
        statement = statement.where(RuleRow.stage == stage)
    if enabled is not None:
        statement = statement.where(RuleRow.enabled.is_(enabled))
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([record_from_row(Rule, r) for r in rows], start, per_page, total)


async def all_rules(session: AsyncSession) -> list[Rule]:
    """Every rule, by stage and order (the CLI's list, a deploy's comparison)."""
    rows = await session.scalars(select(RuleRow).order_by(RuleRow.stage, RuleRow.order))
    return [record_from_row(Rule, r) for r in rows]


async def enabled_rules(session: AsyncSession, *, stage: str = "login_success") -> list[Rule]:
    """What a login runs: the enabled rules of `stage`, in ascending order."""
    rows = await session.scalars(
        select(RuleRow).where(RuleRow.stage == stage, RuleRow.enabled.is_(True)).order_by(RuleRow.order)
    )
    return [record_from_row(Rule, r) for r in rows]


async def max_rule_order(session: AsyncSession, *, stage: str) -> int | None:
    return await session.scalar(select(func.max(RuleRow.order)).where(RuleRow.stage == stage))


async def update_rule(session: AsyncSession, *, id: str, changes: dict[str, Any]) -> Rule | None:
    row = await session.get(RuleRow, id)
    if row is None:
        return None
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = datetime.now(timezone.utc)
    await session.flush()
    return record_from_row(Rule, row)


async def delete_rule(session: AsyncSession, *, id: str) -> bool:
    result = await session.execute(delete(RuleRow).where(RuleRow.id == id))
    return result.rowcount > 0


async def list_rule_config_keys(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(RuleConfigRow.key).order_by(RuleConfigRow.key)))


async def rule_config_values(session: AsyncSession) -> dict[str, str]:
    """Key -> sealed value."""
    rows = await session.scalars(select(RuleConfigRow))
    return {r.key: r.value_sealed for r in rows}


async def put_rule_config(session: AsyncSession, *, key: str, value_sealed: str) -> None:
    row = await session.get(RuleConfigRow, key)
    now = datetime.now(timezone.utc)
    if row is None:
        session.add(RuleConfigRow(key=key, value_sealed=value_sealed, updated_at=now))
    else:
        row.value_sealed = value_sealed
        row.updated_at = now
    await session.flush()


async def delete_rule_config(session: AsyncSession, *, key: str) -> bool:
    result = await session.execute(delete(RuleConfigRow).where(RuleConfigRow.key == key))
    return result.rowcount > 0


def _execution(row: LogEventRow) -> RuleExecution:
    values = dict(row.details.get("rules_execution") or {})
    values.setdefault("warnings", [])
    return RuleExecution(id=row.rules_execution_id or "", created_at=row.date, **values)


async def get_rule_execution(session: AsyncSession, *, id: str) -> RuleExecution | None:
    """The execution record, kept in the log event of its login (events.record_event)."""
    row = await session.scalar(select(LogEventRow).where(LogEventRow.rules_execution_id == id))
    return _execution(row) if row else None


async def list_rule_executions(
    session: AsyncSession, *, page: int, per_page: int, user_id: str | None = None
) -> Page[RuleExecution]:
    statement = select(LogEventRow).where(LogEventRow.rules_execution_id.is_not(None)).order_by(LogEventRow.seq.desc())
    if user_id:
        statement = statement.where(LogEventRow.user_id == user_id)
    rows, start, total = await fetch_page(session, statement, page=page, per_page=per_page)
    return Page([_execution(r) for r in rows], start, per_page, total)
