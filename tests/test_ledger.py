"""Reconciliation of the ledger with the gateway's logs: the Cloudflare client against a fake
Cloudflare API (pagination, filters, 429 with retry-after, 5xx, the token's one host), the pure
matching, and runs that correct ledger rows and report discrepancies on both databases."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sqlalchemy import select

from app.ledger.cf_logs import (
    ApiTokenGuard,
    CloudflareApiError,
    GatewayLog,
    GatewayLogsClient,
    LogsTarget,
    NoPermission,
    resolve_target,
)
from app.ledger.reconcile import Kind, LedgerCall, Reconciliation, reconcile
from app.ledger.store import LedgerReconcileStore
from app.ledger.task import Reconciler, ledger_health
from app.metrics import Metrics
from app.quota import CallOutcome, QuotaLedger, Refusal, Reservation, purpose_of
from app.repo_config import QuotaConfig
from app.settings import Settings
from app.store import migrate
from app.store.db import Database
from app.store.tables import ledger, ledger_logs
from tests.fakes.cloudflare import FakeCloudflare, Fault

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
OURS: dict[str, str | int | float | bool] = {
    "app": "aigateway",
    "purpose": "review",
    "repository": "octo/demo",
    "pr": 1,
}
REPO = "octo/demo"
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Sleeps:
    """Records the waits the client asks for; never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def cf(aiohttp_server: ServerFactory) -> FakeCloudflare:
    fake = FakeCloudflare()
    fake.bind(await aiohttp_server(fake.make_app()))
    return fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(cf: FakeCloudflare, sleeps: Sleeps) -> AsyncIterator[GatewayLogsClient]:
    http = GatewayLogsClient(
        base_url=cf.base_url,
        token=SecretStr(cf.token),
        target=LogsTarget(cf.account_id, cf.gateway_id),
        sleep=sleeps,
    )
    yield http
    await http.aclose()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(db_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


# ----------------------------------------------------------------------------- the client


async def test_logs_are_read_page_by_page_within_the_dates(
    cf: FakeCloudflare, client: GatewayLogsClient
) -> None:
    for n in range(120):
        cf.add_log(f"log-{n:03d}", created_at=NOW - timedelta(minutes=n), metadata=OURS)
    logs = await client.list_logs(since=NOW - timedelta(minutes=109), until=NOW, per_page=50)
    assert [log.id for log in logs] == [f"log-{n:03d}" for n in range(109, -1, -1)]
    assert [r.query["page"] for r in cf.requests] == ["1", "2", "3"]
    first = cf.requests[0].query
    assert first["order_by"] == "created_at" and first["order_by_direction"] == "asc"
    assert first["start_date"].startswith("2026-11-24T13:41:00")
    assert logs[0].is_ours and logs[0].metadata["pr"] == 1
    assert logs[0].cost == pytest.approx(0.001) and logs[0].tokens_in == 100


async def test_a_page_smaller_than_asked_is_not_the_last(
    cf: FakeCloudflare, client: GatewayLogsClient
) -> None:
    for n in range(60):
        cf.add_log(f"log-{n:03d}", created_at=NOW - timedelta(seconds=n))
    logs = await client.list_logs(since=NOW - timedelta(hours=1), until=NOW, per_page=100)
    assert len(logs) == 60 and len({log.id for log in logs}) == 60
    assert [r.query["page"] for r in cf.requests] == ["1", "2"]  # the fake gives 50 at most


async def test_a_429_waits_its_retry_after_and_a_5xx_backs_off(
    cf: FakeCloudflare, client: GatewayLogsClient, sleeps: Sleeps
) -> None:
    cf.add_log("only", created_at=NOW - timedelta(minutes=1))
    cf.push(Fault(429, retry_after="7"), Fault(502), Fault(503))
    logs = await client.list_logs(since=NOW - timedelta(hours=1), until=NOW)
    assert [log.id for log in logs] == ["only"]
    assert sleeps.calls == [7.0, 2.0, 4.0]  # retry-after, then the backoff of retries 2 and 3
    assert len(cf.requests) == 4


async def test_retries_are_bounded(
    cf: FakeCloudflare, client: GatewayLogsClient, sleeps: Sleeps
) -> None:
    cf.push(*[Fault(500)] * 10)
    with pytest.raises(CloudflareApiError, match="500"):
        await client.list_logs(since=NOW - timedelta(hours=1), until=NOW)
    assert len(cf.requests) == 5 and len(sleeps.calls) == 4
    cf.faults.clear()
    cf.push(Fault(429, retry_after="300"))  # Cloudflare's five-minute block: the next run comes
    with pytest.raises(CloudflareApiError, match="429"):
        await client.list_logs(since=NOW - timedelta(hours=1), until=NOW)


async def test_the_token_goes_to_the_api_host_only(
    cf: FakeCloudflare, client: GatewayLogsClient, aiohttp_server: ServerFactory
) -> None:
    elsewhere = FakeCloudflare()
    elsewhere.bind(await aiohttp_server(elsewhere.make_app()))
    assert elsewhere.origin != cf.origin
    cf.push(Fault(302, location=elsewhere.base_url + "/accounts/fake-account/ai-gateway/x"))
    with pytest.raises(CloudflareApiError, match="redirect"):
        await client.list_logs(since=NOW - timedelta(hours=1), until=NOW)
    assert elsewhere.requests == []
    assert cf.requests[0].authorization == f"Bearer {cf.token}"


async def test_a_wrong_token_is_an_error_and_a_read_only_token_cannot_patch(
    cf: FakeCloudflare, client: GatewayLogsClient, sleeps: Sleeps
) -> None:
    cf.add_log("a", created_at=NOW)
    cf.writable = False
    with pytest.raises(NoPermission):
        await client.patch_log("a", feedback=1, score=100, metadata=OURS)
    cf.writable = True
    assert not await client.patch_log("unknown", feedback=1, score=100, metadata=OURS)
    assert await client.patch_log("a", feedback=-1, score=0, metadata=OURS)
    assert cf.logs["a"]["feedback"] == -1
    cf.token = "another-token-entirely"
    with pytest.raises(CloudflareApiError, match="401: Authentication error"):
        await client.list_logs(since=NOW - timedelta(hours=1), until=NOW)
    assert sleeps.calls == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"cf_account_id": "acc", "cf_aig_gateway_id": "gw"}, LogsTarget("acc", "gw")),
        (
            {"aig_gateway_url": "https://gateway.ai.cloudflare.com/v1/acc1/gw1"},
            LogsTarget("acc1", "gw1"),
        ),
        ({"aig_gateway_url": "https://proxy.example/v1/acc/gw"}, "not a gateway.ai.cloudflare"),
        ({}, "no gateway is configured"),
    ],
)
def test_the_account_and_gateway_come_from_the_settings_or_the_gateway_url(
    settings: dict[str, Any], expected: LogsTarget | str, clean_env: None
) -> None:
    target = resolve_target(Settings(_env_file=None, **settings))
    if isinstance(expected, str):
        assert isinstance(target, str) and expected in target
    else:
        assert target == expected


