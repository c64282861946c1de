"""The database handle every store module uses: an engine plus, on SQLite, one writer at a time.

SQLite allows one writer per file. Left to itself, a second writer waits in SQLite's busy
handler, which *sleeps* (1 ms, 2 ms, … up to 100 ms per try): under load that turns into
acknowledgement latencies of hundreds of milliseconds. Queuing writers on an asyncio lock instead
hands the file from one transaction to the next with no sleep. PostgreSQL needs no such lock.

Writes that someone is waiting on (a webhook acknowledgement) are ``urgent`` and go ahead of
background writes (workers claiming and finishing deliveries): under a burst, intake stays fast
and the workers catch up in the gaps. The lock also covers writers outside this process's
connections: the intake process holds it (``urgent_writes``) while it has requests in flight.
Batches of plain ``sqlite3`` work run as one call on a dedicated connection (``write_batch``).
Every commit schedules a background WAL checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Any, Final, TypeVar, cast

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.intake.sqlite_writer import SQLiteWriter, WalCheckpointer
from app.store.engine import create_engine

Insert = postgresql.Insert | sqlite.Insert
T = TypeVar("T")

#: ``pg_advisory_xact_lock(class, key)`` of :meth:`Database.exclusive`: the two-key space never meets
#: the one-key space of migrations, and the class keeps it apart from the quota's and the queue's.
EXCLUSIVE_LOCK_CLASS: Final = 0x6A6F6273  # "jobs"


class _WriteLock:
    """One writer at a time, urgent ones first, handed from holder to holder.

    Releasing passes the lock straight to the longest-waiting urgent holder, else to the
    longest-waiting background one, so a waiter never has to win a race for it: background
    writers wait without polling, and an urgent writer never queues behind one that merely
    took the lock to look whether it may keep it.
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def hold(self, *, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held:  # nobody waits while the lock is free: release hands it on
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._urgent if urgent else self._background
        line.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed the lock just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # already dropped by a release
                    line.remove(waiter)
            raise

    def _release(self) -> None:
        for line in (self._urgent, self._background):
            while line:
                waiter = line.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the lock stays held: it now belongs to them
                    return
        self._held = False


def _sqlite_file(engine: AsyncEngine) -> tuple[str | None, bool]:
    """The file (and whether it is a ``file:`` URI) exactly as SQLAlchemy's driver opens it;
    None for an in-memory database, which a second connection would not share."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    name = str(args[0]) if args else ":memory:"
    uri = bool(kwargs.get("uri"))
    if name == ":memory:" or (uri and "mode=memory" in name):
        return None, uri
    return name, uri


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._inserts: dict[Table, Insert] = {}
        self._statements: dict[str, Any] = {}
        self._write_lock = _WriteLock() if self.is_sqlite else None
        self.sqlite_path, uri = _sqlite_file(engine) if self.is_sqlite else (None, False)
        self.sqlite_uri = uri
        self._writer = SQLiteWriter(self.sqlite_path, uri=uri) if self.sqlite_path else None
        self.checkpointer = WalCheckpointer(self.sqlite_path, uri=uri) if self.sqlite_path else None

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(create_engine(url))

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def insert(self, table: Table) -> Insert:
        """An INSERT with this dialect's ``on_conflict_do_nothing`` / ``on_conflict_do_update``.

        Built once per table: statements are generative (each ``.values()`` or
        ``.on_conflict_...()`` returns a new one), so the same base is safe to hand out.
        """
        statement = self._inserts.get(table)
        if statement is None:
            statement = postgresql.insert(table) if self.is_postgres else sqlite.insert(table)
            self._inserts[table] = statement
        return statement

    def insert_or_skip(self, table: Table) -> Insert:
        """``INSERT … ON CONFLICT DO NOTHING`` into ``table``, built once; the rows go in as
        execution parameters."""
        return self.statement(
            f"{table.name}.insert_or_skip", lambda db: db.insert(table).on_conflict_do_nothing()
        )

    def statement(self, name: str, build: Callable[[Database], T]) -> T:
        """The statement ``build`` makes for this database, built once and kept under ``name``.

        For statements whose SQL depends on the dialect (upserts): building one (its
        ``excluded`` alias, its ``ON CONFLICT`` clause) costs more CPU than SQLite takes to run
        it, and the stores run some on every review. The values go in as execution parameters.
        """
        statement = self._statements.get(name)
        if statement is None:
            statement = self._statements[name] = build(self)
        return cast(T, statement)

    @asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that commits on success."""
        guard: Any = (
            self._write_lock.hold(urgent=urgent) if self._write_lock is not None else nullcontext()
        )
        async with guard:
            async with self.engine.begin() as conn:
                yield conn
            if self.checkpointer is not None:
                self.checkpointer.note_write()

    @property
    def has_batch_writer(self) -> bool:
        return self._writer is not None

    async def write_batch(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` as one urgent write transaction on the dedicated SQLite connection.

        Only for SQLite files (``has_batch_writer``); ``work`` runs on the writer's thread with
        plain ``sqlite3`` and must not touch the event loop.
        """
        if self._writer is None:
            raise RuntimeError("the batch writer needs a SQLite database file")
        async with self.urgent_writes():
            result = await self._writer.run(work)
        self.note_write()
        return result

    @asynccontextmanager
    async def urgent_writes(self) -> AsyncIterator[None]:
        """The SQLite write lock, urgent, for a writer outside this process's connections
        (the intake process, which checkpoints what it writes itself); it must not leave the
        block while any of its writes runs."""
        if self._write_lock is None:
            raise RuntimeError("the write lock is for SQLite databases")
        async with self._write_lock.hold(urgent=True):
            yield

    def note_write(self) -> None:
        """A commit happened: schedule a background WAL checkpoint (SQLite files only)."""
        if self.checkpointer is not None:
            self.checkpointer.note_write()

    @asynccontextmanager
    async def exclusive(self, key: int, *, wait: bool) -> AsyncIterator[bool]:
        """Whether this process holds ``key`` among all processes sharing the database, for the
        block: one replica at a time runs a job every replica schedules.

        On PostgreSQL a transaction-level advisory lock in the ``(EXCLUSIVE_LOCK_CLASS, key)``
        space, in a transaction kept open (and idle) for the block: however the block ends, or
        the replica with it, the transaction's end lets the lock go. With ``wait`` false the
        block learns at once that another holder has it. SQLite has one serving process: always
        held.
        """
        if not self.is_postgres:
            yield True
            return
        params = {"cls": EXCLUSIVE_LOCK_CLASS, "key": key}
        async with self.engine.connect() as conn:
            if wait:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:cls, :key)"), params)
                held = True
            else:
                taken = await conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:cls, :key)"), params
                )
                held = bool(taken.scalar_one())
            yield held
            # Leaving the block rolls the transaction back, and the lock goes with it.

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        if self.checkpointer is not None:
            await self.checkpointer.close()
        await self.engine.dispose()
