"""Alembic environment: runs on the connection Bastion hands over (see storage/migrate.py)."""

from alembic import context

from bastion.storage import group_tables  # noqa: F401  (its tables are on Base too)
from bastion.storage.tables import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `bastion migrate` (it passes the connection in)")

context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