def test_the_api_token_is_a_secret_kept_out_of_logs(clean_env: None) -> None:
    settings = Settings(_env_file=None, cf_api_token="cf-secret-token-value")
    assert "cf-secret-token-value" in settings.secret_values()
    assert "cf-secret-token-value" not in repr(settings)
    assert Settings(_env_file=None, cf_api_token="").cf_api_token is None


# ----------------------------------------------------------------------------- matching


def _log(log_id: str, *, cost: float | None = 0.01, minutes: int = 30, **meta: str) -> GatewayLog:
    return GatewayLog(
        id=log_id,
        created_at=NOW - timedelta(minutes=minutes),
        provider="anthropic",
        model="claude-sonnet-4-6",
        tokens_in=1000,
        tokens_out=200,
        cost=cost,
        cached=False,
        success=True,
        metadata=meta or OURS,
    )


def _call(ledger_id: int, *log_ids: str, minutes: int = 30, cost: float = 0.02) -> LedgerCall:
    return LedgerCall(
        ledger_id=ledger_id,
        at=NOW - timedelta(minutes=minutes),
        repository=REPO,
        purpose="review",
        provider="anthropic",
        model="claude-sonnet-4-6",
        cost_usd=cost,
        log_ids=log_ids,
    )


def test_a_call_of_several_requests_is_corrected_by_the_sum_of_its_logs() -> None:
    result = reconcile(
        [_log("a1", cost=0.01), _log("a2", cost=0.015)],
        [_call(1, "a1", "a2", cost=0.02)],
        settled_before=NOW - timedelta(minutes=10),
    )
    [correction] = result.corrections
    assert correction.cost_usd == pytest.approx(0.025)
    assert (correction.input_tokens, correction.output_tokens) == (2000, 400)
    assert correction.differs and result.discrepancies == ()


