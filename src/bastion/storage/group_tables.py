"""The ORM tables of groups (the Authorization Extension's model, docs/access-control.md "Groups").

Kept apart from `tables.py` but on the same `Base`, so the migrations compare them with the
rest of the schema. Changing a table means adding an Alembic migration (0007_groups.py made them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.storage.tables import Base

__all__ = ["GroupRow", "GroupMemberRow", "GroupNestedRow", "GroupRoleRow", "GroupMappingRow"]


class GroupRow(Base):
    """A named set of users (Auth0's Authorization Extension groups)."""

    __tablename__ = "groups"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class GroupMemberRow(Base):
    """A user made a member of a group explicitly."""

    __tablename__ = "group_members"
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True, index=True)


class GroupNestedRow(Base):
    """`nested_group_id` is nested in `group_id`: its members are members of `group_id` too.

    The graph stays acyclic: storage/groups.py refuses a nesting that would close a cycle."""

    __tablename__ = "group_nested"
    __table_args__ = (CheckConstraint("group_id <> nested_group_id", name="ck_group_nested_not_self"),)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    nested_group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True)


class GroupRoleRow(Base):
    """A role every member of the group has."""

    __tablename__ = "group_roles"
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True)


class GroupMappingRow(Base):
    """Users who log in through `connection_name` and whose upstream groups (the identity
    provider's `groups`) contain `group_name` are members of the group for that login."""

    __tablename__ = "group_mappings"
    __table_args__ = (
        UniqueConstraint("group_id", "connection_name", "group_name", name="uq_group_mappings"),
        Index("ix_group_mappings_upstream", "connection_name", "group_name"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    connection_name: Mapped[str] = mapped_column(String(128))
    group_name: Mapped[str] = mapped_column(String(255))
