"""Budgets, reservations and the ledger: windows, settlement, no overspend under concurrency,
the model planner and the once-per-window notice. Every database test runs on SQLite and, when
``TEST_DATABASE_URL`` is set, on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.gateway.clients import AnswerCall, CallMetadata, ReviewCall
from app.gateway.pricing import PRICES, ModelPrice
from app.quota import (
    DEFAULT_OVERHEAD_TOKENS,
    REPAIR_SLACK_TOKENS,
    BudgetKind,
    CallOutcome,
    Plan,
    QuotaLedger,
    Refusal,
    Reservation,
    day_window,
    estimate_call_cost,
    format_spend_report,
    format_usd,
    plan_models,
    week_window,
)
from app.repo_config import OnExhausted, QuotaConfig
from app.review.tokens import estimate_tokens
from app.store import migrate
from app.store.db import Database
from app.store.tables import ledger, ledger_logs, reservations

REPO = "octo/demo"
# A Tuesday in ISO week 48 of 2026.
TUESDAY = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


class Clock:
    """A settable clock for the ledger: tests move time, never sleep."""

    def __init__(self, now: datetime = TUESDAY) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(db_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def quota(db: Database, clock: Clock) -> QuotaLedger:
    return QuotaLedger(db, clock=clock)


def granted(result: Reservation | Refusal) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


def refused(result: Reservation | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


async def count_reservations(db: Database) -> int:
    async with db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(reservations))).scalar_one()
        )


# ---------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("now", "start", "key"),
    [
        (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC), "2026-W48"),
        (TUESDAY, datetime(2026, 11, 23, tzinfo=UTC), "2026-W48"),
        (
            datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 11, 23, tzinfo=UTC),
            "2026-W48",
        ),
        (datetime(2026, 11, 30, 0, 0, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC), "2026-W49"),
        # ISO years: 1 January 2027 is in the 53rd week of 2026.
        (datetime(2027, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 12, 28, tzinfo=UTC), "2026-W53"),
        (datetime(2027, 1, 4, 0, 0, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC), "2027-W01"),
    ],
)
def test_iso_week_windows(now: datetime, start: datetime, key: str) -> None:
    window = week_window(now)
    assert (window.start, window.end, window.key) == (
        start,
        start + timedelta(days=7),
        f"week:{key}",
    )


def test_day_window_is_the_utc_calendar_day() -> None:
    # 01:30 in UTC+3 is still the previous UTC day.
    from datetime import timezone

    local = datetime(2026, 11, 25, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    window = day_window(local)
    assert window.key == "day:2026-11-24"
    assert window.start == datetime(2026, 11, 24, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 25, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        day_window(datetime(2026, 11, 24))  # naive on purpose


# ---------------------------------------------------------------------------------- reserving


async def test_reserve_holds_the_maximum_and_settle_keeps_the_actual(
    quota: QuotaLedger, db: Database
) -> None:
    budget = QuotaConfig(daily_usd=1.00)
    held = granted(
        await quota.reserve(repository=REPO, pr_number=7, amount_usd=0.40, budget=budget)
    )
    assert (held.repository, held.pr_number, held.amount_usd, held.created_at) == (
        REPO,
        7,
        0.40,
        TUESDAY,
    )
    report = await quota.spend(REPO, budget=budget)
    assert report.daily.spent_usd == pytest.approx(0.40)
    assert report.remaining_usd == pytest.approx(0.60)

    assert await quota.settle(held, actual_usd=0.10) is True
    assert await quota.settle(held, actual_usd=0.30) is False  # settling twice changes nothing
    report = await quota.spend(REPO, budget=budget)
    assert report.daily.spent_usd == pytest.approx(0.10)
    assert report.weekly.spent_usd == pytest.approx(0.10)
    async with db.read() as conn:
        row = (await conn.execute(select(reservations))).one()
    assert (row.settled, row.actual_usd, row.amount_usd, row.settled_at) == (
        True,
        pytest.approx(0.10),
        pytest.approx(0.40),
        TUESDAY,
    )


async def test_release_gives_everything_back(quota: QuotaLedger) -> None:
    budget = QuotaConfig(daily_usd=1.00)
    held = granted(
        await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.90, budget=budget)
    )
    refused(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.20, budget=budget))
    assert await quota.release(held.id) is True
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.95, budget=budget))


async def test_refusal_names_the_budget_its_spend_and_its_reset(
    quota: QuotaLedger, db: Database
) -> None:
    budget = QuotaConfig(daily_usd=1.00, weekly_usd=10.0)
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.90, budget=budget))
    refusal = refused(
        await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.20, budget=budget)
    )
    assert refusal.budget is BudgetKind.DAILY
    assert refusal.limit_usd == 1.00
    assert refusal.spent_usd == pytest.approx(0.90)
    assert refusal.requested_usd == 0.20
    assert refusal.remaining_usd == pytest.approx(0.10)
    assert refusal.window_key == "day:2026-11-24"
    assert refusal.resets_at == datetime(2026, 11, 25, tzinfo=UTC)
    assert refusal.also == ()
    assert "daily budget of $1.00" in refusal.message
    assert "Wed 2026-11-25 00:00 UTC" in refusal.message
    # The refused reservation left nothing behind.
    assert await count_reservations(db) == 1
    # An exact fit is granted despite float sums (0.9 + 0.1).
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.10, budget=budget))


async def test_weekly_refusal_resets_next_monday(quota: QuotaLedger, clock: Clock) -> None:
    budget = QuotaConfig(weekly_usd=1.00)
    clock.now = datetime(2026, 11, 23, 9, tzinfo=UTC)  # Monday
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.80, budget=budget))
    clock.now = datetime(2026, 11, 29, 23, 59, tzinfo=UTC)  # Sunday, same ISO week
    refusal = refused(
        await quota.reserve(repository=REPO, pr_number=2, amount_usd=0.30, budget=budget)
    )
    assert (refusal.budget, refusal.window_key) == (BudgetKind.WEEKLY, "week:2026-W48")
    assert refusal.resets_at == datetime(2026, 11, 30, tzinfo=UTC)
    clock.now = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday: a new week
    granted(await quota.reserve(repository=REPO, pr_number=2, amount_usd=0.30, budget=budget))


async def test_yesterday_does_not_count_today(quota: QuotaLedger, clock: Clock) -> None:
    budget = QuotaConfig(daily_usd=1.00)
    clock.now = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    held = granted(
        await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.90, budget=budget)
    )
    await quota.settle(held, actual_usd=0.90)
    refused(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.20, budget=budget))
    clock.now = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.95, budget=budget))
    # Looking back at yesterday still shows yesterday's spend only.
    yesterday = await quota.spend(REPO, now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    assert yesterday.daily.spent_usd == pytest.approx(0.90)
    assert yesterday.weekly.spent_usd == pytest.approx(1.85)


async def test_per_pr_budget_spans_pushes_and_never_resets(
    quota: QuotaLedger, clock: Clock
) -> None:
    budget = QuotaConfig(per_pr_usd=0.50, daily_usd=5.0)
    first_push = granted(
        await quota.reserve(repository=REPO, pr_number=7, amount_usd=0.30, budget=budget)
    )
    await quota.settle(first_push, actual_usd=0.30)
    clock.advance(days=30)  # a later push, weeks on
    refusal = refused(
        await quota.reserve(repository=REPO, pr_number=7, amount_usd=0.30, budget=budget)
    )
    assert (refusal.budget, refusal.window_key, refusal.resets_at) == (
        BudgetKind.PER_PR,
        "pr",
        None,
    )
    assert refusal.spent_usd == pytest.approx(0.30)
    assert "never resets" in refusal.message
    # Another PR of the same repository, and the same PR number elsewhere, are not affected.
    granted(await quota.reserve(repository=REPO, pr_number=8, amount_usd=0.30, budget=budget))
    granted(
        await quota.reserve(repository="octo/other", pr_number=7, amount_usd=0.3, budget=budget)
    )
    # Outside a pull request there is no per-PR budget.
    granted(await quota.reserve(repository=REPO, pr_number=None, amount_usd=0.6, budget=budget))


async def test_the_refusal_names_the_budget_that_frees_up_last(quota: QuotaLedger) -> None:
    budget = QuotaConfig(daily_usd=1.0, weekly_usd=1.0, per_pr_usd=1.0)
    granted(await quota.reserve(repository=REPO, pr_number=3, amount_usd=0.9, budget=budget))
    refusal = refused(
        await quota.reserve(repository=REPO, pr_number=3, amount_usd=0.2, budget=budget)
    )
    assert refusal.budget is BudgetKind.PER_PR
    assert refusal.also == (BudgetKind.WEEKLY, BudgetKind.DAILY)


async def test_no_budget_always_grants_and_still_records(quota: QuotaLedger, db: Database) -> None:
    for _ in range(3):
        granted(
            await quota.reserve(
                repository=REPO, pr_number=1, amount_usd=1000.0, budget=QuotaConfig()
            )
        )
    assert await count_reservations(db) == 3
    report = await quota.spend(REPO, pr_number=1)
    assert report.remaining_usd is None
    assert not report.has_budget
    assert report.daily.spent_usd == pytest.approx(3000.0)
    assert report.per_pr is not None and report.per_pr.spent_usd == pytest.approx(3000.0)


async def test_bad_amounts_are_programming_errors(quota: QuotaLedger) -> None:
    for amount in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="amount_usd"):
            await quota.reserve(
                repository=REPO, pr_number=1, amount_usd=amount, budget=QuotaConfig()
            )


async def test_unreserved_ledger_costs_count_but_reserved_ones_only_once(
    quota: QuotaLedger,
) -> None:
    budget = QuotaConfig(daily_usd=1.00)
    held = granted(
        await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.30, budget=budget)
    )
    await quota.settle(held, actual_usd=0.20)
    await record(quota, cost_usd=0.20, outcome=CallOutcome.OK, reservation_id=held.id)
    # A call made without a reservation is still paid for.
    await record(quota, cost_usd=0.50, outcome="ok")
    # Refused and unpriced rows cost nothing.
    await record(quota, cost_usd=0.0, outcome=CallOutcome.REFUSED)
    await record(quota, cost_usd=None, outcome=CallOutcome.ERROR)
    report = await quota.spend(REPO, pr_number=1, budget=budget)
    assert report.daily.spent_usd == pytest.approx(0.70)
    assert report.per_pr is not None and report.per_pr.spent_usd == pytest.approx(0.70)
    refused(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.31, budget=budget))


# ---------------------------------------------------------------------------------- concurrency

BUDGET = QuotaConfig(daily_usd=1.00)
EACH = 0.07


async def _race(ledgers: list[QuotaLedger], n: int = 50) -> list[Reservation | Refusal]:
    async def one(i: int) -> Reservation | Refusal:
        return await ledgers[i % len(ledgers)].reserve(
            repository=REPO, pr_number=i % 5, amount_usd=EACH, budget=BUDGET
        )

    return await asyncio.gather(*(one(i) for i in range(n)))


def _assert_no_overspend(results: list[Reservation | Refusal]) -> None:
    wins = [r for r in results if isinstance(r, Reservation)]
    total = sum(r.amount_usd for r in wins)
    assert total <= 1.00 + 1e-9
    # Not only safe but not stingy either: exactly as many as fit (14 x 0.07 = 0.98).
    assert len(wins) == 14
    assert all(
        isinstance(r, Refusal) and r.budget is BudgetKind.DAILY for r in results if r not in wins
    )


async def test_fifty_concurrent_reservations_never_overspend(
    quota: QuotaLedger, db: Database
) -> None:
    results = await _race([quota])
    _assert_no_overspend(results)
    assert await count_reservations(db) == 14
    report = await quota.spend(REPO, budget=BUDGET)
    assert report.daily.spent_usd == pytest.approx(0.98)


async def test_two_processes_never_overspend_together(db_url: str, clock: Clock) -> None:
    """Two engines with their own pools (two processes): PostgreSQL's advisory lock serialises
    them; on SQLite, taking the file's write lock before reading does."""
    databases = [Database.from_url(db_url), Database.from_url(db_url)]
    try:
        await migrate.upgrade(databases[0].engine)
        ledgers = [QuotaLedger(database, clock=clock) for database in databases]
        _assert_no_overspend(await _race(ledgers))
        assert await count_reservations(databases[1]) == 14
    finally:
        for database in databases:
            await database.dispose()


