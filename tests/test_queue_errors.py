"""A handler's error that quotes unstorable text still ends as the delivery's stored error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from app.queue import FAILED, QUEUED, Delivery, DeliveryQueue, RetryLater, WorkerPool
from app.store import migrate
from app.store.db import Database
from app.store.text import REPLACEMENT, storable
from app.store.types import utcnow
from tests.test_queue import new


@pytest.fixture
async def queue(db_url: str) -> AsyncIterator[DeliveryQueue]:
    db = Database.from_url(db_url)
    await migrate.upgrade(db.engine)
    yield DeliveryQueue(db, lease_seconds=30)
    await db.dispose()


def pool_for(queue: DeliveryQueue, error: Exception) -> WorkerPool:
    async def handle(delivery: Delivery) -> None:
        raise error

    return WorkerPool(
        queue,
        handle,
        count=0,
        max_attempts=1,
        retry_base_seconds=0,
        retry_max_seconds=0,
        poll_interval=1,
    )


def test_storable_replaces_only_nul_and_lone_surrogates() -> None:
    assert storable("octo/dé\x00mo\ud800🙂") == f"octo/dé{REPLACEMENT}mo{REPLACEMENT}🙂"
    assert storable("plain text") == "plain text"


async def test_an_error_with_a_nul_and_a_surrogate_is_stored_cleaned(
    queue: DeliveryQueue,
) -> None:
    await queue.insert_batch([new("d-1")])
    row = await pool_for(queue, ValueError("no repository 'octo/\x00\ud800'")).run_one("d-1")
    assert row is not None and row.status == FAILED
    assert row.last_error == f"ValueError: no repository 'octo/{REPLACEMENT * 2}'"


async def test_an_ordinary_error_is_stored_as_it_was(queue: DeliveryQueue) -> None:
    await queue.insert_batch([new("d-1")])
    row = await pool_for(queue, ValueError("boom")).run_one("d-1")
    assert row is not None and (row.status, row.last_error) == (FAILED, "ValueError: boom")


async def test_a_retry_reason_is_stored_cleaned(queue: DeliveryQueue) -> None:
    await queue.insert_batch([new("d-1")])
    later = RetryLater(utcnow() + timedelta(minutes=5), "rate limited on octo/\x00")
    row = await pool_for(queue, later).run_one("d-1")
    assert row is not None and row.status == QUEUED
    assert row.last_error == f"rate limited on octo/{REPLACEMENT}"