def test_discrepancies_both_ways_and_not_for_young_calls_or_other_apps() -> None:
    logs = [
        _log("a1"),
        _log("stray"),  # ours, no row: an SDK retry
        _log("young-stray", minutes=2),
        _log("foreign", app="someone-else"),
    ]
    calls = [
        _call(1, "a1"),
        _call(2, "b1", "b2"),  # the gateway never logged b2 (nor b1)
        _call(3, "c1", minutes=3),  # too young to be called missing
    ]
    result = reconcile(logs, calls, settled_before=NOW - timedelta(minutes=10))
    found = {(d.kind, d.log_id, d.ledger_id) for d in result.discrepancies}
    assert found == {
        (Kind.MISSING_FROM_GATEWAY, "b1", 2),
        (Kind.MISSING_FROM_GATEWAY, "b2", 2),
        (Kind.MISSING_FROM_LEDGER, "stray", None),
    }
    assert [c.ledger_id for c in result.corrections] == [1]


def test_a_cached_answer_costs_nothing() -> None:
    cached = GatewayLog(
        id="a2",
        created_at=NOW - timedelta(minutes=30),
        provider="openai",
        model="gpt-5-mini",
        tokens_in=1000,
        tokens_out=200,
        cost=0.004,
        cached=True,
        success=True,
        metadata=OURS,
    )
    result = reconcile(
        [_log("a1", cost=0.01), cached],
        [_call(1, "a1"), _call(2, "a2")],
        settled_before=NOW - timedelta(minutes=10),
    )
    first, second = result.corrections
    assert first.cost_usd == pytest.approx(0.01) and not first.cached
    assert (second.cost_usd, second.cached) == (0.0, True)


def test_a_log_without_cost_keeps_the_estimate() -> None:
    result = reconcile(
        [_log("a1", cost=None)], [_call(1, "a1")], settled_before=NOW - timedelta(minutes=10)
    )
    assert result.corrections[0].cost_usd is None


# ----------------------------------------------------------------------------- runs


async def _record(
    quota: QuotaLedger, *log_ids: str, cost: float = 0.02, reservation_id: int | None = None
) -> int:
    return await quota.record_call(
        repository=REPO,
        pr_number=1,
        installation_id=7,
        delivery_id="d-1",
        provider="anthropic",
        model="claude-sonnet-4-6",
        input_tokens=900,
        output_tokens=150,
        cost_usd=cost,
        log_id=log_ids[-1] if log_ids else None,
        log_ids=log_ids,
        outcome=CallOutcome.OK,
        reservation_id=reservation_id,
    )