async def test_concurrent_settlements_free_room_for_more(quota: QuotaLedger) -> None:
    first = await _race([quota])
    wins = [r for r in first if isinstance(r, Reservation)]
    await asyncio.gather(*(quota.release(r) for r in wins[:7]))
    second = await _race([quota], n=20)
    assert sum(isinstance(r, Reservation) for r in second) == 7


# ---------------------------------------------------------------------------------- the ledger


async def record(
    quota: QuotaLedger,
    *,
    cost_usd: float | None,
    outcome: CallOutcome | str,
    reservation_id: int | None = None,
) -> int:
    """A call of PR 1 of ``REPO``, with what the test cares about."""
    return await quota.record_call(
        repository=REPO,
        pr_number=1,
        installation_id=42,
        delivery_id="d-1",
        provider="anthropic",
        model="claude-sonnet-4-6",
        cost_usd=cost_usd,
        outcome=outcome,
        reservation_id=reservation_id,
    )


async def test_ledger_rows_keep_every_field(quota: QuotaLedger, db: Database) -> None:
    held = granted(
        await quota.reserve(repository=REPO, pr_number=12, amount_usd=0.5, budget=QuotaConfig())
    )
    row_id = await quota.record_call(
        repository=REPO,
        pr_number=12,
        installation_id=9_000_000_001,
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        provider="openai",
        model="gpt-5-mini",
        input_tokens=1200,
        output_tokens=340,
        cached_input_tokens=1000,
        cost_usd=0.00123,
        log_id="01JLOGID",
        outcome=CallOutcome.OK,
        reservation_id=held.id,
    )
    async with db.read() as conn:
        row = (await conn.execute(select(ledger).where(ledger.c.id == row_id))).one()
    assert row._asdict() == {
        "id": row_id,
        "at": TUESDAY,
        "installation_id": 9_000_000_001,
        "repository": REPO,
        "pr_number": 12,
        "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "provider": "openai",
        "model": "gpt-5-mini",
        "input_tokens": 1200,
        "output_tokens": 340,
        "cached_input_tokens": 1000,
        "cost_usd": pytest.approx(0.00123),
        "log_id": "01JLOGID",
        "outcome": "ok",
        "reservation_id": held.id,
        "purpose": "review",
        "gateway_cost_usd": None,
        "gateway_input_tokens": None,
        "gateway_output_tokens": None,
        "gateway_cached": None,
        "reconciled_at": None,
    }
    (entry,) = await quota.entries(REPO)
    assert (entry.id, entry.outcome, entry.reservation_id, entry.at) == (
        row_id,
        CallOutcome.OK,
        held.id,
        TUESDAY,
    )


