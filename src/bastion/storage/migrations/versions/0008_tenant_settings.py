"""tenant_settings: the tenant's settings (Auth0's /api/v2/tenants/settings, docs/management-api.md
"Tenant settings"), one row holding a JSON document of what was set

A new table only, so SQLite needs no batch mode. Its one row (id 1) is created here, so that a
settings update always finds a row to lock.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "tenant_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    now = datetime.now(timezone.utc)
    if op.get_bind().dialect.name == "sqlite":  # stored as naive UTC, as the models do (tables.UTCDateTime)
        now = now.replace(tzinfo=None)
    op.bulk_insert(table, [{"id": 1, "settings": {}, "updated_at": now}])


def downgrade() -> None:
    op.drop_table("tenant_settings")
