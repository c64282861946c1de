"""Job rows on SQLite and PostgreSQL: their life, and which ones a start fails as interrupted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from app.api.jobs import FAILED, INTERRUPTED, QUEUED, RUNNING, SUCCEEDED, JobStore
from app.store import migrate
from app.store.db import Database


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(db_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


async def _job(store: JobStore, runner: str = "r1") -> str:
    row = await store.create(
        repository="octo/demo",
        ref="main",
        sandbox="read-only",
        caller="oidc:repo:octo/demo:ref:refs/heads/main",
        caller_owner="octo",
        runner=runner,
    )
    return row.id


async def test_a_job_goes_from_queued_to_its_end_once(db: Database) -> None:
    clock = Clock()
    store = JobStore(db, clock=clock)
    job_id = await _job(store)
    row = await store.get(job_id)
    assert row is not None and (row.status, row.caller_owner, row.ref) == (QUEUED, "octo", "main")
    assert await store.start(job_id)
    assert not await store.start(job_id)
    clock.now += timedelta(seconds=5)
    done = await store.finish(job_id, status=SUCCEEDED, exit_code=0, output="ok", diff="d")
    assert done and not await store.finish(job_id, status=FAILED, error="late")
    row = await store.get(job_id)
    assert row is not None
    assert (row.status, row.exit_code, row.output, row.diff, row.error) == (
        SUCCEEDED,
        0,
        "ok",
        "d",
        None,
    )
    assert row.finished_at == clock.now
    assert await store.get("no-such-job") is None


async def test_a_start_fails_the_jobs_no_live_process_holds(db: Database) -> None:
    clock = Clock()
    store = JobStore(db, clock=clock)
    stale, alive, ended = await _job(store, "dead"), await _job(store, "alive"), await _job(store)
    await store.start(stale)
    await store.start(alive)
    await store.finish(ended, status=SUCCEEDED)
    clock.now += timedelta(minutes=10)
    await store.heartbeat([alive])
    # PostgreSQL: only heartbeats older than a live runner leaves them.
    assert await store.interrupt(stale_before=clock.now - timedelta(minutes=1)) == [stale]
    row = await store.get(alive)
    assert row is not None and row.status == RUNNING
    # SQLite: one process owns the file, so every active job left is an orphan.
    assert await store.interrupt() == [alive]
    for job_id in (stale, alive):
        row = await store.get(job_id)
        assert row is not None and (row.status, row.error) == (FAILED, INTERRUPTED)
    row = await store.get(ended)
    assert row is not None and row.status == SUCCEEDED