async def test_refused_calls_are_ledger_rows_with_zero_tokens(quota: QuotaLedger) -> None:
    await record(quota, cost_usd=0.0, outcome=CallOutcome.REFUSED)
    (entry,) = await quota.entries()
    assert (entry.outcome, entry.input_tokens, entry.output_tokens, entry.cost_usd) == (
        CallOutcome.REFUSED,
        0,
        0,
        0.0,
    )
    with pytest.raises(ValueError, match="bogus"):
        await record(quota, cost_usd=0.0, outcome="bogus")


@pytest.mark.parametrize(("ok", "outcome"), [(True, CallOutcome.OK), (False, CallOutcome.ERROR)])
async def test_record_model_call_maps_a_finished_review(
    quota: QuotaLedger, ok: bool, outcome: CallOutcome
) -> None:
    from app.review.model import ModelReview

    review = (
        ModelReview.model_validate(
            {"verdict": "approve", "summary": "fine", "confidence": 0.9, "findings": []}
        )
        if ok
        else None
    )
    call = ReviewCall(
        provider="anthropic",
        model="claude-haiku-4-5",
        review=review,
        error=None if ok else "timeout",
        input_tokens=100,
        output_tokens=20,
        cached_input_tokens=50,
        cost_usd=0.0002,
        log_id="log-9",
    )
    metadata = CallMetadata(repository=REPO, pr=5, installation=3, delivery="dv")
    await quota.record_model_call(call, metadata=metadata, reservation_id=77)
    (entry,) = await quota.entries(REPO)
    assert (
        entry.repository,
        entry.pr_number,
        entry.installation_id,
        entry.delivery_id,
        entry.provider,
        entry.model,
        entry.input_tokens,
        entry.output_tokens,
        entry.cached_input_tokens,
        entry.cost_usd,
        entry.log_id,
        entry.outcome,
        entry.reservation_id,
    ) == (
        REPO,
        5,
        3,
        "dv",
        "anthropic",
        "claude-haiku-4-5",
        100,
        20,
        50,
        0.0002,
        "log-9",
        outcome,
        77,
    )


