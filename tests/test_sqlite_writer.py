"""Plain ``sqlite3`` batches on a dedicated connection, the write lock, and background checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.intake.sqlite_writer import SQLiteWriter
from app.queue import DONE, QUEUED, DeliveryQueue, IntakeWriter, NewDelivery
from app.store import migrate
from app.store.db import Database


def new(delivery_id: str, *, needs_handling: bool = True, payload: str = "{}") -> NewDelivery:
    return NewDelivery(
        id=delivery_id,
        event="pull_request",
        action="opened",
        installation_id=7,
        repository="octo/demo",
        pr_key="octo/demo#1",
        payload=payload,
        needs_handling=needs_handling,
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


def stored_rows(path: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT id, event, action, installation_id, repository, pr_key, payload, status,"
            " attempts, typeof(received_at), typeof(next_attempt_at), finished_at IS NULL,"
            " length(received_at), leased_by, lease_expires_at, last_error"
            " FROM deliveries ORDER BY id"
        ).fetchall()


async def test_file_databases_get_the_batch_writer_and_memory_ones_do_not(
    db: Database,
) -> None:
    assert db.has_batch_writer
    memory = Database(create_async_engine("sqlite+aiosqlite:///:memory:"))
    try:
        assert not memory.has_batch_writer
        with pytest.raises(RuntimeError, match="SQLite database file"):
            await memory.write_batch(lambda conn: None)
    finally:
        await memory.dispose()


async def test_writer_stores_rows_exactly_as_sqlalchemy_does(db: Database, tmp_path: Path) -> None:
    """The plain-sqlite3 insert and the SQLAlchemy insert leave byte-identical rows."""
    other = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}")
    await migrate.upgrade(other.engine)
    other._writer = None  # the SQLAlchemy path, as on PostgreSQL
    try:
        batch = [new("a"), new("b", needs_handling=False, payload='{"x": "é"}')]
        assert await DeliveryQueue(db, lease_seconds=30).insert_batch(batch) == {"a", "b"}
        assert await DeliveryQueue(other, lease_seconds=30).insert_batch(batch) == {"a", "b"}
    finally:
        await other.dispose()
    assert db.sqlite_path is not None and other.sqlite_path is not None
    ours, reference = stored_rows(db.sqlite_path), stored_rows(other.sqlite_path)
    assert ours == reference
    assert [row[7] for row in ours] == [QUEUED, DONE]
    # The stored times read back as aware datetimes through SQLAlchemy, like any other row.
    row = await DeliveryQueue(db, lease_seconds=30).get("a")
    assert row is not None and row.received_at.tzinfo is not None
    assert row.next_attempt_at == row.received_at


async def test_writer_reports_only_ids_it_inserted(db: Database) -> None:
    queue = DeliveryQueue(db, lease_seconds=30)
    assert await queue.insert_batch([new("a"), new("b"), new("a")]) == {"a", "b"}
    assert await queue.insert_batch([new("a"), new("c")]) == {"c"}
    assert await queue.insert_batch([new("c"), new("b")]) == set()
    assert db.sqlite_path is not None
    assert [r[0] for r in stored_rows(db.sqlite_path)] == ["a", "b", "c"]


async def test_a_failing_batch_is_rolled_back_and_the_writer_keeps_working(
    db: Database,
) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO deliveries (id, event, payload, received_at, status, attempts,"
            " next_attempt_at) VALUES ('half', 'push', '{}', '2026-01-01 00:00:00.000000',"
            " 'queued', 0, '2026-01-01 00:00:00.000000')"
        )
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.write_batch(half_then_fail)
    queue = DeliveryQueue(db, lease_seconds=30)
    assert await queue.get("half") is None
    assert await queue.insert_batch([new("after")]) == {"after"}
    # The in-process write lock was released: an ordinary write goes through too.
    assert await queue.requeue("after")


async def test_a_cancelled_caller_waits_for_its_transaction_to_end(tmp_path: Path) -> None:
    path = str(tmp_path / "cancel.db")
    sqlite3.connect(path).execute("CREATE TABLE t (x INTEGER)").connection.close()
    writer = SQLiteWriter(path)
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=10)

    task = asyncio.create_task(writer.run(slow))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # still waiting for the thread: the file is not free yet
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (1,)
    await writer.close()


async def test_every_connection_leaves_checkpoints_to_the_checkpointer(db: Database) -> None:
    async with db.read() as conn:
        result = await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")
        assert result.scalar_one() == 0
    modes: list[str] = []

    def read_pragmas(conn: sqlite3.Connection) -> None:
        modes.append(conn.execute("PRAGMA journal_mode").fetchone()[0])
        modes.append(str(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]))

    await db.write_batch(read_pragmas)
    assert modes == ["wal", "0"]


async def test_writes_are_checkpointed_in_the_background(db: Database) -> None:
    checkpointer = db.checkpointer
    assert checkpointer is not None
    queue = DeliveryQueue(db, lease_seconds=30)
    await queue.insert_batch([new(f"d-{i}", payload="x" * 5000) for i in range(40)])
    for _ in range(1000):
        if checkpointer.checkpoints:
            break
        await asyncio.sleep(0.01)
    assert checkpointer.checkpoints >= 1
    # Everything the WAL held is now in the database file: a checkpoint has nothing left to copy
    # that a previous one did not already copy.
    busy, frames, copied = await asyncio.to_thread(checkpointer.checkpoint)
    assert busy == 0 and frames == copied and frames >= 0


async def test_dispose_leaves_the_wal_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "closing.db"
    db = Database.from_url(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(db.engine)
    await DeliveryQueue(db, lease_seconds=30).insert_batch([new("kept", payload="y" * 20000)])
    await db.dispose()
    # Every connection is closed (the last one to close folds the WAL in and removes it), and
    # the row is in the database file itself.
    wal = tmp_path / "closing.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)
    finally:
        conn.close()


async def test_a_file_uri_database_is_written_where_sqlalchemy_reads(tmp_path: Path) -> None:
    path = tmp_path / "uri.db"
    db = Database.from_url(f"sqlite+aiosqlite:///file:{path}?mode=rwc&uri=true")
    try:
        await migrate.upgrade(db.engine)
        assert db.has_batch_writer
        queue = DeliveryQueue(db, lease_seconds=30)
        assert await queue.insert_batch([new("via-uri")]) == {"via-uri"}
        assert await queue.get("via-uri") is not None
    finally:
        await db.dispose()
    assert [row[0] for row in stored_rows(str(path))] == ["via-uri"]


async def test_intake_on_the_writer_thread_tells_redeliveries_from_new_ones(db: Database) -> None:
    """One statement stores the batch; when some ids were stored before, exactly the rows this
    batch stored count as new, even right after an earlier batch."""
    queue = DeliveryQueue(db, lease_seconds=30)
    writer = IntakeWriter(queue, on_commit=lambda n: None)
    writer.start()
    try:
        assert await writer.submit(new("old")) is True
        results = await asyncio.gather(
            writer.submit(new("old")), writer.submit(new("fresh-1")), writer.submit(new("fresh-2"))
        )
        assert list(results) == [False, True, True]
        again = await asyncio.gather(writer.submit(new("fresh-1")), writer.submit(new("x")))
        assert list(again) == [False, True]
    finally:
        await writer.stop()
    assert sorted(str(r[0]) for r in stored_rows(str(db.sqlite_path))) == [
        "fresh-1",
        "fresh-2",
        "old",
        "x",
    ]


async def test_a_failed_batch_fails_its_requests_and_the_writer_keeps_serving(
    db: Database,
) -> None:
    queue = DeliveryQueue(db, lease_seconds=30)
    writer = IntakeWriter(queue, on_commit=lambda n: None)
    writer.start()
    broken = NewDelivery(
        id="broken",
        event=None,  # type: ignore[arg-type]  # violates NOT NULL: the whole statement fails
        action=None,
        installation_id=None,
        repository=None,
        pr_key=None,
        payload="{}",
        needs_handling=True,
    )
    try:
        with pytest.raises(sqlite3.IntegrityError):
            await writer.submit(broken)
        assert await writer.submit(new("after")) is True
    finally:
        await writer.stop()
    assert [r[0] for r in stored_rows(str(db.sqlite_path))] == ["after"]


async def test_the_write_lock_goes_to_urgent_writers_first_and_survives_cancelled_waiters(
    db: Database,
) -> None:
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with db.write():
            order.append("holder")
            await release.wait()

    async def writer(name: str, *, urgent: bool) -> None:
        async with db.write(urgent=urgent):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0.05)
    background = asyncio.create_task(writer("background", urgent=False))
    await asyncio.sleep(0.01)
    cancelled = asyncio.create_task(writer("cancelled", urgent=True))
    await asyncio.sleep(0.01)
    urgent = asyncio.create_task(writer("urgent", urgent=True))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(first, background, urgent), timeout=10)
    assert cancelled.cancelled()
    # The urgent writer overtook the background one that had waited longer; the cancelled one
    # neither ran nor kept anyone waiting; and the lock is free again afterwards.
    assert order == ["holder", "urgent", "background"]
    await asyncio.wait_for(writer("later", urgent=False), timeout=5)
    assert order[-1] == "later"


async def test_a_batch_larger_than_one_statement_takes_is_stored_whole(db: Database) -> None:
    queue = DeliveryQueue(db, lease_seconds=30)
    ids = {f"n{i}" for i in range(2500)}  # 30,000 parameters: more than one statement takes
    assert await queue.insert_batch([new(i) for i in sorted(ids)]) == ids
    assert await queue.insert_batch([new("n1"), new("fresh")]) == {"fresh"}
