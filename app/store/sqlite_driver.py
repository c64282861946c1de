"""SQLAlchemy's aiosqlite driver shim, with each statement one trip to the driver's thread.

aiosqlite runs every ``sqlite3`` call on a thread of its own, and SQLAlchemy's shim makes one
call per DBAPI step: open a cursor, execute, fetch the rows, close the cursor. Each call is a
round trip through the event loop (a future, a wake-up, a greenlet switch), and on a review's
two dozen statements those trips cost more of the loop than SQLite's own work. Here a statement
is one function run on the thread that opens the cursor, executes, fetches and closes, and the
cursor SQLAlchemy holds keeps the outcome (rows, description, rowcount, last row id).

A rollback with no transaction open (after a read, or once a commit ended it: the pool resets
every connection it takes back) has nothing to undo in SQLite, and is not sent to the thread;
an interrupted transaction is still rolled back, since ``in_transaction`` reports it.

The shim is given to SQLAlchemy's own aiosqlite dialect as its DBAPI module (``create_engine``'s
``module``), so SQL compilation, type handling and error mapping stay SQLAlchemy's.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any] | None, int, int | None]


def _execute(connection: aiosqlite.Connection, operation: str, parameters: Any) -> _Outcome:
    """On aiosqlite's thread: the whole life of one cursor."""
    cursor = connection._conn.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _executemany(
    connection: aiosqlite.Connection, operation: str, parameters: Sequence[Any]
) -> _Outcome:
    cursor = connection._conn.cursor()
    try:
        cursor.executemany(operation, parameters)
        return None, None, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A DBAPI cursor whose statement, rows and close are one call on the driver's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # No driver cursor is opened here: it lives only inside ``_execute``.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._rows: collections.deque[Any] = collections.deque()
        self._soft_closed_memoized = EMPTY_DICT
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing is open on the driver's thread once a statement returned."""

    def close(self) -> None:
        self._rows.clear()

    def nextset(self) -> None:
        """SQLite returns one result set per statement: there is never a next one."""

    def setinputsizes(self, *inputsizes: Any) -> None:
        """Nothing to declare: SQLite types values as they come."""

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(_execute, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._run(_executemany, operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run(self, function: Any, operation: Any, parameters: Any) -> None:
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await self._connection._execute(
                function, self._connection, operation, parameters
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows) if rows else collections.deque()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    _cursor_cls = OneTripCursor

    def rollback(self) -> None:
        """Sent only when SQLite reports a transaction open. The flag is read on this thread
        without waiting for the driver's queue: SQLAlchemy never rolls back while a statement of
        the connection is still queued or running (a cancelled statement closes the connection
        instead), and nothing else queues work on it."""
        aio = self._connection
        driver: sqlite3.Connection | None = aio._connection
        if aio._running and driver is not None:
            try:
                if not driver.in_transaction:
                    return  # nothing to undo, and no trip to the thread to learn it
            except sqlite3.ProgrammingError:
                pass  # closed under us: the driver's own rollback reports it
        super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is handed (``module=``)."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def dbapi() -> OneTripDBAPI:
    return OneTripDBAPI(aiosqlite, sqlite3)