@pytest.mark.parametrize(("text", "outcome"), [("yes", CallOutcome.OK), (None, CallOutcome.ERROR)])
async def test_record_model_call_maps_a_finished_answer_under_its_own_delivery(
    quota: QuotaLedger, db: Database, text: str | None, outcome: CallOutcome
) -> None:
    call = AnswerCall(
        provider="openai",
        model="gpt-5-mini",
        text=text,
        error=None if text else "http 500",
        input_tokens=30,
        output_tokens=7,
        cost_usd=0.0001,
        log_id="log-2",
        log_ids=("log-1", "log-2"),
    )
    metadata = CallMetadata(repository=REPO, pr=5, installation=3, delivery="dv", purpose="ask")
    row_id = await quota.record_model_call(
        call, metadata=metadata, reservation_id=8, delivery_id="ask:dv"
    )
    (entry,) = await quota.entries(REPO)
    assert entry.id == row_id
    assert (entry.delivery_id, entry.purpose, entry.model, entry.outcome, entry.log_id) == (
        "ask:dv",
        "ask",
        "gpt-5-mini",
        outcome,
        "log-2",
    )
    async with db.read() as conn:
        logs = (await conn.execute(select(ledger_logs.c.log_id).order_by("log_id"))).all()
    assert [row.log_id for row in logs] == ["log-1", "log-2"]


