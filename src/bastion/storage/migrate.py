"""Apply (or generate) Alembic migrations on an app's database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bastion.storage.database import Database

__all__ = ["migrate", "pending_migrations", "alembic_config"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def migrate(database: Database, revision: str = "head") -> None:
    """Bring the schema to `revision` (all pending migrations by default)."""

    def upgrade(connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.engine.begin() as connection:
        await connection.run_sync(upgrade)


async def pending_migrations(database: Database) -> list[str]:
    """The revisions not yet applied, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())

    def current(connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async with database.engine.connect() as connection:
        heads = await connection.run_sync(current)
    pending = []
    for rev in script.walk_revisions():
        if rev.revision in heads:
            break
        pending.append(rev.revision)
    return list(reversed(pending))
