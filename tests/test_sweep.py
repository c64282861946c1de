"""The sweepers: stale budget reservations released, old finished deliveries purged, the timer
they run on, and the server starting and stopping them. Database tests run on every backend;
rows are given their age through the store's own clocks or direct SQL, never by waiting."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.queue import DONE, FAILED, QUEUED, RUNNING, DeliveryQueue, NewDelivery
from app.quota import QuotaLedger, Refusal, Reservation
from app.repo_config import QuotaConfig
from app.server import SWEEPERS, create_app
from app.store import migrate
from app.store.db import Database
from app.store.tables import deliveries, reservations
from app.store.types import utcnow
from app.sweep.deliveries import DeliveryPurger
from app.sweep.periodic import Periodic
from app.sweep.reservations import ReservationSweeper
from app.sweep.sweepers import build_sweepers
from tests.conftest import WEBHOOK_SECRET, SettingsFactory

ROOT = Path(__file__).resolve().parents[1]
REPO = "octo/demo"
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
NO_BUDGET = QuotaConfig()
WAIT_S = 30.0


class Clock:
    """A settable clock: tests move time, never sleep."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(db_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


def granted(result: Reservation | Refusal) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


async def reservation_rows(db: Database) -> dict[int, tuple[bool, float | None]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(reservations.c.id, reservations.c.settled, reservations.c.actual_usd)
        )
        return {row.id: (bool(row.settled), row.actual_usd) for row in rows}


# ---------------------------------------------------------------------------------- reservations


async def test_stale_reservations_are_released_at_what_the_ledger_recorded(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(NOW - timedelta(hours=2))
    quota = QuotaLedger(db, clock=clock)
    crashed_mid_review = granted(
        await quota.reserve(repository=REPO, pr_number=7, amount_usd=1.0, budget=NO_BUDGET)
    )
    crashed_before_calls = granted(
        await quota.reserve(repository=REPO, pr_number=8, amount_usd=0.5, budget=NO_BUDGET)
    )
    settled = granted(
        await quota.reserve(repository=REPO, pr_number=9, amount_usd=0.4, budget=NO_BUDGET)
    )
    await quota.settle(settled, actual_usd=0.3)
    for cost, outcome in ((0.125, "ok"), (0.0625, "error"), (None, "ok"), (None, "refused")):
        await quota.record_call(
            repository=REPO,
            pr_number=7,
            installation_id=1,
            delivery_id="d7",
            provider="anthropic",
            model="claude-sonnet-4-6",
            cost_usd=cost,
            outcome=outcome,
            reservation_id=crashed_mid_review.id,
        )
    clock.now = NOW - timedelta(minutes=10)
    in_flight = granted(
        await quota.reserve(repository=REPO, pr_number=10, amount_usd=2.0, budget=NO_BUDGET)
    )
    clock.now = NOW
    before = (await quota.spend(REPO)).daily.spent_usd

    sweeper = ReservationSweeper(quota, timeout=timedelta(seconds=1800))
    with caplog.at_level(logging.WARNING, logger="app.sweep.reservations"):
        released = await sweeper.sweep_once()

    assert [(r.id, r.amount_usd, r.recorded_usd) for r in released] == [
        (crashed_mid_review.id, 1.0, 0.1875),
        (crashed_before_calls.id, 0.5, 0.0),
    ]
    rows = await reservation_rows(db)
    assert rows[crashed_mid_review.id] == (True, 0.1875)
    assert rows[crashed_before_calls.id] == (True, 0.0)
    assert rows[settled.id] == (True, 0.3)  # settled by its review: untouched
    assert rows[in_flight.id] == (False, None)  # a review still running keeps its hold
    # The budget gets back what was held and never billed: 1.0 + 0.5 held, 0.1875 billed.
    after = (await quota.spend(REPO)).daily.spent_usd
    assert before - after == pytest.approx(1.0 + 0.5 - 0.1875)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2
    assert f"released reservation {crashed_mid_review.id} of {REPO} (PR 7)" in logged[0]
    assert "$1.00 held, $0.19 recorded as spent" in logged[0]
    assert f"released reservation {crashed_before_calls.id}" in logged[1]
    # Nothing is released twice, and a late settlement by the review changes nothing.
    assert await sweeper.sweep_once() == []
    assert not await quota.settle(crashed_before_calls, actual_usd=0.2)


async def test_replicas_sweeping_together_release_each_reservation_once(
    db: Database, db_url: str
) -> None:
    old = Clock(NOW - timedelta(days=1))
    quota = QuotaLedger(db, clock=old)
    stale = [
        granted(await quota.reserve(repository=REPO, pr_number=n, amount_usd=0.1, budget=NO_BUDGET))
        for n in range(7)
    ]
    others = [Database.from_url(db_url) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(
                QuotaLedger(other, clock=Clock()).release_stale(
                    older_than=timedelta(hours=1), batch_size=2
                )
                for other in others
            )
        )
    finally:
        for other in others:
            await other.dispose()
    released = [item.id for result in results for item in result]
    assert sorted(released) == sorted(r.id for r in stale)  # each once, in batches of two
    assert all(settled for settled, _ in (await reservation_rows(db)).values())


# ---------------------------------------------------------------------------------- deliveries


def new(delivery_id: str) -> NewDelivery:
    return NewDelivery(delivery_id, "push", None, 1, REPO, None, "{}")


async def seed_deliveries(
    db: Database, rows: Mapping[str, tuple[str, float, float | None]], *, now: datetime = NOW
) -> None:
    """Deliveries by id: (status, received this many days before ``now``, finished days before)."""
    queue = DeliveryQueue(db, lease_seconds=60)
    await queue.insert_batch([new(delivery_id) for delivery_id in rows])
    async with db.write() as conn:
        for delivery_id, (status, received, finished) in rows.items():
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(
                    status=status,
                    received_at=now - timedelta(days=received),
                    finished_at=None if finished is None else now - timedelta(days=finished),
                )
            )