async def test_record_refused_leaves_one_costless_row_per_wanted_model(
    quota: QuotaLedger,
) -> None:
    metadata = CallMetadata(repository=REPO, installation=3, delivery="api:r1")
    await quota.record_refused(metadata, {"anthropic": "claude-opus-4-1", "openai": "gpt-5"})
    entries = sorted(await quota.entries(REPO), key=lambda e: e.provider)
    assert [
        (e.provider, e.model, e.outcome, e.cost_usd, e.pr_number, e.delivery_id, e.purpose)
        for e in entries
    ] == [
        ("anthropic", "claude-opus-4-1", CallOutcome.REFUSED, 0.0, None, "api:r1", "api"),
        ("openai", "gpt-5", CallOutcome.REFUSED, 0.0, None, "api:r1", "api"),
    ]


# ---------------------------------------------------------------------------------- notices


async def test_exhaustion_is_notified_once_per_window(
    quota: QuotaLedger, db: Database, clock: Clock
) -> None:
    day = day_window(clock()).key
    assert await quota.should_notify_exhausted(REPO, 7, day) is True
    assert await quota.should_notify_exhausted(REPO, 7, day) is False
    # A restart (a new ledger on the same database) remembers.
    assert await QuotaLedger(db, clock=clock).should_notify_exhausted(REPO, 7, day) is False
    # Another PR, another repository, another window: each gets its one notice.
    assert await quota.should_notify_exhausted(REPO, 8, day) is True
    assert await quota.should_notify_exhausted("octo/other", 7, day) is True
    assert await quota.should_notify_exhausted(REPO, 7, "week:2026-W48") is True
    assert await quota.should_notify_exhausted(REPO, 7, "pr") is True
    assert await quota.should_notify_exhausted(REPO, 7, "pr") is False
    clock.advance(days=1)
    assert await quota.should_notify_exhausted(REPO, 7, day_window(clock()).key) is True
    assert await quota.should_notify_exhausted(REPO, None, day) is True
    assert await quota.should_notify_exhausted(REPO, None, day) is False


