"""PostgreSQL's connection pool: a connection idle for a while is pinged before use, one back in
use within `IDLE_BEFORE_PING` is not (storage/database.py)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bastion.storage import database as database_module
from bastion.storage.database import Database
from tests.conftest import POSTGRES_ADMIN

pytestmark = pytest.mark.postgres


async def _backend_pid(database: Database) -> int:
    async with database.transaction() as session:
        return (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()


def _terminate(pid: int) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_an_idle_connection_that_died_is_replaced_before_use(postgres_url, monkeypatch):
    database = Database(postgres_url)
    try:
        dead = await _backend_pid(database)
        _terminate(dead)  # the server drops the pooled connection
        monkeypatch.setattr(database_module, "IDLE_BEFORE_PING", 0.0)  # as if it had sat idle
        assert await _backend_pid(database) != dead  # the ping found it dead; nobody saw an error
    finally:
        await database.dispose()


async def test_a_connection_in_use_moments_ago_is_not_pinged(postgres_url, monkeypatch):
    """The price of skipping the ping: a connection that died within the window fails its next
    use, once; the pool then drops it (and every connection older than the failure)."""
    database = Database(postgres_url)
    monkeypatch.setattr(database_module, "IDLE_BEFORE_PING", 3600.0)
    try:
        dead = await _backend_pid(database)
        _terminate(dead)
        with pytest.raises(DBAPIError):
            await _backend_pid(database)
        assert await _backend_pid(database) != dead
    finally:
        await database.dispose()
