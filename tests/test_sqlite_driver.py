"""The SQLite driver shim: each statement is one trip to aiosqlite's thread, with the same
results as SQLAlchemy's own shim, and a rollback is sent only when a transaction is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.store.engine import create_engine
from app.store.sqlite_driver import OneTripConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("size", Integer, nullable=False, default=0),
)


class _CountingQueue:
    """Stands in front of aiosqlite's job queue and counts the calls sent to its thread."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.trips = 0

    def put_nowait(self, item: Any) -> None:
        self.trips += 1
        self._queue.put_nowait(item)


@pytest.fixture
async def engines(tmp_path: Any) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """The app's engine (the shim) and SQLAlchemy's stock aiosqlite engine, on two files."""
    ours = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ours.db'}")
    stock = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stock.db'}")
    for engine in (ours, stock):
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    try:
        yield ours, stock
    finally:
        await ours.dispose()
        await stock.dispose()


async def _counter(conn: AsyncConnection) -> _CountingQueue:
    raw = await conn.get_raw_connection()
    adapted = raw.dbapi_connection
    assert isinstance(adapted, OneTripConnection)
    driver = adapted._connection
    counting = _CountingQueue(driver._tx)
    driver._tx = counting
    return counting


async def _exercise(engine: AsyncEngine) -> list[Any]:
    """Every kind of statement the stores use, and what each gives back."""
    seen: list[Any] = []
    async with engine.begin() as conn:
        result = await conn.execute(insert(items).values(name="a", size=1))
        seen.append(("insert", result.rowcount, result.inserted_primary_key))
        result = await conn.execute(insert(items), [{"name": "b"}, {"name": "c", "size": 3}])
        seen.append(("executemany", result.rowcount))
        result = await conn.execute(
            insert(items).values(name="d", size=4).returning(items.c.id, items.c.size)
        )
        seen.append(("returning", result.all()))
        result = await conn.execute(update(items).where(items.c.size < 3).values(size=9))
        seen.append(("update", result.rowcount))
        result = await conn.execute(update(items).where(items.c.name == "nobody").values(size=1))
        seen.append(("update none", result.rowcount))
    async with engine.connect() as conn:
        seen.append(("rows", (await conn.execute(select(items).order_by(items.c.id))).all()))
        seen.append(("scalar", await conn.scalar(select(func.count()).select_from(items))))
        seen.append(("first", (await conn.execute(select(items.c.name).limit(1))).first()))
        seen.append(("empty", (await conn.execute(select(items).where(items.c.id < 0))).all()))
        streamed = [row async for row in await conn.stream(select(items.c.name))]
        seen.append(("stream", streamed))
    with pytest.raises(sqlalchemy.exc.IntegrityError) as raised:
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="a"))
    seen.append(("unique", type(raised.value.orig).__name__))
    return seen


async def test_every_statement_gives_what_sqlalchemys_own_driver_gives(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    ours, stock = engines
    assert await _exercise(ours) == await _exercise(stock)


async def test_a_statement_is_one_trip_and_a_rollback_with_nothing_open_none(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    ours, _ = engines
    async with ours.begin() as conn:
        await conn.execute(insert(items), [{"name": str(i)} for i in range(3)])

    async with ours.connect() as conn:
        counting = await _counter(conn)
        rows = (await conn.execute(select(items.c.name).order_by(items.c.id))).all()
        assert [r.name for r in rows] == ["0", "1", "2"]
        assert counting.trips == 1  # open, execute, fetch and close the cursor: one call
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is not None
        cursor = raw.dbapi_connection.cursor()  # a cursor alone is no trip
        assert cursor.nextset() is None
        cursor.setinputsizes([])
        cursor.close()
        assert counting.trips == 1
    # The read ended (and the pool took the connection back) without a rollback sent.
    assert counting.trips == 1

    async with ours.begin() as conn:
        counting = await _counter(conn)
        result = await conn.execute(update(items).where(items.c.name == "1").values(size=5))
        assert result.rowcount == 1
        assert counting.trips == 1
    assert counting.trips == 2  # the commit; the pool's reset after it sends nothing


async def test_an_interrupted_write_is_rolled_back_and_frees_the_file(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """The rollback skip never skips a real transaction: an error inside a write undoes it
    and releases SQLite's write lock, so the next writer goes ahead at once."""
    ours, _ = engines
    counters: list[_CountingQueue] = []

    async def failing_write() -> None:
        async with ours.begin() as conn:
            counters.append(await _counter(conn))
            await conn.execute(insert(items).values(name="undone"))
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        await failing_write()
    assert counters[0].trips == 2  # the insert and its rollback

    async def write() -> None:
        async with ours.begin() as conn:
            await conn.execute(insert(items).values(name="next"))

    await asyncio.wait_for(write(), timeout=10)
    async with ours.connect() as conn:
        names = (await conn.execute(select(items.c.name))).scalars().all()
    assert names == ["next"]
