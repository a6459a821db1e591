"""Repository: deployments of rules (each deploy and rollback, with the rules it left) and the
names of the rules a deploy leaves alone ("manual" rules). docs/deploy.md."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import Deployment, record_from_row
from bastion.storage.tables import DeploymentRow, DeployManualRuleRow

__all__ = [
    "lock_deployments",
    "insert_deployment",
    "get_deployment",
    "list_deployments",
    "manual_rule_names",
    "add_manual_rule",
    "remove_manual_rule",
]

# Any constant shared by every process: the PostgreSQL advisory lock one deploy holds at a time.
_DEPLOY_LOCK = 0x62617374_6470  # "bast" "dp"


async def lock_deployments(session: AsyncSession) -> None:
    """Serialise deploys and rollbacks until the transaction ends. PostgreSQL: an advisory
    transaction lock; SQLite: its single writer already does."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DEPLOY_LOCK})


async def insert_deployment(session: AsyncSession, *, id: str, **values: Any) -> Deployment:
    row = DeploymentRow(id=id, created_at=datetime.now(timezone.utc), **values)
    session.add(row)
    await session.flush()
    return record_from_row(Deployment, row)


async def get_deployment(session: AsyncSession, *, id: str) -> Deployment | None:
    row = await session.scalar(select(DeploymentRow).where(DeploymentRow.id == id))
    return record_from_row(Deployment, row) if row else None


async def list_deployments(session: AsyncSession, *, limit: int) -> list[Deployment]:
    """Newest first."""
    rows = await session.scalars(select(DeploymentRow).order_by(DeploymentRow.seq.desc()).limit(limit))
    return [record_from_row(Deployment, r) for r in rows]


async def manual_rule_names(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(DeployManualRuleRow.name)))


async def add_manual_rule(session: AsyncSession, *, name: str) -> bool:
    """False when the name was already marked manual."""
    if await session.get(DeployManualRuleRow, name) is not None:
        return False
    session.add(DeployManualRuleRow(name=name, created_at=datetime.now(timezone.utc)))
    await session.flush()
    return True


async def remove_manual_rule(session: AsyncSession, *, name: str) -> bool:
    result = await session.execute(delete(DeployManualRuleRow).where(DeployManualRuleRow.name == name))
    return result.rowcount > 0
