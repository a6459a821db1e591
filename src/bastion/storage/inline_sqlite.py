"""SQLite for the async engine, run on the event loop's own thread.

SQLAlchemy's `aiosqlite` driver sends every call (cursor, execute, fetch, close, commit)
to a thread of its own and waits for the answer: about 70 µs per call here, four or more
calls per statement. A short unit of work cost ~0.7 ms of CPU that way, against ~0.08 ms
for the same statement on plain `sqlite3` (docs/performance.md, "The SQLite driver").
SQLite is a library, not a server: a statement on a local file in WAL mode takes
microseconds, so this driver calls `sqlite3` directly, on the event loop's thread.

The one thing that must not happen on that thread is waiting for a lock. Another
connection (another coroutine of this process, or another server process) may hold
SQLite's write lock; SQLite's own busy handler would sleep in place and stop the event
loop, and with it the very coroutine holding the lock. So connections are opened with a
busy timeout of zero, and a statement that finds the database locked is retried after an
`asyncio.sleep` with backoff, which lets every other coroutine run; the whole wait is
bounded by the connection's `timeout` (30 s, what SQLite's handler had before). A
read transaction that cannot become a write one because another connection wrote since
(`SQLITE_BUSY_SNAPSHOT`) fails at once, as it does with SQLite's handler.

The trade-off: a long statement (a search scanning many rows) holds the loop while it runs.

The dialect is SQLAlchemy's `aiosqlite` dialect (SQL, types, pool) with this DBAPI shim;
`Database` selects it for every SQLite URL.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi, SQLiteDialect_aiosqlite
from sqlalchemy.dialects.sqlite.base import SQLiteExecutionContext
from sqlalchemy.engine.interfaces import AdaptedConnection
from sqlalchemy.util.concurrency import await_

__all__ = ["DRIVER", "SQLiteDialect_inline", "sqlite_url"]

DRIVER = "bastion_inline"
_SQLITE_BUSY = 5
_SQLITE_BUSY_SNAPSHOT = 517
_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.05


def sqlite_url(url: str) -> str:
    """The URL with this driver: `sqlite://`, `sqlite+aiosqlite://`, ... all mean this one."""
    scheme, rest = url.split("://", 1)
    return f"sqlite+{DRIVER}://{rest}" if scheme.split("+", 1)[0] == "sqlite" else url


def _is_lock_wait(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # an error raised by the module itself, not by SQLite
        return False
    return code & 0xFF == _SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT


async def _call(call, lock_timeout: float):
    """`call()` at once; while the database is locked, again after a pause that lets the loop run."""
    try:
        return call()
    except sqlite3.OperationalError as error:
        if not _is_lock_wait(error):
            raise
    deadline = time.monotonic() + lock_timeout
    pause = _FIRST_PAUSE
    while True:
        await asyncio.sleep(pause)
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _is_lock_wait(error) or time.monotonic() + pause > deadline:
                raise
        pause = min(pause * 2, _LONGEST_PAUSE)


class _Cursor:
    """A DBAPI cursor: the statement runs at once; its rows are read before `execute` returns."""

    __slots__ = ("_connection", "_cursor", "_rows", "description", "rowcount", "lastrowid", "arraysize")

    server_side = False

    def __init__(self, connection: _Connection):
        self._connection = connection
        self._cursor = connection._connection.cursor()
        self._rows: collections.deque = collections.deque()
        self.description = None
        self.rowcount = -1
        self.lastrowid = None
        self.arraysize = 1

    def _run(self, method, operation, parameters):
        cursor = self._cursor
        if parameters is None:
            self._connection._locked_retry(lambda: method(operation))
        else:
            self._connection._locked_retry(lambda: method(operation, parameters))
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        if cursor.description is not None:
            self._rows = collections.deque(cursor.fetchall())

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._run(self._cursor.execute, operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        self._run(self._cursor.executemany, operation, seq_of_parameters)

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's asyncio results: the rows are already read; nothing to do."""

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass

    def __iter__(self):
        while self._rows:
            yield self._rows.popleft()

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list:
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> list:
        rows = list(self._rows)
        self._rows.clear()
        return rows


class _Connection(AdaptedConnection):
    __slots__ = ("dbapi", "_lock_timeout")

    def __init__(self, dbapi: Any, connection: sqlite3.Connection, lock_timeout: float):
        self.dbapi = dbapi
        self._connection = connection
        self._lock_timeout = lock_timeout

    def _locked_retry(self, call):
        # Through `await_` even when nothing waits: SQLAlchemy's AsyncConnection checks that
        # every execution awaited something (one greenlet switch, a few µs).
        return await_(_call(call, self._lock_timeout))

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection.isolation_level = value

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._connection.create_function(*args, **kw)

    def cursor(self, server_side: bool = False) -> _Cursor:
        return _Cursor(self)

    def execute(self, operation: Any, parameters: Any = None) -> _Cursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        self._locked_retry(self._connection.commit)

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        self._connection.close()


class _InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def __init__(self):
        super().__init__(sqlite3, sqlite3)

    def connect(self, *args: Any, **kw: Any) -> _Connection:
        lock_timeout = float(kw.pop("timeout", 5.0))
        kw.pop("async_creator_fn", None)
        # check_same_thread off: the pool may close a connection from the garbage collector.
        kw["check_same_thread"] = False
        connection = sqlite3.connect(*args, timeout=0, **kw)
        return _Connection(self, connection, lock_timeout)


class SQLiteDialect_inline(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True
    supports_server_side_cursors = False
    has_terminate = False
    execution_ctx_cls = SQLiteExecutionContext

    def __init__(self, **kwargs: Any):
        super(SQLiteDialect_aiosqlite, self).__init__(**kwargs)

    @classmethod
    def import_dbapi(cls) -> _InlineDBAPI:
        return _InlineDBAPI()

    def retrieve_dbapi_version(self, dbapi: Any):
        return None

    def get_driver_connection(self, connection: Any) -> sqlite3.Connection:
        return connection._connection

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.close()


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")
