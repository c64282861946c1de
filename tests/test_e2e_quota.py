"""Budgets end to end: the ledger, downgrades, skips with one notice, and no overspend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.quota import QuotaLedger
from tests.fakes.gateway import FakeUsage
from tests.fakes.webhooks import pull_request_payload
from tests.harness import E2E, REPO, ClientFactory, ServerFactory, start_e2e

PATCH = "@@ -1,2 +1,4 @@\n a = 1\n+b = 2\n+c = a + b\n d = 4"


def head(n: int) -> str:
    return f"{n:x}" * 40 if n < 16 else f"{n:040x}"


def config(quota: str) -> str:
    return f"version: 1\nquota:\n{quota}"


@pytest.fixture
async def e2e(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, make_settings: Any
) -> E2E:
    harness = await start_e2e(
        aiohttp_client, aiohttp_server, make_settings, model_max_output_tokens=1000
    )
    harness.github.add_repo(REPO)
    return harness


def add_pr(e2e: E2E, number: int) -> dict[str, Any]:
    sha = head(number)
    e2e.github.add_pull(
        REPO,
        number,
        head_sha=sha,
        files=[{"filename": "src/a.py", "status": "modified", "patch": PATCH}],
    )
    return pull_request_payload("opened", repo=REPO, number=number, head_sha=sha)


async def test_every_model_call_lands_in_the_ledger_and_the_summary_shows_spend(e2e: E2E) -> None:
    e2e.github.set_file(REPO, ".github/aigateway.yml", config("  daily_usd: 5\n"))
    await e2e.handle("pull_request", add_pr(e2e, 1))
    entries = await QuotaLedger(e2e.services.db).entries(REPO)
    assert {(e.provider, e.outcome.value) for e in entries} == {
        ("anthropic", "ok"),
        ("openai", "ok"),
    }
    logged = {r.header("cf-aig-log-id") for r in e2e.gateway.requests}
    for entry in entries:
        assert entry.pr_number == 1 and entry.input_tokens > 0 and entry.output_tokens > 0
        assert entry.cost_usd is not None and entry.cost_usd > 0
        assert entry.log_id is not None and entry.reservation_id is not None
        assert entry.delivery_id is not None
    assert logged is not None
    [run] = e2e.github.check_runs_for(REPO, head(1))
    assert "| daily |" in (run.summary or "")
    assert "This review" in (run.summary or "") or "this review" in (run.summary or "")
    report = await QuotaLedger(e2e.services.db).spend(REPO)
    assert report.daily.spent_usd == pytest.approx(sum(e.cost_usd or 0 for e in entries))


async def test_a_tight_budget_downgrades_the_models_and_says_so(e2e: E2E) -> None:
    e2e.github.set_file(REPO, ".github/aigateway.yml", config("  per_pr_usd: 0.03\n"))
    await e2e.handle("pull_request", add_pr(e2e, 1))
    [claude] = e2e.gateway.requests_for("anthropic")
    assert claude.model == "claude-haiku-4-5"
    [review] = e2e.github.pull(REPO, 1).reviews
    assert "Model downgraded (anthropic)" in review["body"]
    assert "claude-haiku-4-5" in review["body"]


async def test_an_exhausted_budget_skips_with_one_notice_per_window(e2e: E2E) -> None:
    e2e.github.set_file(
        REPO, ".github/aigateway.yml", config("  per_pr_usd: 0.0001\n  on_exhausted: skip\n")
    )
    await e2e.handle("pull_request", add_pr(e2e, 1))
    assert e2e.gateway.requests == []
    [run] = e2e.github.check_runs_for(REPO, head(1))
    assert (run.conclusion, run.title) == ("neutral", "Not reviewed: budget exhausted")
    assert "per-PR budget" in (run.summary or "")
    assert len(e2e.github.comments_on(REPO, 1)) == 1

    e2e.github.move_head(REPO, 1, head(2))
    await e2e.handle(
        "pull_request",
        pull_request_payload("synchronize", repo=REPO, number=1, head_sha=head(2), before=head(1)),
    )
    assert e2e.gateway.requests == []
    assert len(e2e.github.comments_on(REPO, 1)) == 1  # no second notice in the same window
    entries = await QuotaLedger(e2e.services.db).entries(REPO)
    assert {e.outcome.value for e in entries} == {"refused"}


async def test_many_reviews_at_once_never_overspend_a_small_budget(e2e: E2E) -> None:
    budget = 0.12
    e2e.github.set_file(
        REPO, ".github/aigateway.yml", config(f"  daily_usd: {budget}\n  on_exhausted: skip\n")
    )
    e2e.gateway.anthropic.latency = 0.05
    # Each review really costs enough that twelve cannot all fit, however the workers interleave
    # them: the refusals below do not depend on the reviews overlapping in time.
    e2e.gateway.anthropic.usage = FakeUsage(output_tokens=900)
    payloads = [add_pr(e2e, n) for n in range(1, 13)]
    ids = [await e2e.deliver("pull_request", p) for p in payloads]
    rows = await asyncio.gather(*(e2e.wait_done(i, timeout=60) for i in ids))
    assert all(r.status == "done" for r in rows)
    entries = await QuotaLedger(e2e.services.db).entries(REPO, limit=1000)
    spent = sum(e.cost_usd or 0.0 for e in entries)
    assert 0 < spent <= budget
    outcomes = {e.outcome.value for e in entries}
    assert "refused" in outcomes and "ok" in outcomes  # some ran, the rest were held back
    report = await QuotaLedger(e2e.services.db).spend(REPO)
    assert report.daily.spent_usd <= budget + 1e-9
