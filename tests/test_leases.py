"""Leases that hold: a handler never outlives its lease, and one PR never runs twice at once.

The handlers here are real router callbacks, run by the queue's own ``Dispatcher``; the faults
are made at the database: another connection takes the lease, a trigger refuses renewals, a lock
holds them up. Time is only waited for, never measured: what each test asserts is who ran the
delivery, how often, and whether two runs ever overlapped.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from gidgethub import routing, sansio
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.handlers import Dispatcher
from app.queue import (
    DONE,
    PR_LOCK_CLASS,
    RUNNING,
    Delivery,
    DeliveryQueue,
    NewDelivery,
    WorkerPool,
    pr_lock_key,
)
from app.store import migrate
from app.store.db import Database
from app.store.engine import create_engine
from app.store.tables import deliveries
from app.store.types import utcnow

WAIT_S = 30.0  # how long a test waits for something that must happen; never a measurement


def new(delivery_id: str, *, pr_key: str | None = None) -> NewDelivery:
    return NewDelivery(
        id=delivery_id,
        event="push",
        action=None,
        installation_id=None,  # no GitHub client is needed by the probe
        repository="octo/demo",
        pr_key=pr_key,
        payload="{}",
    )


class Probe:
    """A ``push`` handler on a gidgethub router that counts its runs and how many overlap.

    The first run blocks until it is cancelled (it stands for a long review); later runs
    return at once.
    """

    def __init__(self) -> None:
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        self.cancelled = 0
        self.entered = asyncio.Event()
        self.stopped = asyncio.Event()
        self.release = asyncio.Event()
        self.router = routing.Router()
        self.router.add(self._on_push, "push")

    async def _on_push(self, event: sansio.Event, gh: Any, *, ctx: Any) -> None:
        self.runs += 1
        first = self.runs == 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if first:
                self.entered.set()
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            self.stopped.set()
            raise
        finally:
            self.running -= 1


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@asynccontextmanager
async def workers_for(
    queue: DeliveryQueue, probe: Probe, *, count: int = 1, **kw: Any
) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(
        queue,
        Dispatcher(probe.router, services=None),
        count=count,
        max_attempts=5,
        retry_base_seconds=0.0,
        retry_max_seconds=0.0,
        poll_interval=0.02,
        **kw,
    )
    pool.start()
    try:
        yield pool
    finally:
        await pool.stop(grace_seconds=0)


async def lease_row(engine: AsyncEngine, delivery_id: str) -> Any:
    async with engine.connect() as conn:
        query = select(
            deliveries.c.status,
            deliveries.c.leased_by,
            deliveries.c.attempts,
            deliveries.c.lease_expires_at,
            deliveries.c.last_error,
        ).where(deliveries.c.id == delivery_id)
        return (await conn.execute(query)).one()


async def wait_status(queue: DeliveryQueue, delivery_id: str, status: str) -> Delivery:
    async with asyncio.timeout(WAIT_S):
        while True:
            row = await queue.get(delivery_id)
            if row is not None and row.status == status:
                return row
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------- leases


async def test_a_taken_lease_cancels_the_handler_and_records_nothing(
    engine: AsyncEngine,
) -> None:
    db = Database(engine)
    queue = DeliveryQueue(db, lease_seconds=0.6)
    probe = Probe()
    async with workers_for(queue, probe) as pool:
        await queue.insert_batch([new("d1")])
        pool.notify()
        await asyncio.wait_for(probe.entered.wait(), WAIT_S)
        # Another worker has the delivery now (as after an expiry and a claim), for an hour.
        async with db.write() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == "d1")
                .values(leased_by="thief", lease_expires_at=utcnow() + timedelta(hours=1))
            )
        await asyncio.wait_for(probe.stopped.wait(), WAIT_S)
        row = await lease_row(engine, "d1")
    await db.dispose()
    assert probe.cancelled == 1
    assert probe.runs == 1
    # The worker wrote no outcome over the new holder's lease, and did not take it back.
    assert (row.status, row.leased_by, row.attempts, row.last_error) == (
        RUNNING,
        "thief",
        1,
        None,
    )


async def test_refused_renewals_stop_the_handler_before_another_worker_can_claim(
    engine: AsyncEngine,
) -> None:
    db = Database(engine)
    queue = DeliveryQueue(db, lease_seconds=1.0)
    probe = Probe()
    async with workers_for(queue, probe, count=2) as pool:
        await queue.insert_batch([new("d1")])
        pool.notify()
        await asyncio.wait_for(probe.entered.wait(), WAIT_S)
        async with refusing_renewals(db):
            # Renewals fail; the handler is stopped while the lease it holds still runs.
            await asyncio.wait_for(probe.stopped.wait(), WAIT_S)
            held = await lease_row(engine, "d1")
        done = await wait_status(queue, "d1", DONE)
    await db.dispose()
    assert held.status == RUNNING and held.attempts == 1
    assert probe.cancelled == 1
    # Handled again only after the lease ran out, and never by two workers at once.
    assert probe.runs == 2
    assert probe.most_at_once == 1
    assert done.attempts == 2


async def test_a_renewal_held_up_by_a_lock_stops_the_handler_before_the_lease_ends(
    engine: AsyncEngine, db_url: str
) -> None:
    db = Database(engine)
    queue = DeliveryQueue(db, lease_seconds=1.0)
    probe = Probe()
    async with workers_for(queue, probe, count=2) as pool:
        await queue.insert_batch([new("d1")])
        pool.notify()
        await asyncio.wait_for(probe.entered.wait(), WAIT_S)
        async with locked_row(db_url, "d1"):
            await asyncio.wait_for(probe.stopped.wait(), WAIT_S)
            held = await lease_row(engine, "d1")
        done = await wait_status(queue, "d1", DONE)
    await db.dispose()
    assert held.status == RUNNING and held.attempts == 1
    assert probe.cancelled == 1
    assert probe.runs == 2
    assert probe.most_at_once == 1
    assert done.attempts == 2


async def test_a_worker_whose_clock_says_the_lease_ran_out_stops_at_once(
    engine: AsyncEngine,
) -> None:
    """A process that was suspended past its lease must not carry on when it wakes."""
    db = Database(engine)
    queue = DeliveryQueue(db, lease_seconds=300)
    probe = Probe()
    # The keeper's first reading, then one after a long suspension.
    readings: Iterator[float] = itertools.chain([0.0], itertools.repeat(10_000.0))
    clock: Callable[[], float] = readings.__next__
    async with workers_for(queue, probe, clock=clock) as pool:
        await queue.insert_batch([new("d1")])
        pool.notify()
        await asyncio.wait_for(probe.stopped.wait(), WAIT_S)
        row = await lease_row(engine, "d1")
    await db.dispose()
    assert probe.runs == 1 and probe.cancelled == 1
    assert (row.status, row.attempts, row.last_error) == (RUNNING, 1, None)


async def test_a_renewed_lease_outlives_several_lease_periods(engine: AsyncEngine) -> None:
    db = Database(engine)
    # Lease periods long enough that a renewal is never late on a loaded machine.
    queue = DeliveryQueue(db, lease_seconds=1.2)
    probe = Probe()
    async with workers_for(queue, probe, count=2) as pool:
        await queue.insert_batch([new("d1")])
        pool.notify()
        await asyncio.wait_for(probe.entered.wait(), WAIT_S)
        first = (await lease_row(engine, "d1")).lease_expires_at
        async with asyncio.timeout(WAIT_S):
            while (await lease_row(engine, "d1")).lease_expires_at < first + timedelta(seconds=3.0):
                await asyncio.sleep(0.05)
        probe.release.set()
        done = await wait_status(queue, "d1", DONE)
    await db.dispose()
    assert probe.runs == 1 and probe.cancelled == 0
    assert done.attempts == 1


@asynccontextmanager
async def refusing_renewals(db: Database) -> AsyncIterator[None]:
    """A trigger that fails every renewal (a running row updated without a new attempt)."""
    if db.is_postgres:
        create = [
            "CREATE FUNCTION refuse_renewal() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'renewals refused'; END $$",
            "CREATE TRIGGER refuse_renewal BEFORE UPDATE ON deliveries FOR EACH ROW "
            "WHEN (OLD.status = 'running' AND NEW.status = 'running' "
            "AND NEW.attempts = OLD.attempts) EXECUTE FUNCTION refuse_renewal()",
        ]
        drop = [
            "DROP TRIGGER refuse_renewal ON deliveries",
            "DROP FUNCTION refuse_renewal()",
        ]
    else:
        create = [
            "CREATE TRIGGER refuse_renewal BEFORE UPDATE ON deliveries "
            "WHEN OLD.status = 'running' AND NEW.status = 'running' "
            "AND NEW.attempts = OLD.attempts "
            "BEGIN SELECT RAISE(ABORT, 'renewals refused'); END"
        ]
        drop = ["DROP TRIGGER refuse_renewal"]
    async with db.write() as conn:
        for statement in create:
            await conn.execute(text(statement))
    try:
        yield
    finally:
        async with db.write() as conn:
            for statement in drop:
                await conn.execute(text(statement))


@asynccontextmanager
async def locked_row(db_url: str, delivery_id: str) -> AsyncIterator[None]:
    """Another connection holds a lock that the renewal of ``delivery_id`` must wait for: the
    row's lock on PostgreSQL, the file's write lock on SQLite."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        conn = sqlite3.connect(url.database, isolation_level=None, timeout=WAIT_S)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    other = create_engine(db_url)
    try:
        async with other.connect() as lock_conn:
            await lock_conn.execute(
                select(deliveries.c.id).where(deliveries.c.id == delivery_id).with_for_update()
            )
            yield
            await lock_conn.rollback()
    finally:
        await other.dispose()


