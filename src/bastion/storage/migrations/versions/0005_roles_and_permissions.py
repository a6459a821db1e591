"""roles, role_permissions, user_roles, user_permissions; resource_servers.enforce_policies and token_dialect
(Auth0's RBAC, docs/access-control.md)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resource_servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enforce_policies", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("token_dialect", sa.String(length=32), nullable=False, server_default="access_token"))
    op.create_table(
        "roles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "role_permissions",
        sa.Column("role_id", sa.String(length=64), nullable=False),
        sa.Column("resource_server_identifier", sa.String(length=600), nullable=False),
        sa.Column("permission_name", sa.String(length=280), nullable=False),
        sa.ForeignKeyConstraint(["role_id"], ["roles.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resource_server_identifier"], ["resource_servers.identifier"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("role_id", "resource_server_identifier", "permission_name"),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("role_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["roles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "role_id"),
    )
    op.create_index("ix_user_roles_role_id", "user_roles", ["role_id"])
    op.create_table(
        "user_permissions",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("resource_server_identifier", sa.String(length=600), nullable=False),
        sa.Column("permission_name", sa.String(length=280), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resource_server_identifier"], ["resource_servers.identifier"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "resource_server_identifier", "permission_name"),
    )


def downgrade() -> None:
    op.drop_table("user_permissions")
    op.drop_index("ix_user_roles_role_id", table_name="user_roles")
    op.drop_table("user_roles")
    op.drop_table("role_permissions")
    op.drop_table("roles")
    with op.batch_alter_table("resource_servers", schema=None) as batch_op:
        batch_op.drop_column("token_dialect")
        batch_op.drop_column("enforce_policies")