async def test_concurrent_notice_checks_grant_exactly_one(quota: QuotaLedger) -> None:
    answers = await asyncio.gather(
        *(quota.should_notify_exhausted(REPO, 1, "day:2026-11-24") for _ in range(10))
    )
    assert sorted(answers) == [False] * 9 + [True]


# ---------------------------------------------------------------------------------- reports


async def test_spend_reports_use_the_last_budget_seen(quota: QuotaLedger, clock: Clock) -> None:
    budget = QuotaConfig(daily_usd=2.0, weekly_usd=5.0, per_pr_usd=1.0)
    held = granted(await quota.reserve(repository=REPO, pr_number=4, amount_usd=0.5, budget=budget))
    await quota.settle(held, actual_usd=0.25)
    granted(
        await quota.reserve(
            repository="octo/free", pr_number=1, amount_usd=0.1, budget=QuotaConfig()
        )
    )

    report = await quota.spend(REPO, pr_number=4)  # no budget passed: the remembered one
    assert (report.daily.limit_usd, report.weekly.limit_usd) == (2.0, 5.0)
    assert report.per_pr is not None and report.per_pr.limit_usd == 1.0
    assert report.limiting is report.per_pr
    assert report.limiting_label == "per-PR budget"
    assert report.remaining_usd == pytest.approx(0.75)

    reports = await quota.spend_all()
    assert [r.repository for r in reports] == ["octo/demo", "octo/free"]
    assert reports[0].daily.spent_usd == pytest.approx(0.25)
    assert reports[0].per_pr is None
    assert not reports[1].has_budget

    text = format_spend_report(report, this_review_usd=0.25)
    assert "**Spend for octo/demo (PR #4)**" in text
    assert "This review: $0.25" in text
    assert "| daily | 2026-11-24 | $0.25 | $2.00 | $1.75 | Wed 2026-11-25 00:00 UTC |" in text
    assert "| weekly | 2026-W48 | $0.25 | $5.00 | $4.75 | Mon 2026-11-30 00:00 UTC |" in text
    assert "| per_pr | all pushes | $0.25 | $1.00 | $0.75 | never |" in text
    free = format_spend_report(reports[1])
    assert "no limit" in free and "No budget is set" in free


async def test_exhausted_budgets_are_marked(quota: QuotaLedger) -> None:
    budget = QuotaConfig(daily_usd=0.5)
    granted(await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.5, budget=budget))
    report = await quota.spend(REPO, budget=budget)
    assert report.daily.exhausted
    assert "$0.00 (exhausted)" in format_spend_report(report)


