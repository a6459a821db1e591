"""paused logins, MFA authenticators and remembered browsers, one-time codes, consent grants

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 09:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_events", schema=None) as batch_op:
        batch_op.alter_column("type", existing_type=sa.String(length=16), type_=sa.String(length=32), existing_nullable=False)
    with op.batch_alter_table("login_transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "mfa_authenticators",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("secret_sealed", sa.Text(), nullable=True),
        sa.Column("secret_digest", sa.String(length=64), nullable=True),
        sa.Column("credential", sa.JSON(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mfa_authenticators_user_id", "mfa_authenticators", ["user_id"])
    op.create_table(
        "mfa_remembered_browsers",
        sa.Column("handle_digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("browser_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("handle_digest", "user_id"),
    )
    op.create_index("ix_mfa_remembered_browsers_user_id", "mfa_remembered_browsers", ["user_id"])
    op.create_table(
        "one_time_codes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_one_time_codes_recipient", "one_time_codes", ["purpose", "connection", "recipient"])
    op.create_table(
        "user_grants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("audience", sa.String(length=600), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "client_id", "audience", name="uq_user_grants"),
    )
    op.create_index("ix_user_grants_user_id", "user_grants", ["user_id"])


def downgrade() -> None:
    with op.batch_alter_table("log_events", schema=None) as batch_op:
        batch_op.alter_column("type", existing_type=sa.String(length=32), type_=sa.String(length=16), existing_nullable=False)
    op.drop_table("user_grants")
    op.drop_table("one_time_codes")
    op.drop_table("mfa_remembered_browsers")
    op.drop_table("mfa_authenticators")
    with op.batch_alter_table("login_transactions", schema=None) as batch_op:
        batch_op.drop_column("progress")