# ---------------------------------------------------------------------------------- per PR


async def running_per_pr(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(deliveries.c.pr_key, func.count())
            .where(deliveries.c.status == RUNNING, deliveries.c.pr_key.is_not(None))
            .group_by(deliveries.c.pr_key)
        )
        return {key: int(n) for key, n in rows}


async def test_racing_claimers_never_run_two_deliveries_of_one_pr(
    engine: AsyncEngine, db_url: str
) -> None:
    # Separate engines: every claimer has connections of its own, as replicas would.
    claimers = 6
    engines = [create_engine(db_url) for _ in range(3)]
    queues = [DeliveryQueue(Database(e), lease_seconds=60) for e in engines]
    prs = {"octo/demo#1": 8, "octo/demo#2": 3, "octo/demo#3": 3, "octo/demo#4": 2}
    batch = [new(f"{key}-{n}", pr_key=key) for key, count in prs.items() for n in range(count)]
    batch += [new(f"push-{n}") for n in range(4)]  # no PR: never serialised
    await queues[0].insert_batch(batch)
    handled: list[str] = []
    parallel_rounds = 0
    try:
        for round_ in range(40):
            claimed = await asyncio.gather(
                *(queues[i % len(queues)].claim(f"w{i}") for i in range(claimers))
            )
            taken = [d for d in claimed if d is not None]
            keys = [d.pr_key for d in taken if d.pr_key is not None]
            assert len(keys) == len(set(keys)), f"round {round_}: {keys}"
            assert all(n == 1 for n in (await running_per_pr(engine)).values())
            if len(set(keys)) > 1:
                parallel_rounds += 1
            for worker, delivery in enumerate(claimed):
                if delivery is not None:
                    handled.append(delivery.id)
                    await queues[0].complete(delivery.id, f"w{worker}")
            if not taken:
                break
    finally:
        for e in engines:
            await e.dispose()
    # Every delivery was handled exactly once, and different PRs were claimed side by side.
    assert sorted(handled) == sorted(item.id for item in batch)
    assert parallel_rounds >= 2


async def test_a_claim_passes_over_a_pr_that_another_claimer_is_taking(
    engine: AsyncEngine, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's advisory locks; SQLite claims one at a time")
    db = Database(engine)
    queue = DeliveryQueue(db, lease_seconds=60)
    await queue.insert_batch([new("a-1", pr_key="octo/demo#1")])
    await queue.insert_batch([new("b-1", pr_key="octo/demo#2")])
    # A claimer in the middle of claiming PR #1 holds its lock (and the oldest row).
    async with engine.connect() as other:
        await other.execute(
            text("SELECT pg_advisory_xact_lock(:cls, :key)"),
            {"cls": PR_LOCK_CLASS, "key": pr_lock_key("octo/demo#1")},
        )
        first = await asyncio.wait_for(queue.claim("w1"), WAIT_S)
        await other.rollback()
    second = await queue.claim("w2")
    await db.dispose()
    # Not blocked by the other PR's claim, and that PR is taken once its claimer lets go.
    assert first is not None and first.id == "b-1"
    assert second is not None and second.id == "a-1"
    assert (first.status, second.status) == (RUNNING, RUNNING)