async def finished_days_ago(db: Database, delivery_id: str, days: float) -> None:
    """A ``done`` delivery received and finished ``days`` before the real now."""
    await DeliveryQueue(db, lease_seconds=60).insert_batch([new(delivery_id)])
    at = utcnow() - timedelta(days=days)
    async with db.write() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(status=DONE, received_at=at, finished_at=at)
        )


async def delivery_ids(db: Database) -> set[str]:
    async with db.read() as conn:
        return set((await conn.execute(select(deliveries.c.id))).scalars())


def count_deletes(engine: AsyncEngine) -> list[int]:
    """The rows each DELETE of the deliveries table removed, as the database reported them."""
    counts: list[int] = []

    def after(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM DELIVERIES"):
            counts.append(cursor.rowcount)

    event.listen(engine.sync_engine, "after_cursor_execute", after)
    return counts


SEEDED: dict[str, tuple[str, float, float | None]] = {
    "done-old-1": (DONE, 20, 20),
    "done-old-2": (DONE, 30, 29),
    "done-old-3": (DONE, 16, 15),
    "done-old-4": (DONE, 400, 400),
    "done-old-5": (DONE, 15, 14.5),
    "done-recent": (DONE, 2, 2),
    "done-replayed-lately": (DONE, 20, 1),
    "failed-old": (FAILED, 20, 20),
    "failed-recent": (FAILED, 1, 1),
    "queued-old": (QUEUED, 20, None),
    "running-old": (RUNNING, 20, None),
}


async def test_done_deliveries_past_retention_are_purged_in_batches(db: Database) -> None:
    await seed_deliveries(db, SEEDED)
    deletes = count_deletes(db.engine)
    purger = DeliveryPurger(
        DeliveryQueue(db, lease_seconds=60),
        retention=timedelta(days=14),
        clock=Clock(),
        batch_size=2,
    )
    assert await purger.sweep_once() == 5
    assert await delivery_ids(db) == {
        "done-recent",
        "done-replayed-lately",
        "failed-old",
        "failed-recent",
        "queued-old",
        "running-old",
    }
    assert deletes == [2, 2, 1]  # no transaction deleted more than a batch
    assert await purger.sweep_once() == 0


async def test_failed_deliveries_are_purged_only_when_asked(db: Database) -> None:
    await seed_deliveries(db, SEEDED)
    queue = DeliveryQueue(db, lease_seconds=60)
    assert await queue.purge(FAILED, finished_before=NOW - timedelta(days=7)) == 1
    assert "failed-old" not in await delivery_ids(db)
    assert await queue.purge(FAILED, finished_before=None) == 1
    remaining = await delivery_ids(db)
    assert not any(name.startswith("failed") for name in remaining)
    assert {"done-old-1", "queued-old", "running-old"} <= remaining
    with pytest.raises(ValueError, match="only finished deliveries"):
        await queue.purge(RUNNING, finished_before=None)


def run_cli(*args: str, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL"))
    }
    env.update(DATABASE_URL=db_url, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_purges_failed_deliveries_by_hand(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    # Ages relative to the CLI's own clock: it runs now, not at NOW.
    await seed_deliveries(db, SEEDED, now=utcnow())
    misuse = run_cli("deliveries", "--older-than", "7", db_url=db_url, cwd=tmp_path)
    assert misuse.returncode == 2 and "--older-than goes with --purge-failed" in misuse.stderr

    older = run_cli(
        "deliveries", "--purge-failed", "--older-than", "7", db_url=db_url, cwd=tmp_path
    )
    assert older.returncode == 0, older.stderr
    assert older.stdout.strip() == "purged 1 failed delivery finished more than 7 days ago"
    assert {"failed-old"} & await delivery_ids(db) == set()
    assert "failed-recent" in await delivery_ids(db)

    every = run_cli("deliveries", "--purge-failed", db_url=db_url, cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert every.stdout.strip() == "purged 1 failed delivery"
    remaining = await delivery_ids(db)
    assert len(remaining) == len(SEEDED) - 2  # nothing but failed deliveries was touched


async def test_cli_sweep_runs_every_sweeper_once(db: Database, db_url: str, tmp_path: Path) -> None:
    quota = QuotaLedger(db, clock=lambda: utcnow() - timedelta(hours=2))
    await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.5, budget=NO_BUDGET)
    await finished_days_ago(db, "old", 30)
    await DeliveryQueue(db, lease_seconds=60).insert_batch([new("new")])
    result = run_cli("sweep", db_url=db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "released 1 stale budget reservations",
        "purged 1 done deliveries",
    ]
    assert await delivery_ids(db) == {"new"}
    assert all(settled for settled, _ in (await reservation_rows(db)).values())


# ---------------------------------------------------------------------------------- the timer


class Ticks:
    """A ``sleep`` the test steps: each call records its interval and waits for a tick."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._tick = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.waiting.set()
        await self._tick.wait()
        self._tick.clear()

    async def tick(self) -> None:
        """Let the sleeping timer go on, and wait until it sleeps again."""
        self.waiting.clear()
        self._tick.set()
        await asyncio.wait_for(self.waiting.wait(), WAIT_S)


async def test_a_timer_sweeps_at_start_and_then_every_interval_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[str] = ["ok", "fail", "ok"]
    done: list[str] = []

    async def sweep() -> None:
        outcome = outcomes.pop(0)
        done.append(outcome)
        if outcome == "fail":
            raise RuntimeError("database is down")

    ticks = Ticks()
    timer = Periodic("test", sweep, interval=42.0, sleep=ticks)
    timer.start()
    assert timer.task is not None and timer.task.get_name() == "sweep:test"
    await asyncio.wait_for(ticks.waiting.wait(), WAIT_S)
    assert done == ["ok"]  # at start, before any wait
    with caplog.at_level(logging.ERROR, logger="app.sweep.periodic"):
        await ticks.tick()
    assert done == ["ok", "fail"]
    assert "sweep test failed; trying again in 42 s" in caplog.text
    await ticks.tick()  # a failed sweep does not end the timer
    assert done == ["ok", "fail", "ok"]
    assert ticks.asked == [42.0, 42.0, 42.0]
    task = timer.task
    await timer.stop()
    assert task.cancelled() and timer.task is None


async def test_stopping_cancels_a_sweep_under_way() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def sweep() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    timer = Periodic("slow", sweep, interval=1.0)
    timer.start()
    await asyncio.wait_for(entered.wait(), WAIT_S)
    await timer.stop()
    assert cancelled.is_set()


# ---------------------------------------------------------------------------------- the server


ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def test_the_server_starts_and_stops_its_sweepers(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory, db: Database, db_url: str
) -> None:
    quota = QuotaLedger(db, clock=lambda: utcnow() - timedelta(hours=2))
    stale = granted(
        await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.5, budget=NO_BUDGET)
    )
    await finished_days_ago(db, "done-long-ago", 30)
    client = await aiohttp_client(create_app(make_settings(database_url=db_url)))
    sweepers = client.app[SWEEPERS]
    tasks = [timer.task for timer in sweepers.timers]
    assert {task.get_name() for task in tasks if task is not None} == {
        "sweep:reservations",
        "sweep:deliveries",
    }
    # Each swept once at start, and then waits for its interval.
    async with asyncio.timeout(WAIT_S):
        while not all(timer.runs >= 1 for timer in sweepers.timers):
            await asyncio.sleep(0.01)
    assert all(task is not None and not task.done() for task in tasks)
    assert (await reservation_rows(db))[stale.id] == (True, 0.0)
    assert await delivery_ids(db) == set()
    await client.close()
    assert all(task is not None and task.cancelled() for task in tasks)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("sweep:")]


async def test_sweepers_take_their_bounds_and_intervals_from_settings(
    make_settings: SettingsFactory, db: Database
) -> None:
    settings = make_settings(
        reservation_timeout_seconds=60,
        reservation_sweep_interval_seconds=7,
        delivery_retention_days=1,
        delivery_purge_interval_seconds=11,
    )
    assert (settings.reservation_timeout_seconds, settings.delivery_retention_days) == (60, 1)
    ticks = Ticks()
    sweepers = build_sweepers(settings, db, DeliveryQueue(db, lease_seconds=60), sleep=ticks)
    quota = QuotaLedger(db, clock=lambda: utcnow() - timedelta(minutes=2))
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.5, budget=NO_BUDGET))
    await finished_days_ago(db, "two-days-old", 2)
    sweepers.start()
    try:
        async with asyncio.timeout(WAIT_S):
            while len(ticks.asked) < 2:
                await asyncio.sleep(0.01)
    finally:
        await sweepers.stop()
    assert sorted(ticks.asked) == [7, 11]
    # A two-minute-old reservation is stale at 60 s; a two-day-old delivery at one day.
    assert all(settled for settled, _ in (await reservation_rows(db)).values())
    assert await delivery_ids(db) == set()
