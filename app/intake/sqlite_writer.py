"""Plain ``sqlite3`` writes kept off the event loop, and WAL checkpoints kept off commits.

``SQLiteWriter`` runs a function as one transaction on a plain ``sqlite3`` connection that lives
on its own thread: ``BEGIN IMMEDIATE``, the statements, ``COMMIT``, and back, instead of the
several thread hops and per-value type processing of SQLAlchemy's async adapter. Batches of
deliveries stored outside the webhook (``DeliveryQueue.insert_batch``) take this path; the
webhook's own intake runs in the intake process (``app.intake.process``). Every connection gets
the same pragmas as the engine's.

Checkpoints: by default SQLite copies the WAL back into the database inside whichever commit
crosses 1000 pages, and that commit then waits for two ``fsync`` calls while every webhook in the
batch waits for it. Every connection here turns the automatic checkpoint off
(``configure_sqlite_connection``) and ``WalCheckpointer`` runs a ``PASSIVE`` checkpoint on its own
connection and thread after this process's writes, which never blocks a writer. The intake
process checkpoints its own writes, between batches (see ``app.intake.process``). Durability is
unchanged: with ``synchronous=NORMAL`` a commit is safe against a process crash once it is in
the WAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# The WAL file is cut back to this size after a checkpoint lets it restart.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


def configure_sqlite_connection(connection: Any) -> None:
    """The pragmas of every connection to the database file, SQLAlchemy's and the plain ones."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    finally:
        cursor.close()


def _connect(path: str, *, uri: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are the explicit BEGIN/COMMIT below, nothing implicit.
    connection = sqlite3.connect(
        path, timeout=30, isolation_level=None, check_same_thread=False, uri=uri
    )
    configure_sqlite_connection(connection)
    return connection


class SQLiteWriter:
    """One connection on one thread; ``run`` executes a function as one write transaction."""

    def __init__(self, path: str, *, uri: bool = False) -> None:
        self._path = path
        self._uri = uri
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` inside ``BEGIN IMMEDIATE … COMMIT`` (rolled back if it raises).

        Cancelling the caller does not cut the transaction short: it waits for the thread, so a
        lock the caller holds is released only once the file is free again.
        """
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._transact, work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await future
            raise

    def _transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            self._connection = _connect(self._path, uri=self._uri)
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
            connection.execute("COMMIT")
        except BaseException:
            # Some errors (a full disk, an I/O error) end the transaction themselves.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    async def close(self) -> None:
        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close_connection)
        self._executor.shutdown(wait=True)


class WalCheckpointer:
    """Copies the WAL back into the database in the background, soon after writes.

    ``note_write`` is called after each commit (cheap: it sets an event). The task then waits
    ``interval`` seconds, so a burst of commits costs one checkpoint, and checkpoints on a thread
    of its own. A checkpoint that fails is logged and tried again after the next write.
    """

    def __init__(self, path: str, *, uri: bool = False, interval: float = 0.5) -> None:
        self._path = path
        self._uri = uri
        self._interval = interval
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.checkpoints = 0

    def note_write(self) -> None:
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="sqlite-checkpointer"
            )

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._interval)
            self._dirty.clear()
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception:
                log.exception("WAL checkpoint failed; retrying after the next write")

    def checkpoint(self) -> tuple[int, int, int]:
        """Run one checkpoint now (blocking): SQLite's (busy, WAL frames, frames copied)."""
        with self._lock:
            if self._connection is None:
                self._connection = _connect(self._path, uri=self._uri)
            row = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    async def close(self) -> None:
        """Stop the task and leave the database checkpointed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None or self._dirty.is_set():
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception:
                log.exception("final WAL checkpoint failed")
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
