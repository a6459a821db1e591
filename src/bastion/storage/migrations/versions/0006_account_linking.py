"""users.linked_to and users.linked_at: Auth0's account linking (docs/identities.md)

A linked secondary user keeps its row and names its primary; the foreign key deletes the
secondaries with their primary (as Auth0 does).

SQLite: not a batch table copy. Bastion's SQLite connections enforce foreign keys
(storage/database.py), which cannot be turned off inside the migration's transaction, and the
copy's DROP TABLE users would then cascade into every table that references users (identities,
factors, grants, roles). Instead the column is added (ALTER TABLE ADD COLUMN), and the foreign
key is written into the table's stored definition, by SQLite's documented procedure for schema
changes that leave the stored rows as they are (sqlite.org/lang_altertable.html, "Making other
kinds of table schema changes"): writable_schema, then a schema_version bump. The new column is
NULL in every row, so no row can break the constraint; `PRAGMA foreign_key_check` confirms it.
(A REFERENCES clause in the ADD COLUMN works too, but SQLAlchemy cannot read back its ON DELETE,
so the schema would no longer compare equal to the models.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


_SQLITE_FOREIGN_KEY = "FOREIGN KEY(linked_to) REFERENCES users (user_id) ON DELETE CASCADE"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE users ADD COLUMN linked_to VARCHAR(128)")
        _rewrite_sqlite_table("users", lambda sql: f"{sql[:-1]}, {_SQLITE_FOREIGN_KEY})")
    else:
        op.add_column("users", sa.Column("linked_to", sa.String(length=128), nullable=True))
        op.create_foreign_key("users_linked_to_fkey", "users", "users", ["linked_to"], ["user_id"], ondelete="CASCADE")
    op.add_column("users", sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_users_linked_to", "users", ["linked_to"])


def downgrade() -> None:
    op.drop_index("ix_users_linked_to", table_name="users")
    op.drop_column("users", "linked_at")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops no column that a table constraint names: the constraint goes first.
        _rewrite_sqlite_table("users", lambda sql: sql.replace(f", {_SQLITE_FOREIGN_KEY}", ""))
        op.execute("ALTER TABLE users DROP COLUMN linked_to")  # SQLite 3.35+, in place
    else:
        op.drop_constraint("users_linked_to_fkey", "users", type_="foreignkey")
        op.drop_column("users", "linked_to")


def _rewrite_sqlite_table(table: str, change) -> None:
    """Change `table`'s stored CREATE TABLE text in place (see the module docstring); the rows
    are untouched, and must satisfy the new definition's foreign keys."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar_one()
    sql = sql.rstrip()
    changed = change(sql)
    if not sql.endswith(")") or changed == sql:
        raise RuntimeError(f"unexpected definition of table {table}: {sql!r}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (changed, table))
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = bind.exec_driver_sql(f"PRAGMA foreign_key_check({table})").fetchall()
    if problems:
        raise RuntimeError(f"foreign key check failed on {table}: {problems}")