async def test_a_run_corrects_rows_and_reports_discrepancies_once(
    db: Database, cf: FakeCloudflare, client: GatewayLogsClient
) -> None:
    clock = Clock(NOW - timedelta(minutes=40))
    quota = QuotaLedger(db, clock=clock)
    repaired = await _record(quota, "r-1", "r-2", cost=0.02)
    unlogged = await _record(quota, "u-1", cost=0.01)
    cf.add_log("r-1", created_at=clock.now, cost=0.011, tokens_in=1000, tokens_out=100)
    cf.add_log("r-2", created_at=clock.now, cost=0.019, tokens_in=1200, tokens_out=120)
    cf.add_log("stray", created_at=clock.now, cost=0.05, metadata=OURS)
    cf.add_log("foreign", created_at=clock.now, cost=0.5, metadata={"app": "other"})

    metrics = Metrics()
    clock.now = NOW
    reconciler = Reconciler(db, client, writeback=False, metrics=metrics, clock=clock)
    report = await reconciler.run()
    assert (report.corrected, report.differing, report.new_discrepancies) == (1, 1, 2)

    async with db.read() as conn:
        rows = {r.id: r for r in (await conn.execute(select(ledger))).all()}
        per_log = {r.log_id: r for r in (await conn.execute(select(ledger_logs))).all()}
    assert rows[repaired].gateway_cost_usd == pytest.approx(0.03)
    assert (rows[repaired].gateway_input_tokens, rows[repaired].gateway_output_tokens) == (
        2200,
        220,
    )
    assert rows[repaired].cost_usd == pytest.approx(0.02)  # the estimate stays beside it
    assert rows[unlogged].reconciled_at is None
    assert per_log["r-2"].cost_usd == pytest.approx(0.019)

    store = LedgerReconcileStore(db)
    found = {(d.kind, d.log_id, d.ledger_id) for d in await store.open_discrepancies()}
    assert found == {
        (Kind.MISSING_FROM_GATEWAY, "u-1", unlogged),
        (Kind.MISSING_FROM_LEDGER, "stray", None),
    }
    gauge = metrics.registry.get_sample_value
    assert gauge("aigateway_ledger_discrepancies", {"kind": "missing_from_ledger"}) == 1
    assert gauge("aigateway_ledger_corrections_total") == 1

    # The next run starts where this one ended, less an overlap: nothing is reported twice,
    # and a log that turns up late resolves its discrepancy and corrects its row.
    cf.add_log("u-1", created_at=NOW - timedelta(minutes=40), cost=0.012)
    clock.now = NOW + timedelta(minutes=5)
    again = await reconciler.run()
    assert (again.new_discrepancies, again.corrected) == (0, 1)  # u-1 only: r is not counted again
    assert gauge("aigateway_ledger_corrections_total") == 2
    assert again.since == NOW - timedelta(hours=1)
    assert {d.log_id for d in await store.open_discrepancies()} == {"stray"}
    async with db.read() as conn:
        row = (await conn.execute(select(ledger).where(ledger.c.id == unlogged))).one()
    assert row.gateway_cost_usd == pytest.approx(0.012)


async def test_budgets_count_the_gateways_cost_once_known(
    db: Database, cf: FakeCloudflare, client: GatewayLogsClient
) -> None:
    clock = Clock(NOW - timedelta(minutes=30))
    quota = QuotaLedger(db, clock=clock)
    budget = QuotaConfig(daily_usd=1.0)
    held = await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.5, budget=budget)
    assert isinstance(held, Reservation)
    await _record(quota, "x-1", cost=0.2, reservation_id=held.id)
    await quota.settle(held.id, actual_usd=0.2)
    await _record(quota, "y-1", cost=0.1)  # a call made without a reservation
    assert (await quota.spend(REPO, budget=budget)).daily.spent_usd == pytest.approx(0.3)

    cf.add_log("x-1", created_at=clock.now, cost=0.7)  # a stale price: the gateway billed more
    cf.add_log("y-1", created_at=clock.now, cost=0.25)
    clock.now = NOW
    await Reconciler(db, client, writeback=False, clock=clock).run()
    report = await quota.spend(REPO, budget=budget, pr_number=1)
    assert report.daily.spent_usd == pytest.approx(0.95)
    assert report.per_pr is not None and report.per_pr.spent_usd == pytest.approx(0.95)
    refusal = await quota.reserve(repository=REPO, pr_number=1, amount_usd=0.1, budget=budget)
    assert isinstance(refusal, Refusal) and refusal.budget.value == "daily"