def test_format_usd() -> None:
    assert [format_usd(v) for v in (0, 0.0042, 0.01, 1234.5)] == [
        "$0.00",
        "$0.0042",
        "$0.01",
        "$1,234.50",
    ]


# ---------------------------------------------------------------------------------- estimates


def test_estimate_counts_the_prompt_caps_the_output_and_includes_the_repair_round() -> None:
    prompt = "x" * 7000  # 2000 tokens
    price = PRICES["claude-sonnet-4-6"]
    one_round = estimate_call_cost(
        "claude-sonnet-4-6", prompt_text=prompt, max_output_tokens=4000, rounds=1
    )
    p = estimate_tokens(prompt) + DEFAULT_OVERHEAD_TOKENS
    assert one_round == pytest.approx((p * price.input + 4000 * price.output) / 1e6)
    both = estimate_call_cost("claude-sonnet-4-6", prompt_text=prompt, max_output_tokens=4000)
    input_tokens = 2 * p + 4000 + REPAIR_SLACK_TOKENS
    assert both == pytest.approx((input_tokens * price.input + 8000 * price.output) / 1e6)
    assert estimate_call_cost("mystery-model", prompt_text=prompt, max_output_tokens=10) is None
    custom: Mapping[str, ModelPrice] = {"mine": ModelPrice(input=1.0, output=1.0, cached_input=0)}
    assert estimate_call_cost(
        "mine", prompt_text="", max_output_tokens=0, prices=custom, rounds=1
    ) == pytest.approx(DEFAULT_OVERHEAD_TOKENS / 1e6)
    with pytest.raises(ValueError, match="rounds"):
        estimate_call_cost("mine", prompt_text="", max_output_tokens=0, prices=custom, rounds=0)


# ---------------------------------------------------------------------------------- the planner

COSTS: dict[str, float | None] = {
    "claude-opus-4-1": 1.50,
    "claude-sonnet-4-6": 0.30,
    "claude-sonnet-4-5": 0.30,
    "claude-haiku-4-5": 0.10,
    "gpt-5": 0.20,
    "gpt-5-mini": 0.05,
    "gpt-5-nano": 0.01,
    "claude-mystery": None,
}
BOTH = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5-mini"}
D = OnExhausted.DOWNGRADE
S = OnExhausted.SKIP


