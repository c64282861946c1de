"""The durable queue: claiming, leases, retries with backoff, failure, per-PR serialisation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.queue import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Delivery,
    DeliveryQueue,
    IntakeWriter,
    NewDelivery,
    RetryLater,
    WorkerPool,
    backoff_seconds,
)
from app.store import migrate
from app.store.db import Database
from app.store.engine import create_engine
from app.store.tables import deliveries
from app.store.types import utcnow


def new(delivery_id: str, *, pr_key: str | None = None, event: str = "push") -> NewDelivery:
    return NewDelivery(
        id=delivery_id,
        event=event,
        action=None,
        installation_id=1,
        repository="octo/demo",
        pr_key=pr_key,
        payload="{}",
    )


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def queue(engine: AsyncEngine) -> AsyncIterator[DeliveryQueue]:
    db = Database(engine)
    yield DeliveryQueue(db, lease_seconds=30)
    await db.dispose()


def pool(queue: DeliveryQueue, handle: object, **kw: object) -> WorkerPool:
    options: dict[str, object] = {
        "count": 1,
        "max_attempts": 3,
        "retry_base_seconds": 0.0,
        "retry_max_seconds": 0.0,
        "poll_interval": 0.02,
    }
    options.update(kw)
    return WorkerPool(queue, handle, **options)  # type: ignore[arg-type]


async def wait_for_status(queue: DeliveryQueue, delivery_id: str, status: str) -> Delivery:
    for _ in range(500):
        row = await queue.get(delivery_id)
        if row is not None and row.status == status:
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"{delivery_id} never reached {status}: {await queue.get(delivery_id)}")


async def test_insert_batch_dedupes_within_and_across_batches(queue: DeliveryQueue) -> None:
    assert await queue.insert_batch([new("a"), new("b"), new("a")]) == {"a", "b"}
    assert await queue.insert_batch([new("b"), new("c")]) == {"c"}
    assert {d.id for d in await queue.recent()} == {"a", "b", "c"}


async def test_migrations_are_idempotent(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) is not None


async def test_claim_takes_oldest_and_leases_it(queue: DeliveryQueue) -> None:
    await queue.insert_batch([new("first")])
    await queue.insert_batch([new("second")])
    claimed = await queue.claim("w1")
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.attempts) == ("first", RUNNING, 1)
    again = await queue.claim("w2")
    assert again is not None and again.id == "second"
    assert await queue.claim("w3") is None


async def test_expired_lease_is_claimed_again(queue: DeliveryQueue, engine: AsyncEngine) -> None:
    await queue.insert_batch([new("x")])
    assert (await queue.claim("dead-worker")) is not None
    assert await queue.claim("w2") is None
    async with engine.begin() as conn:
        await conn.execute(
            update(deliveries).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    taken = await queue.claim("w2")
    assert taken is not None and taken.id == "x" and taken.attempts == 2


async def test_one_running_delivery_per_pull_request(queue: DeliveryQueue) -> None:
    await queue.insert_batch([new("pr-1", pr_key="octo/demo#1")])
    await queue.insert_batch([new("pr-2", pr_key="octo/demo#1")])
    await queue.insert_batch([new("other", pr_key="octo/demo#2")])
    first = await queue.claim("w1")
    second = await queue.claim("w2")
    assert first is not None and second is not None
    assert (first.id, second.id) == ("pr-1", "other")
    assert await queue.claim("w3") is None
    await queue.complete("pr-1", "w1")
    third = await queue.claim("w3")
    assert third is not None and third.id == "pr-2"


async def test_worker_handles_and_completes(queue: DeliveryQueue) -> None:
    seen: list[str] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery.id)

    workers = pool(queue, handle, count=2)
    workers.start()
    try:
        await queue.insert_batch([new("a"), new("b")])
        workers.notify()
        await wait_for_status(queue, "a", DONE)
        await wait_for_status(queue, "b", DONE)
    finally:
        await workers.stop()
    assert sorted(seen) == ["a", "b"]


async def test_failing_handler_is_retried_then_kept_as_failed(queue: DeliveryQueue) -> None:
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append(delivery.attempts)
        raise ValueError("boom")

    workers = pool(queue, handle, max_attempts=3)
    workers.start()
    try:
        await queue.insert_batch([new("bad")])
        row = await wait_for_status(queue, "bad", FAILED)
    finally:
        await workers.stop()
    assert attempts == [1, 2, 3]
    assert row.attempts == 3
    assert row.last_error == "ValueError: boom"
    assert [d.id for d in await queue.recent(status=FAILED)] == ["bad"]


async def test_failure_then_success_on_retry(queue: DeliveryQueue) -> None:
    calls = 0

    async def handle(delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("transient")

    workers = pool(queue, handle)
    workers.start()
    try:
        await queue.insert_batch([new("flaky")])
        row = await wait_for_status(queue, "flaky", DONE)
    finally:
        await workers.stop()
    assert calls == 2 and row.attempts == 2


async def test_retry_is_scheduled_with_backoff(queue: DeliveryQueue) -> None:
    async def handle(delivery: Delivery) -> None:
        raise RuntimeError("down")

    workers = pool(queue, handle, retry_base_seconds=120.0, retry_max_seconds=600.0)
    await queue.insert_batch([new("later")])
    claimed = await queue.claim(workers.instance)
    assert claimed is not None
    before = utcnow()
    await workers.process(claimed, workers.instance)
    row = await queue.get("later")
    assert row is not None and row.status == QUEUED
    assert timedelta(seconds=110) < row.next_attempt_at - before < timedelta(seconds=130)
    assert await queue.claim("other") is None  # not due yet


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, base=2, cap=20) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 16, 20]


async def test_retry_later_reschedules_at_the_given_time(queue: DeliveryQueue) -> None:
    at = utcnow() + timedelta(minutes=10)

    async def handle(delivery: Delivery) -> None:
        raise RetryLater(at, "rate limited")

    workers = pool(queue, handle)
    await queue.insert_batch([new("rl")])
    claimed = await queue.claim(workers.instance)
    assert claimed is not None
    await workers.process(claimed, workers.instance)
    row = await queue.get("rl")
    assert row is not None
    assert row.status == QUEUED and row.last_error == "rate limited"
    assert abs((row.next_attempt_at - at).total_seconds()) < 0.01


async def test_delivery_abandoned_after_too_many_lost_leases(queue: DeliveryQueue) -> None:
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.id)

    workers = pool(queue, handle, max_attempts=2)
    await queue.insert_batch([new("poison")])
    async with queue.db.write() as conn:
        await conn.execute(update(deliveries).values(attempts=2))
    claimed = await queue.claim(workers.instance)
    assert claimed is not None and claimed.attempts == 3
    await workers.process(claimed, workers.instance)
    row = await queue.get("poison")
    assert row is not None and row.status == FAILED
    assert handled == []


async def test_requeue_resets_a_failed_delivery(queue: DeliveryQueue) -> None:
    await queue.insert_batch([new("f")])
    claimed = await queue.claim("w")
    assert claimed is not None
    await queue.fail("f", "w", "broken")
    assert await queue.requeue("f")
    row = await queue.get("f")
    assert row is not None and (row.status, row.attempts, row.last_error) == (QUEUED, 0, None)


async def test_intake_writer_group_commits_concurrent_submissions(queue: DeliveryQueue) -> None:
    commits = 0

    def on_commit(_count: int) -> None:
        nonlocal commits
        commits += 1

    writer = IntakeWriter(queue, on_commit=on_commit)
    writer.start()
    try:
        results = await asyncio.gather(*(writer.submit(new(f"d{i % 40}")) for i in range(80)))
    finally:
        await writer.stop()
    assert results.count(True) == 40
    assert len(await queue.recent(limit=100)) == 40
    assert 1 <= commits < 80


async def test_stop_gives_unfinished_work_back_to_the_queue_at_once(
    queue: DeliveryQueue,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    workers = pool(queue, handle)
    workers.start()
    await queue.insert_batch([new("slow")])
    workers.notify()
    await asyncio.wait_for(started.wait(), 5)
    await workers.stop(grace_seconds=0.05)
    assert cancelled.is_set()
    row = await queue.get("slow")
    # Queued again, claimable by anyone now (no lease to wait out), its attempt not counted.
    assert row is not None and row.status == QUEUED
    assert row.lease_expires_at is None and row.attempts == 0
    again = await queue.claim("another-replica")
    assert again is not None and again.id == "slow" and again.attempts == 1


async def test_stop_lets_work_in_hand_finish_within_the_grace_period(
    queue: DeliveryQueue,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    claimed_during_stop: list[str] = []

    async def handle(delivery: Delivery) -> None:
        if delivery.id == "first":
            started.set()
            await release.wait()
        else:
            claimed_during_stop.append(delivery.id)

    workers = pool(queue, handle)
    workers.start()
    await queue.insert_batch([new("first")])
    workers.notify()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(workers.stop(grace_seconds=30))
    await asyncio.sleep(0.05)
    await queue.insert_batch([new("second")])
    workers.notify()
    release.set()
    await asyncio.wait_for(stopping, 10)
    first, second = await queue.get("first"), await queue.get("second")
    assert first is not None and first.status == DONE
    # A stopping pool claims nothing new.
    assert second is not None and second.status == QUEUED and claimed_during_stop == []


async def test_many_deliveries_are_handled_at_once_up_to_the_pools_count(
    queue: DeliveryQueue,
) -> None:
    gate = asyncio.Event()
    in_hand: list[str] = []
    most = 0

    async def handle(delivery: Delivery) -> None:
        nonlocal most
        in_hand.append(delivery.id)
        most = max(most, len(in_hand))
        await gate.wait()
        in_hand.remove(delivery.id)

    workers = pool(queue, handle, count=5)
    workers.start()
    try:
        await queue.insert_batch([new(f"d{i}") for i in range(8)])
        workers.notify(8)
        for _ in range(500):
            if len(in_hand) == 5:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # room for a sixth, were the bound not kept
        assert len(in_hand) == 5 and workers.in_hand == 5
        gate.set()
        for i in range(8):
            await wait_for_status(queue, f"d{i}", DONE)
    finally:
        await workers.stop()
    assert most == 5
