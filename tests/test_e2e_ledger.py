"""Reconciliation end to end: the real server reviews through the fake gateway, a fake Cloudflare
API serves that gateway's logs, and the reconciled cost decides the next review's budget; the
feedback loop's outcomes are written back to the reviewing calls' logs once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.feedback.registry import FeedbackStore, MergeFacts
from app.feedback.signals import Effect
from app.ledger.task import Reconciler, build_client, build_reconciler
from app.quota import QuotaLedger
from app.store.tables import ledger_writebacks
from app.store.types import utcnow
from tests.conftest import OPERATOR_TOKEN
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.webhooks import pull_request_payload
from tests.harness import E2E, REPO, ClientFactory, ServerFactory, start_e2e

PATCH = "@@ -1,2 +1,4 @@\n a = 1\n+b = 2\n+c = a + b\n d = 4"
CF_TOKEN = "cf-api-token-0123456789"


def head(n: int) -> str:
    return f"{n:040x}"


def add_pr(e2e: E2E, number: int) -> dict[str, Any]:
    e2e.github.add_pull(
        REPO,
        number,
        head_sha=head(number),
        files=[{"filename": "src/a.py", "status": "modified", "patch": PATCH}],
    )
    return pull_request_payload("opened", repo=REPO, number=number, head_sha=head(number))


@pytest.fixture
async def cf(aiohttp_server: ServerFactory) -> FakeCloudflare:
    fake = FakeCloudflare(token=CF_TOKEN)
    fake.bind(await aiohttp_server(fake.make_app()))
    return fake


@pytest.fixture
async def e2e(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: Any,
    cf: FakeCloudflare,
    db_url: str,
) -> E2E:
    harness = await start_e2e(
        aiohttp_client,
        aiohttp_server,
        make_settings,
        model_max_output_tokens=1000,
        database_url=db_url,
        cf_api_token=CF_TOKEN,
        cf_api_base_url=cf.base_url,
        cf_account_id=cf.account_id,
        cf_aig_gateway_id=cf.gateway_id,
    )
    harness.github.add_repo(REPO)
    return harness


def reconciler(e2e: E2E) -> Reconciler:
    built = build_reconciler(e2e.services.settings, e2e.services.db)
    assert isinstance(built, Reconciler), built
    return built


async def test_a_reconciled_cost_over_the_budget_refuses_the_next_review(
    e2e: E2E, cf: FakeCloudflare
) -> None:
    e2e.github.set_file(
        REPO,
        ".github/aigateway.yml",
        "version: 1\nquota:\n  daily_usd: 1.0\n  on_exhausted: skip\n",
    )
    await e2e.handle("pull_request", add_pr(e2e, 1))
    quota = QuotaLedger(e2e.services.db)
    estimated = (await quota.spend(REPO)).daily.spent_usd
    assert 0 < estimated < 0.1  # by the estimates, a second review fits easily

    # The gateway billed each call far more than the pricing table said.
    cf.log_gateway_calls(e2e.gateway, created_at=utcnow(), cost=lambda _: 0.6)
    runner = reconciler(e2e)
    try:
        report = await runner.run()
    finally:
        await runner.client.aclose()
    assert report.corrected == 2 and report.differing == 2
    assert (await quota.spend(REPO)).daily.spent_usd == pytest.approx(1.2)
    entries = await quota.entries(REPO)
    assert all(e.gateway_cost_usd == pytest.approx(0.6) for e in entries)

    calls_before = len(e2e.gateway.requests)
    await e2e.handle("pull_request", add_pr(e2e, 2))
    assert len(e2e.gateway.requests) == calls_before  # no model was called
    [run] = e2e.github.check_runs_for(REPO, head(2))
    assert (run.conclusion, run.title) == ("neutral", "Not reviewed: budget exhausted")
    assert "daily budget" in (run.summary or "")

    # The API token went to the Cloudflare API only, never to the gateway or GitHub.
    assert all(r.authorization == f"Bearer {CF_TOKEN}" for r in cf.requests)
    assert all(CF_TOKEN not in str(r.headers) for r in e2e.gateway.requests)
    assert all(CF_TOKEN not in str(r.headers) for r in e2e.github.requests)


async def test_the_server_reconciles_on_its_own_and_reports_discrepancies(
    e2e: E2E, cf: FakeCloudflare
) -> None:
    # The server's timer runs at start: it reads the (empty) logs.
    for _ in range(1000):
        if any(r.method == "GET" for r in cf.requests):
            break
        await asyncio.sleep(0.01)
    assert any(r.method == "GET" for r in cf.requests)
    assert [t for t in asyncio.all_tasks() if t.get_name() == "sweep:ledger-reconcile"]
    await e2e.handle("pull_request", add_pr(e2e, 1))
    long_ago = utcnow() - timedelta(minutes=30)
    # The gateway logged one call the ledger lacks (an SDK retry) and missed a ledger row's log.
    missed = e2e.gateway.logged[0][0]
    cf.log_gateway_calls(e2e.gateway, created_at=utcnow(), skip=lambda log_id, _: log_id == missed)
    cf.add_log(
        "01JSTRAY",
        created_at=long_ago,
        cost=0.2,
        metadata={"app": "aigateway", "purpose": "review", "repository": REPO, "pr": 1},
    )
    cf.add_log("01JFOREIGN", created_at=long_ago, metadata={"app": "another-app"})
    runner = reconciler(e2e)
    try:
        await runner.run()
    finally:
        await runner.client.aclose()
    # The ledger row is only minutes old, so its missing log is not reported yet.
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    detail = await (await e2e.client.get("/healthz/detail", headers=headers)).json()
    assert detail["ledger"]["open_discrepancies"] == {
        "missing_from_gateway": 0,
        "missing_from_ledger": 1,
    }
    assert "warning" not in detail["ledger"]
    metrics = await (await e2e.client.get("/metrics", headers=headers)).text()
    assert 'aigateway_ledger_discrepancies{kind="missing_from_ledger"} 1.0' in metrics


async def test_outcomes_are_written_back_once_per_outcome(e2e: E2E, cf: FakeCloudflare) -> None:
    await e2e.handle("pull_request", add_pr(e2e, 1))
    await e2e.handle("pull_request", add_pr(e2e, 2))
    pr1_logs = {log_id for log_id, request in e2e.gateway.logged if request.metadata.get("pr") == 1}
    assert len(pr1_logs) == 2
    cf.log_gateway_calls(e2e.gateway, created_at=utcnow())
    feedback = FeedbackStore(e2e.services.db)
    merged = await feedback.record_merge(
        MergeFacts(
            repository=REPO,
            pr_number=1,
            head_sha=head(1),
            merge_sha="m" * 40,
            merged_at=utcnow() - timedelta(hours=1),
            merged_by_bot=False,
            commits=(head(1),),
            touched={},
            passed_checks=(),
            window=timedelta(days=7),
        )
    )
    assert merged is not None
    await feedback.add_effect(merged.id, Effect.REVERTED, evidence="commit:r", detail="reverted")

    runner = reconciler(e2e)
    try:
        first = await runner.run()
        assert first.writeback is not None and first.writeback.outcomes == 1
        assert {log_id for log_id, _ in cf.patches} == pr1_logs  # PR 2 is still open
        for log_id, body in cf.patches:
            assert body["feedback"] == -1 and body["score"] == 0
            assert body["metadata"]["outcome"] == "reverted"
            assert body["metadata"]["app"] == "aigateway" and len(body["metadata"]) <= 5
            assert cf.logs[log_id]["feedback"] == -1
        second = await runner.run()
        assert second.writeback is not None and second.writeback.outcomes == 0
        assert len(cf.patches) == 2  # nothing written twice
    finally:
        await runner.client.aclose()
    async with e2e.services.db.read() as conn:
        rows = (await conn.execute(select(ledger_writebacks))).all()
    assert [(r.change_id, r.outcome, r.logs) for r in rows] == [(merged.id, "reverted", 2)]


async def test_a_read_only_token_turns_the_write_back_off(e2e: E2E, cf: FakeCloudflare) -> None:
    await e2e.handle("pull_request", add_pr(e2e, 1))
    cf.log_gateway_calls(e2e.gateway, created_at=utcnow())
    feedback = FeedbackStore(e2e.services.db)
    change = await feedback.change_for_pr(REPO, 1)
    assert change is not None
    await feedback.add_effect(change.id, Effect.HUMAN_OVERRIDE, evidence="review:x", detail="d")
    cf.writable = False
    runner = reconciler(e2e)
    try:
        first = await runner.run()
        assert first.writeback is not None and first.writeback.stopped is not None
        assert first.corrected == 2  # reading still works
        patches_tried = sum(1 for r in cf.requests if r.method == "PATCH")
        assert patches_tried == 1
        await runner.run()
        assert sum(1 for r in cf.requests if r.method == "PATCH") == patches_tried
    finally:
        await runner.client.aclose()


async def test_without_an_api_token_nothing_reconciles(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, make_settings: Any
) -> None:
    plain = await start_e2e(aiohttp_client, aiohttp_server, make_settings)
    plain.github.add_repo(REPO)
    await plain.handle("pull_request", add_pr(plain, 1))
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    detail = await (await plain.client.get("/healthz/detail", headers=headers)).json()
    assert "ledger" not in detail
    [entry, _] = await QuotaLedger(plain.services.db).entries(REPO)
    assert entry.reconciled_at is None and entry.purpose == "review"
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "sweep:ledger-reconcile"]


async def test_a_failed_write_back_is_tried_again_next_run(e2e: E2E, cf: FakeCloudflare) -> None:
    await e2e.handle("pull_request", add_pr(e2e, 1))
    cf.log_gateway_calls(e2e.gateway, created_at=utcnow())
    feedback = FeedbackStore(e2e.services.db)
    change = await feedback.change_for_pr(REPO, 1)
    assert change is not None
    await feedback.add_effect(change.id, Effect.BROKE_CI, evidence="check:ci@m", detail="d")
    cf.patch_faults.extend([Fault(500)] * 5)  # more than the client's retries
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    client = build_client(e2e.services.settings, sleep=no_wait)
    assert not isinstance(client, str)
    runner = Reconciler(e2e.services.db, client)
    try:
        first = await runner.run()
        assert first.writeback is not None and first.writeback.error is not None
        assert (first.writeback.outcomes, cf.patches) == (0, [])
        assert len(waits) == 4
        second = await runner.run()
        assert second.writeback is not None and second.writeback.outcomes == 1
        assert len(cf.patches) == 2
        assert all(body["feedback"] == -1 and body["score"] == 20 for _, body in cf.patches)
    finally:
        await client.aclose()
