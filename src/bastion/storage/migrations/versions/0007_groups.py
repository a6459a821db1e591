"""groups, group_members, group_nested, group_roles, group_mappings (the Authorization
Extension's groups, docs/access-control.md "Groups")

New tables only: no existing table is copied or altered, so SQLite needs no batch mode.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "group_nested",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("nested_group_id", sa.String(length=64), nullable=False),
        sa.CheckConstraint("group_id <> nested_group_id", name="ck_group_nested_not_self"),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["nested_group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "nested_group_id"),
    )
    op.create_index("ix_group_nested_nested_group_id", "group_nested", ["nested_group_id"])
    op.create_table(
        "group_roles",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("role_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["roles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "role_id"),
    )
    op.create_index("ix_group_roles_role_id", "group_roles", ["role_id"])
    op.create_table(
        "group_mappings",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("connection_name", sa.String(length=128), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "connection_name", "group_name", name="uq_group_mappings"),
    )
    op.create_index("ix_group_mappings_upstream", "group_mappings", ["connection_name", "group_name"])


def downgrade() -> None:
    op.drop_index("ix_group_mappings_upstream", table_name="group_mappings")
    op.drop_table("group_mappings")
    op.drop_index("ix_group_roles_role_id", table_name="group_roles")
    op.drop_table("group_roles")
    op.drop_index("ix_group_nested_nested_group_id", table_name="group_nested")
    op.drop_table("group_nested")
    op.drop_index("ix_group_members_user_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("groups")
