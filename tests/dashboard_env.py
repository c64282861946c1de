"""The dashboard's test world: the real app against a fake GitHub (with its OAuth web flow),
and a database seeded through the bot's own writers (ledger, reviews, decisions, outbox, change
registry), so the figures the page shows are the ones the bot would have recorded.

Three repositories: ``octo/demo`` (with budgets), ``octo/site``, and ``rival/secret``, another
organisation's, which the GitHub user of the tests (``alice``) cannot read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncConnection

from app.feedback.registry import FeedbackStore, MergeFacts
from app.feedback.signals import Effect
from app.policy.actions import record_decision_in
from app.policy.autonomy import AutonomyDecision, Decision
from app.policy.decisions import DecisionStore
from app.policy.outbox import ActionKind, Outbox
from app.policy.risk import RiskReport, Tier
from app.quota import CallOutcome, QuotaLedger, Reservation
from app.repo_config import AutonomyMode, QuotaConfig, RepoConfig
from app.review.pipeline import PullRequest, ReviewOutcome
from app.review.store import PUBLISHED, ReviewStore
from app.server import SERVICES, create_app
from app.store.db import Database
from tests.fakes.github import FakeGitHub

CLIENT_ID = "Iv1.dashboardtests"
CLIENT_SECRET = "dashboard-client-secret-0123456789"
OURS = ("octo/demo", "octo/site")
THEIRS = "rival/secret"
USER = "alice"

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class Seeded:
    today: date
    #: repository -> day -> what the ledger's calls cost (refused calls excluded)
    per_day: dict[str, dict[date, float]] = field(default_factory=dict)
    daily_budget: float = 1.0


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def _at(today: date, days_ago: int, minute: int) -> datetime:
    return datetime(today.year, today.month, today.day, 0, minute, tzinfo=UTC) - timedelta(
        days=days_ago
    )


async def seed(db: Database) -> Seeded:
    """Ledger calls over three days, budgets, reviews with decisions, outcomes, failures."""
    now = datetime.now(UTC)
    seeded = Seeded(today=now.date())
    # The budgets a review reserved under (what ``quota_budgets`` remembers).
    ledger = QuotaLedger(db)
    held = await ledger.reserve(
        repository="octo/demo",
        pr_number=1,
        amount_usd=0.0,
        budget=QuotaConfig(daily_usd=seeded.daily_budget, weekly_usd=5.0, per_pr_usd=2.0),
    )
    assert isinstance(held, Reservation), held
    await ledger.release(held.id)

    calls = [
        ("octo/demo", 2, 0.1234),
        ("octo/demo", 2, 0.05),
        ("octo/demo", 1, 0.2),
        ("octo/demo", 0, 1.5),  # over its daily budget
        ("octo/site", 1, 0.0421),
        (THEIRS, 0, 9.99),
    ]
    for minute, (repository, days_ago, cost) in enumerate(calls, start=1):
        moment = _at(seeded.today, days_ago, minute)
        await QuotaLedger(db, clock=_fixed(moment)).record_call(
            repository=repository,
            pr_number=1,
            installation_id=42,
            delivery_id=None,
            provider="anthropic",
            model="claude-sonnet-4-6",
            input_tokens=1000,
            output_tokens=200,
            cost_usd=cost,
            outcome=CallOutcome.OK,
        )
        day = moment.date()
        by_day = seeded.per_day.setdefault(repository, {})
        by_day[day] = by_day.get(day, 0.0) + cost
    refused_at = _at(seeded.today, 0, 30)
    await QuotaLedger(db, clock=lambda: refused_at).record_call(
        repository="octo/demo",
        pr_number=9,
        installation_id=42,
        delivery_id=None,
        provider="openai",
        model="gpt-5-mini",
        cost_usd=None,
        outcome=CallOutcome.REFUSED,
    )
    decided = now - timedelta(days=3)
    feedback = FeedbackStore(db)
    reviews = [
        ("octo/demo", 1, "low", 0.95, "auto_merge", 0.1734),
        ("octo/demo", 2, "medium", 0.9, "auto_merge", 0.2),
        ("octo/demo", 3, "high", 0.6, "escalate", 1.5),
        (THEIRS, 7, "critical", 0.3, "escalate", 9.99),
    ]
    for repository, number, tier, confidence, decision, cost in reviews:
        await _review(db, repository, number, tier, confidence, decision, cost)
    for number, bad in ((1, False), (2, True)):
        change = await feedback.record_merge(
            MergeFacts(
                repository="octo/demo",
                pr_number=number,
                head_sha=_sha("octo/demo", number),
                merge_sha=_sha("merge", number),
                merged_at=decided,
                merged_by_bot=True,
                commits=(_sha("octo/demo", number),),
                touched={"app.py": ((1, 3),)},
                passed_checks=("ci",),
                window=timedelta(days=1),
            )
        )
        assert change is not None
        if bad:
            await feedback.add_effect(
                change.id,
                Effect.REVERTED,
                evidence="revert-commit",
                detail="reverted",
                observed_at=decided + timedelta(hours=2),
            )
    for repository, number in (("octo/demo", 3), (THEIRS, 7)):
        await _fail_action(db, repository, number)
    return seeded


def _sha(repository: str, number: int) -> str:
    return hashlib.sha1(f"{repository}#{number}".encode(), usedforsecurity=False).hexdigest()


async def _review(
    db: Database,
    repository: str,
    number: int,
    tier: str,
    confidence: float,
    decision: str,
    cost: float,
) -> None:
    """A published review and, in its transaction, its decision, queued action and registered
    change, written by the pipeline's own recorder."""
    store = ReviewStore(db)
    head = _sha(repository, number)
    row = await store.start(
        repository=repository,
        pr_number=number,
        head_sha=head,
        base_sha=None,
        delivery_id=None,
        incremental_from=None,
    )

    outcome = ReviewOutcome(
        status=PUBLISHED,
        pr=PullRequest(
            repository=repository,
            number=number,
            state="open",
            head_sha=head,
            head_ref="feature",
            head_repo=repository,
            base_ref="main",
            base_sha="0" * 40,
            default_branch="main",
            title="A change",
            body="",
            draft=False,
            author="octocat",
            labels=frozenset(),
        ),
        risk=RiskReport(tier=Tier(tier), paths=()),
        decision=AutonomyDecision(
            tier=Tier(tier),
            confidence=confidence,
            matrix_decision=Decision(decision),
            decision=Decision(decision),
            act=True,
            mode=AutonomyMode.ACT,
            guards=(),
        ),
        config=RepoConfig(),
    )

    async def also(conn: AsyncConnection) -> None:
        await record_decision_in(
            conn, outcome, store=DecisionStore(db), outbox=Outbox(db), installation_id=42
        )

    await store.finish(
        row.id,
        status=PUBLISHED,
        confidence=confidence,
        conclusion="success",
        cost_usd=cost,
        also=also,
    )


