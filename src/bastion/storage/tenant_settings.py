"""Repository: the tenant's settings (Auth0's /api/v2/tenants/settings), one JSON document in
one row. Only what was set is stored; the defaults are filled in when read
(tenant/tenant_settings.py), so a default that changes (a process setting) is seen at once."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.tables import TenantSettingsRow

__all__ = ["get_tenant_settings", "patch_tenant_settings", "merge_settings"]

_ROW = 1


async def get_tenant_settings(session: AsyncSession) -> dict[str, Any]:
    """What the tenant set (an empty document when nothing was)."""
    row = await session.get(TenantSettingsRow, _ROW)
    return dict(row.settings) if row is not None else {}


def merge_settings(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Auth0's PATCH: a top-level `null` removes the setting (back to its default); an object
    is merged key by key into the object already set (`flags`: only the flags named change);
    anything else replaces the value."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


async def patch_tenant_settings(session: AsyncSession, *, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge `changes` into the stored settings and return the result. The row is written first
    (its update takes the row lock on PostgreSQL, the write lock on SQLite), so two concurrent
    updates are applied one after the other and neither is lost."""
    now = datetime.now(timezone.utc)
    result = await session.execute(
        update(TenantSettingsRow).where(TenantSettingsRow.id == _ROW).values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # the migration creates the row; a database restored without it gets it back
        session.add(TenantSettingsRow(id=_ROW, settings={}, updated_at=now))
        await session.flush()
    row = await session.get(TenantSettingsRow, _ROW, populate_existing=True)
    assert row is not None
    row.settings = merge_settings(row.settings or {}, changes)  # a new dict: the ORM sees the change
    await session.flush()
    return dict(row.settings)