async def test_the_health_detail_warns_above_the_threshold(
    db: Database, make_settings: Any
) -> None:
    store = LedgerReconcileStore(db, clock=Clock())

    strays = reconcile(
        [_log(f"s{n}") for n in range(3)], [], settled_before=NOW - timedelta(minutes=10)
    )
    assert len(strays.discrepancies) == 3
    await store.apply(
        Reconciliation((), strays.discrepancies, ()),
        started_at=NOW,
        since=NOW - timedelta(hours=1),
        until=NOW,
        logs_seen=3,
    )
    quiet = make_settings(cf_api_token="t" * 20, ledger_discrepancy_warn_threshold=3)
    loud = make_settings(cf_api_token="t" * 20, ledger_discrepancy_warn_threshold=2)
    assert await ledger_health(make_settings(), db) is None
    detail = await ledger_health(quiet, db)
    assert detail == {"open_discrepancies": {"missing_from_gateway": 0, "missing_from_ledger": 3}}
    warned = await ledger_health(loud, db)
    assert warned is not None and "3 open discrepancies" in warned["warning"]


# ----------------------------------------------------------------------------- the CLI


async def _cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``python -m app ...`` in a subprocess, without blocking the loop the fakes serve on."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL"))
    }
    full_env.update(env, PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        env=full_env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_reconciles_lists_discrepancies_and_shows_both_spends(
    cf: FakeCloudflare, sqlite_url: str, tmp_path: Path
) -> None:
    db = Database.from_url(sqlite_url)
    await migrate.upgrade(db.engine)
    now = datetime.now(UTC)
    quota = QuotaLedger(db, clock=lambda: now - timedelta(hours=2))
    await _record(quota, "c-1", cost=0.02)
    await db.dispose()
    cf.add_log("c-1", created_at=now - timedelta(hours=2), cost=0.5)
    cf.add_log("stray", created_at=now - timedelta(hours=2), cost=0.05, metadata=OURS)
    env = {
        "DATABASE_URL": sqlite_url,
        "CF_ACCOUNT_ID": cf.account_id,
        "CF_AIG_GATEWAY_ID": cf.gateway_id,
        "CF_API_BASE_URL": cf.base_url,
    }
    code, _, err = await _cli("ledger", "reconcile", env=env, cwd=tmp_path)
    assert code == 2 and "CF_API_TOKEN is not set" in err
    env["CF_API_TOKEN"] = cf.token
    code, _, err = await _cli("ledger", "reconcile", "--since", "yesterday", env=env, cwd=tmp_path)
    assert code == 2 and "--since must be an ISO date" in err
    since = (now - timedelta(hours=3)).date().isoformat()
    code, out, err = await _cli("ledger", "reconcile", "--since", since, env=env, cwd=tmp_path)
    assert code == 0, err
    assert "ledger rows reconciled: 1 (1 differed from the estimate)" in out
    assert "new discrepancies: 1" in out
    margin = datetime.fromisoformat(since).replace(tzinfo=UTC) - timedelta(minutes=30)
    assert cf.requests[0].query["start_date"] == margin.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    code, out, err = await _cli("ledger", "discrepancies", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "missing_from_ledger" in out and "stray" in out and "octo/demo" in out
    code, out, err = await _cli("quota", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "| octo/demo | 1 | 1 | $0.02 | $0.50 |" in out


# ----------------------------------------------------------------------------- the migration


async def test_the_migration_backfills_purposes_and_log_ids(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import Connection, text

    def to(revision: str) -> Callable[[Connection], None]:
        return lambda conn: command.upgrade(migrate._alembic_config(conn), revision)

    database = Database.from_url(db_url)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(to("0010"))
            for n, delivery in enumerate(["ask:d-1", "api:r-1", "d-2", None, "asking"]):
                await conn.execute(
                    text(
                        "INSERT INTO ledger (at, repository, delivery_id, provider, model,"
                        " input_tokens, output_tokens, cached_input_tokens, log_id, outcome)"
                        " VALUES (:at, 'o/r', :delivery, 'openai', 'gpt-5-mini', 0, 0, 0,"
                        " :log, 'ok')"
                    ),
                    {
                        "at": NOW.replace(tzinfo=None) if database.is_sqlite else NOW,
                        "delivery": delivery,
                        "log": f"log-{n}" if n != 3 else None,
                    },
                )
        await migrate.upgrade(database.engine)
        async with database.read() as conn:
            rows = (await conn.execute(select(ledger).order_by(ledger.c.id))).all()
            logs = (await conn.execute(select(ledger_logs).order_by(ledger_logs.c.log_id))).all()
        assert [r.purpose for r in rows] == ["ask", "api", "review", "review", "review"]
        assert [(log.log_id, log.ledger_id) for log in logs] == [
            ("log-0", rows[0].id),
            ("log-1", rows[1].id),
            ("log-2", rows[2].id),
            ("log-4", rows[4].id),
        ]
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    ("delivery", "purpose"),
    [
        ("ask:d-1", "ask"),
        ("api:req", "api"),
        ("d-1", "review"),
        (None, "review"),
        ("ask", "review"),
    ],
)
def test_a_calls_purpose_is_told_by_its_delivery_id(delivery: str | None, purpose: str) -> None:
    assert purpose_of(delivery) == purpose


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://api.cloudflare.com/client/v4/accounts/a/ai-gateway/gateways/g/logs", True),
        ("https://API.cloudflare.com:443/client/v4/accounts/a", True),
        ("https://api.cloudflare.com.evil.example/client/v4/accounts/a", False),
        ("http://api.cloudflare.com/client/v4/accounts/a", False),
        ("https://api.cloudflare.com:8443/client/v4/accounts/a", False),
        ("https://api.cloudflare.com/client/v4evil/accounts/a", False),
        ("https://api.cloudflare.com/client/v4/../v5/accounts", False),
        ("https://gateway.ai.cloudflare.com/v1/a/g/anthropic/v1/messages", False),
    ],
)
def test_the_guard_puts_the_token_on_api_urls_only(url: str, sent: bool) -> None:
    import httpx2

    guard = ApiTokenGuard("https://api.cloudflare.com/client/v4", SecretStr("secret-cf-token"))
    request = httpx2.Request("GET", url, headers={"Authorization": "Bearer planted"})
    guard.apply(request)
    expected = "Bearer secret-cf-token" if sent else None
    assert request.headers.get("authorization") == expected


def test_a_plain_http_api_off_loopback_is_refused(make_settings: Any) -> None:
    from app.ledger.task import build_client

    settings = make_settings(
        cf_api_token="t" * 20,
        cf_api_base_url="http://api.example/client/v4",
        cf_account_id="a",
        cf_aig_gateway_id="g",
    )
    reason = build_client(settings)
    assert isinstance(reason, str) and "must be https" in reason


async def test_one_replica_at_a_time_reconciles(
    db_url: str, cf: FakeCloudflare, client: GatewayLogsClient
) -> None:
    """Two replicas' timers: the second leaves a run under way to the first (no logs read);
    a run asked for by hand waits for it instead, then goes ahead."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's advisory locks; on SQLite one process serves")
    replicas = [Database.from_url(db_url), Database.from_url(db_url)]
    try:
        await migrate.upgrade(replicas[0].engine)
        first, second = (Reconciler(db, client, writeback=False) for db in replicas)
        cf.hold = asyncio.Event()
        under_way = asyncio.create_task(first.run_unless_running())
        while not cf.requests:
            await asyncio.sleep(0.01)

        assert await second.run_unless_running() is None
        assert len(cf.requests) == 1
        by_hand = asyncio.create_task(second.run())
        await asyncio.sleep(0.3)
        assert not by_hand.done() and len(cf.requests) == 1

        cf.hold.set()
        assert await under_way is not None
        assert (await by_hand).logs_seen == 0
        assert len(cf.requests) == 2
        assert await second.run_unless_running() is not None  # nobody holds it now
    finally:
        for db in replicas:
            await db.dispose()