async def _fail_action(db: Database, repository: str, number: int) -> None:
    """The escalation the decision queued, given up after its attempts (as the sender does)."""
    outbox = Outbox(db)
    (queued,) = await outbox.for_head(repository, number, _sha(repository, number))
    claimed = await outbox.claim(queued.id, early=True)
    assert claimed is not None and claimed.kind is ActionKind.ESCALATE
    await outbox.attempt_failed(claimed, "GitHub answered 502", max_attempts=1)


@dataclass
class DashboardEnv:
    client: TestClient[Any, Any]
    github: FakeGitHub
    seeded: Seeded

    @property
    def db(self) -> Database:
        db: Database = self.client.app[SERVICES].db
        return db


async def start_dashboard(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: Callable[..., Any],
    db_url: str,
    **overrides: Any,
) -> DashboardEnv:
    github = FakeGitHub()
    github.attach(await aiohttp_server(github.app))
    github.set_oauth_client(CLIENT_ID, CLIENT_SECRET)
    for name in (*OURS, THEIRS):
        github.add_repo(name, installation_id=42 if name.startswith("octo/") else 77)
    github.grant(USER, *OURS)
    github.sign_in(USER)
    settings = make_settings(
        database_url=db_url,
        github_api_url=github.url,
        github_web_url=github.web_url,
        github_client_id=CLIENT_ID,
        github_client_secret=CLIENT_SECRET,
        **overrides,
    )
    client = await aiohttp_client(create_app(settings, run_workers=False))
    seeded = await seed(client.app[SERVICES].db)
    return DashboardEnv(client=client, github=github, seeded=seeded)
