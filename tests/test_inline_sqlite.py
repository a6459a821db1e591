"""The SQLite driver that runs statements on the event loop's thread (storage/inline_sqlite.py).

What must hold: a writer that finds the database locked waits without stopping the event
loop (the lock's holder may be a coroutine of the same loop), gets through once the lock is
released, and gives up with SQLite's own error after the configured timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bastion.storage.database import Database
from bastion.storage.inline_sqlite import DRIVER, sqlite_url


def test_every_sqlite_url_selects_the_inline_driver():
    assert sqlite_url("sqlite+aiosqlite:////var/b.db") == f"sqlite+{DRIVER}:////var/b.db"
    assert sqlite_url("sqlite:///b.db") == f"sqlite+{DRIVER}:///b.db"
    assert sqlite_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"


@pytest.fixture
async def two_databases(tmp_path):
    """Two engines on one file: two server processes, as far as SQLite's locks are concerned."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}"
    first, second = Database(url), Database(url)
    async with first.transaction() as session:
        await session.execute(text("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER)"))
        await session.execute(text("INSERT INTO counters VALUES ('a', 0)"))
    yield first, second
    await first.dispose()
    await second.dispose()


async def test_a_locked_writer_waits_while_the_loop_goes_on(two_databases):
    first, second = two_databases
    holding = asyncio.Event()
    release = asyncio.Event()
    ticks = 0

    async def holder():
        async with first.transaction() as session:
            await session.execute(text("UPDATE counters SET value = value + 1"))
            holding.set()
            await release.wait()  # the write lock is held across an await of something else

    async def writer():
        await holding.wait()
        async with second.transaction() as session:
            await session.execute(text("UPDATE counters SET value = value + 10"))

    async def ticker():
        nonlocal ticks
        await holding.wait()
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        release.set()

    await asyncio.wait_for(asyncio.gather(holder(), writer(), ticker()), timeout=10)
    # The loop ran the ticker while the writer waited: had the writer blocked the thread in
    # SQLite's busy handler, the holder could never have released the lock.
    assert ticks == 20
    async with second.reader() as session:
        assert (await session.execute(text("SELECT value FROM counters"))).scalar_one() == 11


async def test_a_writer_gives_up_after_the_timeout_with_sqlites_error(tmp_path):
    path = tmp_path / "held.db"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("PRAGMA journal_mode=WAL")
    blocker.execute("CREATE TABLE t (x INTEGER)")
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    database = Database(f"sqlite:///{path}", lock_timeout=1.0)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(OperationalError, match="locked"):
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
        waited = loop.time() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        await database.dispose()
    assert 0.9 <= waited < 5