@pytest.mark.parametrize(
    ("wanted", "remaining", "mode", "models", "downgrades", "skip"),
    [
        pytest.param(BOTH, 1.0, D, BOTH, [], None, id="fits"),
        pytest.param(BOTH, 0.35, D, BOTH, [], None, id="fits-exactly"),
        pytest.param(BOTH, None, D, BOTH, [], None, id="no-budget"),
        pytest.param(
            BOTH,
            0.20,
            D,
            {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-mini"},
            ["claude-sonnet-4-6 → claude-haiku-4-5: daily budget"],
            None,
            id="downgrade-one-step",
        ),
        pytest.param(
            BOTH,
            0.12,
            D,
            {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-nano"},
            [
                "claude-sonnet-4-6 → claude-haiku-4-5: daily budget",
                "gpt-5-mini → gpt-5-nano: daily budget",
            ],
            None,
            id="downgrade-both",
        ),
        pytest.param(
            {"anthropic": "claude-opus-4-1"},
            0.12,
            D,
            {"anthropic": "claude-haiku-4-5"},
            ["claude-opus-4-1 → claude-haiku-4-5: daily budget"],
            None,
            id="downgrade-two-steps",
        ),
        pytest.param(
            {"anthropic": "claude-opus-4-1", "openai": "gpt-5"},
            0.40,
            D,
            # One step each costs 0.35; two steps on one side cost 0.30 or 1.51: fewest steps.
            {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5-mini"},
            [
                "claude-opus-4-1 → claude-sonnet-4-6: daily budget",
                "gpt-5 → gpt-5-mini: daily budget",
            ],
            None,
            id="fewest-steps-in-total",
        ),
        pytest.param(
            {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5"},
            0.35,
            D,
            # Both one-step options fit (0.10 + 0.20 and 0.30 + 0.05): the dearer one is used.
            {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5-mini"},
            ["gpt-5 → gpt-5-mini: daily budget"],
            None,
            id="tie-takes-the-most-capable-spend",
        ),
        pytest.param(
            {"anthropic": "claude-sonnet-4-5", "openai": "gpt-5-mini"},
            0.20,
            D,
            # Off the ladder: start from the top, but never step "down" to a dearer model.
            {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-mini"},
            ["claude-sonnet-4-5 → claude-haiku-4-5: daily budget"],
            None,
            id="off-ladder-model",
        ),
        pytest.param(BOTH, 0.05, D, {}, [], "even the cheapest models", id="nothing-fits"),
        pytest.param(BOTH, 0.0, D, {}, [], "even the cheapest models", id="nothing-left"),
        pytest.param(BOTH, 0.20, S, {}, [], "on_exhausted: skip", id="skip-mode"),
        pytest.param(
            {"anthropic": "claude-mystery", "openai": "gpt-5-mini"},
            1.0,
            D,
            # Unpriced under a budget: the best priced tier that fits with the other model.
            {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5-mini"},
            ["claude-mystery → claude-sonnet-4-6: no price for claude-mystery"],
            None,
            id="unknown-price-downgrades",
        ),
        pytest.param(
            {"anthropic": "claude-mystery", "openai": "gpt-5-mini"},
            1.0,
            S,
            {},
            [],
            "no price for claude-mystery",
            id="unknown-price-skips",
        ),
        pytest.param(
            {"anthropic": "claude-mystery", "openai": "gpt-5-mini"},
            None,
            D,
            {"anthropic": "claude-mystery", "openai": "gpt-5-mini"},
            [],
            None,
            id="unknown-price-without-budget-runs",
        ),
        pytest.param(
            {"other": "claude-sonnet-4-6"},
            0.1,
            D,
            {},
            [],
            "even the cheapest models would cost an estimated $0.30, more than the $0.10 left",
            id="provider-without-ladder",
        ),
        pytest.param(
            {"other": "claude-mystery"},
            5.0,
            D,
            {},
            [],
            "no cheaper priced model is on the other ladder",
            id="unpriced-without-ladder",
        ),
    ],
)
def test_plan_models(
    wanted: dict[str, str],
    remaining: float | None,
    mode: OnExhausted,
    models: dict[str, str],
    downgrades: list[str],
    skip: str | None,
) -> None:
    plan = plan_models(
        wanted=wanted,
        estimate=COSTS.__getitem__,
        remaining=remaining,
        on_exhausted=mode,
        limiting="daily budget",
    )
    assert dict(plan.models) == models
    assert [str(d) for d in plan.downgrades] == downgrades
    if skip is None:
        assert not plan.skip
        if None not in (COSTS[m] for m in models.values()):
            assert plan.estimated_usd == pytest.approx(
                sum(COSTS[m] or 0.0 for m in models.values())
            )
    else:
        assert plan.skip and plan.skip_reason is not None
        assert skip in plan.skip_reason
        assert plan.notes == [f"Review skipped: {plan.skip_reason}."]


def test_plan_notes_and_estimates_are_asked_once_per_model() -> None:
    asked: list[str] = []

    def estimate(model: str) -> float | None:
        asked.append(model)
        return COSTS[model]

    plan = plan_models(
        wanted=BOTH, estimate=estimate, remaining=0.12, on_exhausted=D, limiting="weekly budget"
    )
    assert sorted(asked) == sorted(set(asked))
    assert plan.notes == [
        "Model downgraded (anthropic): claude-sonnet-4-6 → claude-haiku-4-5: weekly budget.",
        "Model downgraded (openai): gpt-5-mini → gpt-5-nano: weekly budget.",
    ]
    assert isinstance(plan, Plan)
