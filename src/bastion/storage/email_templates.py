"""Repository: the operator's email templates set through the Management API (Auth0's
/api/v2/email-templates); a template without a row is Bastion's file (emails/templates.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import EmailTemplate, record_from_row
from bastion.storage.tables import EmailTemplateRow

__all__ = ["get_email_template", "put_email_template"]


async def get_email_template(session: AsyncSession, *, template: str) -> EmailTemplate | None:
    row = await session.scalar(select(EmailTemplateRow).where(EmailTemplateRow.template == template))
    return record_from_row(EmailTemplate, row) if row else None


async def put_email_template(session: AsyncSession, *, template: str, values: dict[str, Any]) -> EmailTemplate:
    """Create the row or replace the given columns of it."""
    row = await session.get(EmailTemplateRow, template)
    if row is None:
        row = EmailTemplateRow(template=template, enabled=True, syntax="liquid", include_email_in_redirect=False)
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = datetime.now(timezone.utc)
    await session.flush()
    return record_from_row(EmailTemplate, row)
