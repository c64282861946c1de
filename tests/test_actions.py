"""Acting on decisions: merges pinned and gated, intents, escalation, buttons, agent branches.

Every test runs the real acting code and the real handlers (through the composed router) against
the stateful fake GitHub over loopback, with the store on each database backend. Reviews are not
run here: a test builds the ``ReviewOutcome`` the pipeline would return, with a decision computed
by the real matrix (``decide``), so what is acted on is exactly what the matrix allows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gidgethub import sansio

from app.config_loader import ConfigLoader
from app.github.auth import AppAuth
from app.github.client import InstallationGitHubAPI
from app.handlers import build_router, dispatch
from app.handlers.context import HandlerContext
from app.metrics import Metrics
from app.policy.actions import (
    Acting,
    Checks,
    Gate,
    act_on_review,
    checks_gate,
    has_write_access,
    is_agent_branch,
    pull_gate,
    summarize_checks,
)
from app.policy.autonomy import Decision, DecisionInput, decide
from app.policy.decisions import ActionTaken, DecisionStore, IntentStatus
from app.policy.recheck import DecisionBasis
from app.policy.risk import PathChange, classify_paths
from app.queue import DeliveryQueue
from app.repo_config import (
    AutonomyConfig,
    AutonomyMode,
    EscalationConfig,
    MergeMethod,
    RepoConfig,
)
from app.review.model import Verdict
from app.review.pipeline import PullRequest, ReviewOutcome
from app.review.store import PUBLISHED
from app.services import Services
from app.store import migrate
from app.store.db import Database
from tests.conftest import SettingsFactory
from tests.fakes.github import FakeGitHub, Pull, fake_sha
from tests.fakes.webhooks import (
    check_run_payload,
    check_suite_payload,
    push_payload,
    status_payload,
)

REPO = "octo/demo"
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ACT_CONFIG = "version: 1\nautonomy:\n  mode: act\n"


def _patch(path: str) -> dict[str, Any]:
    return {"filename": path, "status": "modified", "patch": "@@ -1 +1,2 @@\n line\n+added"}


@dataclass
class World:
    """The fake GitHub, a client for it, the store, and a handler context for the router."""

    fake: FakeGitHub
    gh: InstallationGitHubAPI
    store: DecisionStore
    services: Services

    @property
    def acting(self) -> Acting:
        return Acting(store=self.store, identity=self.services.auth, configs=ConfigLoader())

    def ctx(self) -> HandlerContext:
        return HandlerContext(
            services=self.services,
            delivery_id=str(uuid.uuid4()),
            installation_id=42,
            repository=REPO,
            log=logging.getLogger("tests.actions"),
        )

    async def deliver(self, event: str, payload: dict[str, Any]) -> int:
        """Run one delivery through the composed router, as a worker would."""
        ctx = self.ctx()
        return await dispatch(
            build_router(),
            sansio.Event(payload, event=event, delivery_id=ctx.delivery_id),
            self.gh,
            ctx,
        )

    async def pull(self, number: int = 1) -> PullRequest:
        return PullRequest.from_api(await self.gh.getitem(f"/repos/{REPO}/pulls/{number}"))

    def repo_writes(self) -> list[Any]:
        """Writes to the repository (token exchanges are the client's own business)."""
        return [r for r in self.fake.writes() if r.path.startswith("/repos/")]

    def merges(self) -> list[Any]:
        return self.fake.calls("PUT", r"/pulls/\d+/merge$")

    def comments(self, number: int = 1) -> list[str]:
        return [str(c["body"]) for c in self.fake.comments_on(REPO, number)]


@pytest.fixture
async def world(
    aiohttp_server: ServerFactory, make_settings: SettingsFactory, db_url: str
) -> AsyncIterator[World]:
    fake = FakeGitHub()
    fake.attach(await aiohttp_server(fake.app))
    fake.add_repo(REPO)
    # The default branch's config says act, as the outcomes below do: every merge and escalation
    # reads it again right before acting.
    fake.set_file(REPO, ".github/aigateway.yml", "version: 1\nautonomy:\n  mode: act\n")
    settings = make_settings(github_api_url=fake.url, database_url=db_url)
    db = Database.from_url(db_url)
    await migrate.upgrade(db.engine)
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(
            session, app_id="1", private_key=settings.private_key_pem(), api_url=fake.url
        )
        services = Services(
            settings=settings,
            db=db,
            queue=DeliveryQueue(db, lease_seconds=30),
            session=session,
            auth=auth,
            metrics=Metrics(),
        )
        try:
            yield World(fake, services.github_for(42), DecisionStore(db), services)
        finally:
            await db.dispose()
    fake.assert_no_violations()
    fake.assert_no_unexpected()


def outcome_for(
    pr: PullRequest,
    *,
    paths: Iterable[str] = ("docs/guide.md",),
    confidence: float = 0.97,
    mode: AutonomyMode = AutonomyMode.ACT,
    escalation: EscalationConfig | None = None,
    check_run_id: int = 777,
) -> ReviewOutcome:
    """What the pipeline returns after publishing a review with both models approving."""
    autonomy = AutonomyConfig(mode=mode, escalation=escalation or EscalationConfig())
    config = RepoConfig(autonomy=autonomy)
    changes = [PathChange(p) for p in paths]
    risk = classify_paths(changes, config.risk.rules)
    inp = DecisionInput(
        tier=risk.tier,
        confidence=confidence,
        verdicts={"Claude": Verdict.APPROVE, "GPT": Verdict.APPROVE},
        any_blocker=False,
        review_complete=True,
        failed_reviewers=frozenset(),
        is_fork=pr.is_fork,
        is_draft=pr.draft,
        labels=pr.labels,
        unseen=(),
        carried=None,
        tripwire=(),
        autonomy=autonomy,
    )
    decision = decide(inp)
    return ReviewOutcome(
        PUBLISHED,
        pr=pr,
        risk=risk,
        decision=decision,
        config=config,
        check_run_id=check_run_id,
        conclusion="success",
        basis=DecisionBasis.of(inp, changes, decision),
    )


def add_pull(world: World, number: int = 1, **kwargs: Any) -> Pull:
    kwargs.setdefault("files", [_patch("docs/guide.md")])
    kwargs.setdefault("title", "Fix a typo")
    return world.fake.add_pull(REPO, number, **kwargs)


# ---------------------------------------------------------------------------------- pure parts


def test_pull_gate_and_checks_gate() -> None:
    def pr(**kw: Any) -> PullRequest:
        values: dict[str, Any] = {
            "repository": REPO,
            "number": 1,
            "state": "open",
            "head_sha": "a" * 40,
            "head_ref": "f",
            "head_repo": REPO,
            "base_ref": "main",
            "base_sha": "b" * 40,
            "default_branch": "main",
            "title": "t",
            "body": "",
            "draft": False,
            "author": "octocat",
            "labels": frozenset(),
            "mergeable": True,
            "mergeable_state": "clean",
        }
        return PullRequest(**{**values, **kw})

    def gate(pull: PullRequest, sha: str = "a" * 40) -> Gate | None:
        verdict = pull_gate(pull, sha)
        return None if verdict is None else verdict.gate

    assert gate(pr()) is None
    assert gate(pr(), "c" * 40) is Gate.DROP
    assert gate(pr(state="closed")) is Gate.DROP
    assert gate(pr(merged=True)) is Gate.READY  # the reviewed head, merged already
    assert gate(pr(merged=True), "c" * 40) is Gate.DROP
    assert gate(pr(draft=True)) is Gate.CANCEL
    assert gate(pr(mergeable_state="dirty")) is Gate.REFUSE
    assert gate(pr(mergeable_state="behind")) is Gate.REFUSE
    assert gate(pr(mergeable=False, mergeable_state="unknown")) is Gate.REFUSE
    green = Checks()
    for state in ("clean", "unstable", "has_hooks"):
        assert checks_gate(pr(mergeable_state=state), green).gate is Gate.READY
    assert checks_gate(pr(mergeable_state="blocked"), green).gate is Gate.REFUSE
    assert checks_gate(pr(mergeable_state="unknown"), green).gate is Gate.WAIT
    assert checks_gate(pr(mergeable=None), green).gate is Gate.WAIT
    assert checks_gate(pr(), Checks(pending=("ci",))).gate is Gate.WAIT
    assert checks_gate(pr(mergeable_state="blocked"), Checks(pending=("ci",))).gate is Gate.WAIT
    assert checks_gate(pr(), Checks(failed=("ci",), pending=("x",))).gate is Gate.DROP


def test_summarize_checks_ignores_only_our_own_review_check() -> None:
    statuses = [{"context": "ci/a", "state": "success"}, {"context": "ci/b", "state": "pending"}]
    runs = [
        {"name": "aigateway", "status": "in_progress", "app": {"id": 1}},
        {"name": "aigateway", "status": "completed", "conclusion": "failure", "app": {"id": 99}},
        {"name": "lint", "status": "completed", "conclusion": "skipped", "app": {"id": 5}},
        {"name": "test", "status": "completed", "conclusion": "timed_out", "app": {"id": 5}},
    ]
    checks = summarize_checks(statuses, runs, own_app_id=1)
    assert checks == Checks(pending=("ci/b",), failed=("aigateway", "test"))
    # No statuses at all is not "pending" (GitHub's combined state would say so).
    assert summarize_checks([], [], own_app_id=1) == Checks()


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        ({"permission": "admin", "role_name": "admin"}, True),
        ({"permission": "write", "role_name": "maintain"}, True),
        ({"permission": "write", "role_name": "write"}, True),
        ({"permission": "read", "role_name": "triage"}, False),
        ({"permission": "read", "role_name": "read"}, False),
        ({"permission": "none", "role_name": "none"}, False),
    ],
)
def test_write_access(answer: dict[str, str], allowed: bool) -> None:
    assert has_write_access(answer) is allowed


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("codex/fix-typo", True),
        ("claude/a/b", True),
        ("agent/x", True),
        ("bot/deps", True),
        ("feature/codex", False),
        ("codex", False),
        ("main", False),
    ],
)
def test_agent_branch_globs(branch: str, expected: bool) -> None:
    assert is_agent_branch(branch, AutonomyConfig().agent_branches) is expected


# ---------------------------------------------------------------------------------- merging


async def test_auto_merge_is_pinned_to_the_reviewed_sha(world: World) -> None:
    pull = add_pull(world)
    record = await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)

    assert record.action is ActionTaken.MERGED
    [merge] = world.merges()
    assert merge.json["sha"] == pull.head_sha
    assert merge.json["merge_method"] == "squash"
    assert merge.json["commit_title"] == "Fix a typo (#1)"
    assert merge.json["commit_message"] == (
        f"Merged by aigateway after review of {pull.head_sha[:12]}: confidence 0.97, risk low."
    )
    assert world.fake.pull(REPO, 1).merged
    [row] = await world.store.decisions_for(REPO, 1)
    assert (row.tier, row.decision, row.matrix_decision, row.mode, row.act) == (
        "low",
        "auto_merge",
        "auto_merge",
        "act",
        True,
    )
    assert (row.action_taken, row.check_run_id, row.head_sha) == ("merged", 777, pull.head_sha)
    assert row.confidence == pytest.approx(0.97)


async def test_merge_method_comes_from_the_config(world: World) -> None:
    add_pull(world)
    outcome = outcome_for(await world.pull())
    assert outcome.config is not None
    autonomy = outcome.config.autonomy.model_copy(update={"merge_method": MergeMethod.REBASE})
    config = outcome.config.model_copy(update={"autonomy": autonomy})
    await act_on_review(world.gh, dataclasses.replace(outcome, config=config), acting=world.acting)
    assert [m.json["merge_method"] for m in world.merges()] == ["rebase"]


async def test_moved_head_means_no_merge_and_one_comment(world: World) -> None:
    add_pull(world)
    reviewed = await world.pull()
    world.fake.move_head(REPO, 1, fake_sha("a newer push"))

    first = await act_on_review(world.gh, outcome_for(reviewed), acting=world.acting)
    again = await act_on_review(world.gh, outcome_for(reviewed), acting=world.acting)

    # The pull request is read again right before the merge: the new head is reviewed first.
    assert first.action is again.action is ActionTaken.MERGE_DROPPED
    assert "head moved" in first.result
    assert not world.fake.pull(REPO, 1).merged
    assert world.merges() == []
    assert world.comments() == []


async def test_a_head_that_moves_after_the_last_look_is_refused_by_the_sha_pin(
    world: World,
) -> None:
    add_pull(world)
    reviewed = await world.pull()
    world.fake.fail_next(
        "PUT", r"/pulls/1/merge$", 409, body={"message": "Head branch was modified."}
    )

    first = await act_on_review(world.gh, outcome_for(reviewed), acting=world.acting)

    assert first.action is ActionTaken.MERGE_REFUSED
    assert "409" in first.result
    assert not world.fake.pull(REPO, 1).merged
    [comment] = world.comments()
    assert reviewed.head_sha[:12] in comment and "did not merge" in comment


async def test_405_not_mergeable_ends_in_one_comment(world: World) -> None:
    add_pull(world)
    world.fake.fail_next("PUT", r"/pulls/1/merge$", 405, body={"message": "Base branch policy"})
    record = await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)
    assert record.action is ActionTaken.MERGE_REFUSED
    [comment] = world.comments()
    assert "405" in comment
    [intent] = await world.store.intents_for_sha(
        REPO, world.fake.pull(REPO, 1).head_sha, statuses=[IntentStatus.REFUSED]
    )
    assert intent.reason is not None and "405" in intent.reason


async def test_conflicts_are_refused_without_a_merge_call(world: World) -> None:
    add_pull(world, mergeable=False)
    record = await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)
    assert record.action is ActionTaken.MERGE_REFUSED
    assert world.merges() == []
    assert "merge conflicts" in world.comments()[0]


async def test_pending_checks_keep_an_intent_then_green_merges_exactly_once(
    world: World,
) -> None:
    pull = add_pull(world)
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "pending")
    world.fake.add_check_run(REPO, pull.head_sha, "tests", status="in_progress")

    record = await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)
    assert record.action is ActionTaken.MERGE_PENDING
    assert world.merges() == []
    [intent] = await world.store.intents_for_sha(REPO, pull.head_sha)
    assert intent.status is IntentStatus.PENDING

    # The status goes green, the check run still runs: keep waiting.
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "success")
    await world.deliver("status", status_payload(sha=pull.head_sha))
    assert world.merges() == []

    for run in world.fake.check_runs_for(REPO, pull.head_sha):
        run.status, run.conclusion = "completed", "success"
    suite = check_suite_payload(head_sha=pull.head_sha)
    await world.deliver("check_suite", suite)
    await world.deliver("check_suite", suite)  # the same event again
    await world.deliver("status", status_payload(sha=pull.head_sha))

    [merge] = world.merges()
    assert merge.json["sha"] == pull.head_sha and merge.status == 200
    assert (await world.store.intents_for_sha(REPO, pull.head_sha)) == []
    [row] = await world.store.decisions_for(REPO, 1)
    assert row.action_taken == ActionTaken.MERGED.value


async def test_pending_status_event_makes_no_requests(world: World) -> None:
    pull = add_pull(world)
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "pending")
    await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)
    world.fake.reset_records()
    await world.deliver("status", status_payload(sha=pull.head_sha, state="pending"))
    await world.deliver("status", status_payload(sha=fake_sha("other"), state="success"))
    assert world.fake.requests == []


async def test_an_event_arriving_while_another_worker_looks_is_not_lost(world: World) -> None:
    """Worker A reads the checks (still pending); the green event B arrives before A lets go."""
    pull = add_pull(world)
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "pending")
    await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)
    a_is_reading, let_a_answer = asyncio.Event(), asyncio.Event()
    reads = 0

    async def combined_status(_ctx: Any) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        state = "pending" if reads == 1 else "success"
        if reads == 1:
            a_is_reading.set()
            await let_a_answer.wait()
        return {"state": state, "statuses": [{"context": "ci/build", "state": state}]}

    world.fake.add_route(
        "GET",
        "/repos/{owner}/{repo}/commits/{ref}/status",
        combined_status,
        operation_id="repos/get-combined-status-for-ref",
    )
    a = asyncio.create_task(
        world.deliver("status", status_payload(sha=pull.head_sha, context="ci/other"))
    )
    await a_is_reading.wait()
    await world.deliver("status", status_payload(sha=pull.head_sha))  # B: finds it claimed
    assert world.merges() == []
    let_a_answer.set()
    await a

    [merge] = world.merges()
    assert merge.json["sha"] == pull.head_sha
    assert reads == 2


async def test_a_claim_that_ran_out_can_be_taken_over(world: World) -> None:
    store = DecisionStore(world.services.db, claim_seconds=-1)  # every claim is already stale
    intent = await store.upsert_intent(
        repository=REPO,
        pr_number=1,
        head_sha="a" * 40,
        merge_method="squash",
        commit_title="t",
        commit_message="m",
        requested_by=None,
    )
    assert await store.claim(intent.id)
    assert await store.claim(intent.id)  # the first worker died holding it
    held = DecisionStore(world.services.db)
    assert await held.claim(intent.id)
    assert not await held.claim(intent.id)
    assert await held.request_recheck(intent.id)
    assert not await held.release(intent.id, "waiting")  # asked to look again: still held
    assert await held.release(intent.id, "waiting")
    assert not await held.request_recheck(intent.id)  # nobody holds it now
    current = await held.get_intent(intent.id)
    assert current is not None and current.status is IntentStatus.PENDING


@pytest.mark.parametrize("how", ["status", "check_run"])
async def test_failed_checks_drop_the_intent(world: World, how: str) -> None:
    pull = add_pull(world)
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "pending")
    await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)

    if how == "status":
        world.fake.set_status(REPO, pull.head_sha, "ci/build", "failure")
        await world.deliver("status", status_payload(sha=pull.head_sha, state="failure"))
    else:
        world.fake.set_status(REPO, pull.head_sha, "ci/build", "success")
        world.fake.add_check_run(REPO, pull.head_sha, "tests", conclusion="failure")
        await world.deliver("check_suite", check_suite_payload(head_sha=pull.head_sha))

    assert world.merges() == []
    [intent] = await world.store.intents_for_sha(
        REPO, pull.head_sha, statuses=[IntentStatus.DROPPED]
    )
    assert intent.reason is not None and "did not pass" in intent.reason
    [row] = await world.store.decisions_for(REPO, 1)
    assert row.action_taken == ActionTaken.MERGE_DROPPED.value
    assert world.comments() == []


async def test_head_moved_while_waiting_drops_the_intent(world: World) -> None:
    pull = add_pull(world)
    old = pull.head_sha
    world.fake.set_status(REPO, old, "ci/build", "pending")
    await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)

    world.fake.move_head(REPO, 1, fake_sha("pushed while waiting"))
    world.fake.set_status(REPO, old, "ci/build", "success")
    await world.deliver("status", status_payload(sha=old))

    assert world.merges() == []
    [intent] = await world.store.intents_for_sha(REPO, old, statuses=[IntentStatus.DROPPED])
    assert intent.reason is not None and "head moved" in intent.reason


async def test_unknown_mergeability_waits_for_the_next_event(world: World) -> None:
    pull = add_pull(world, mergeable=None)
    record = await act_on_review(world.gh, outcome_for(await world.pull()), acting=world.acting)
    assert record.action is ActionTaken.MERGE_PENDING
    world.fake.pull(REPO, 1).mergeable = True
    await world.deliver("check_suite", check_suite_payload(head_sha=pull.head_sha))
    assert len(world.merges()) == 1


@pytest.mark.parametrize(
    ("setup", "mode", "action", "decision"),
    [
        pytest.param(
            {"fork": True}, AutonomyMode.ACT, ActionTaken.LEFT_FOR_HUMAN, "auto_pr", id="fork"
        ),
        pytest.param({}, AutonomyMode.SHADOW, ActionTaken.NOTHING, "auto_merge", id="shadow"),
        pytest.param({}, AutonomyMode.OFF, ActionTaken.NOTHING, "auto_merge", id="off"),
        pytest.param(
            {"labels": ["aigateway: no automation"]},
            AutonomyMode.ACT,
            ActionTaken.NOTHING,
            "auto_pr",
            id="no-automation-label",
        ),
    ],
)
async def test_guards_mean_no_merge(
    world: World, setup: dict[str, Any], mode: AutonomyMode, action: ActionTaken, decision: str
) -> None:
    add_pull(world, **setup)
    record = await act_on_review(
        world.gh, outcome_for(await world.pull(), mode=mode), acting=world.acting
    )
    assert record.action is action
    assert world.merges() == []
    assert world.repo_writes() == []
    [row] = await world.store.decisions_for(REPO, 1)
    assert (row.matrix_decision, row.action_taken) == ("auto_merge", action.value)
    assert row.decision == decision
    if mode is AutonomyMode.SHADOW:
        assert row.result == "would have merged (shadow mode)"


async def test_auto_pr_is_left_for_a_human(world: World) -> None:
    add_pull(world, files=[_patch("src/app.py")])
    record = await act_on_review(
        world.gh,
        outcome_for(await world.pull(), paths=["src/app.py"], confidence=0.7),
        acting=world.acting,
    )
    assert record.action is ActionTaken.LEFT_FOR_HUMAN
    assert world.repo_writes() == []


# ---------------------------------------------------------------------------------- escalating


async def test_escalation_asks_the_code_owners_of_the_risky_paths(world: World) -> None:
    add_pull(world, files=[_patch("infra/main.tf"), _patch("docs/a.md")], user="octocat")
    world.fake.set_file(
        REPO,
        ".github/CODEOWNERS",
        "*       @everyone\n/infra/ @wrong\n/infra/ @bob @octocat @octo/platform\n/docs/ @docs\n",
    )
    world.fake.set_file(REPO, "CODEOWNERS", "* @shadowed\n")  # the .github one is used
    outcome = outcome_for(await world.pull(), paths=["infra/main.tf", "docs/a.md"])
    assert outcome.decision is not None and outcome.decision.decision is Decision.ESCALATE

    record = await act_on_review(world.gh, outcome, acting=world.acting)

    assert record.action is ActionTaken.ESCALATED
    [label] = world.fake.calls("POST", r"/issues/1/labels$")
    assert label.json == {"labels": ["aigateway: needs human"]}
    [asked] = world.fake.calls("POST", r"/requested_reviewers$")
    assert asked.json == {"reviewers": ["bob"], "team_reviewers": ["platform"]}
    pull = world.fake.pull(REPO, 1)
    assert pull.labels == ["aigateway: needs human"]
    assert (pull.requested_reviewers, pull.requested_teams) == (["bob"], ["platform"])
    assert world.merges() == [] and world.comments() == []


async def test_escalation_falls_back_to_the_configured_people(world: World) -> None:
    add_pull(world, files=[_patch(".github/workflows/ci.yml")], user="octocat")
    world.fake.set_file(REPO, "docs/CODEOWNERS", "/.github/ @octocat\n")  # only the author
    world.fake.set_file(
        REPO,
        ".github/aigateway.yml",
        "version: 1\nautonomy:\n  mode: act\n  escalation:\n"
        "    reviewers: [carol, octocat]\n    teams: [octo/security]\n",
    )
    outcome = outcome_for(
        await world.pull(),
        paths=[".github/workflows/ci.yml"],
        escalation=EscalationConfig(reviewers=("carol", "octocat"), teams=("octo/security",)),
    )
    await act_on_review(world.gh, outcome, acting=world.acting)
    [asked] = world.fake.calls("POST", r"/requested_reviewers$")
    assert asked.json == {"reviewers": ["carol"], "team_reviewers": ["security"]}


async def test_escalation_with_nobody_to_ask_says_so_once(world: World) -> None:
    add_pull(world, files=[_patch(".github/workflows/ci.yml")])
    outcome = outcome_for(await world.pull(), paths=[".github/workflows/ci.yml"])
    first = await act_on_review(world.gh, outcome, acting=world.acting)
    await act_on_review(world.gh, outcome, acting=world.acting)
    assert "nobody" in first.result
    assert world.fake.calls("POST", r"/requested_reviewers$") == []
    [comment] = world.comments()
    assert "found nobody to request a review from" in comment
    assert "`.github/workflows/ci.yml`" in comment


# ---------------------------------------------------------------------------------- buttons


async def _escalated(world: World, **pull: Any) -> tuple[Pull, int]:
    """A pull request escalated by a review in act mode, with its check run."""
    world.fake.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    created = add_pull(world, files=[_patch(".github/workflows/ci.yml")], **pull)
    run = world.fake.add_check_run(
        REPO,
        created.head_sha,
        "aigateway",
        conclusion="action_required",
        app_slug="aigateway",
        app_id=1,
    )
    outcome = outcome_for(
        await world.pull(), paths=[".github/workflows/ci.yml"], check_run_id=run.id
    )
    await act_on_review(world.gh, outcome, acting=world.acting)
    world.fake.reset_records()
    return created, run.id


def _approve(pull: Pull, run_id: int, sender: str, **kw: Any) -> dict[str, Any]:
    return check_run_payload(
        "requested_action",
        check_run_id=run_id,
        head_sha=kw.pop("head_sha", pull.head_sha),
        requested_action="approve_merge",
        sender=sender,
        **kw,
    )


async def test_approve_merge_by_a_reader_is_refused(world: World) -> None:
    pull, run_id = await _escalated(world)
    world.fake.set_permission(REPO, "reader", "read")
    await world.deliver("check_run", _approve(pull, run_id, "reader"))
    await world.deliver("check_run", _approve(pull, run_id, "reader"))
    assert world.merges() == []
    comments = [c for c in world.comments() if "Approve merge" in c]
    assert len(comments) == 1 and "write access" in comments[0]
    rows = [r for r in await world.store.decisions_for(REPO, 1) if r.actor == "reader"]
    assert [r.action_taken for r in rows] == ["approval_refused"] * 2


async def test_approve_merge_by_a_writer_merges_the_check_runs_head(world: World) -> None:
    pull, run_id = await _escalated(world)
    world.fake.set_permission(REPO, "maintainer", "maintain")
    await world.deliver("check_run", _approve(pull, run_id, "maintainer"))

    [merge] = world.merges()
    assert merge.json["sha"] == pull.head_sha
    assert "on maintainer's approval" in merge.json["commit_message"]
    assert "risk critical" in merge.json["commit_message"]
    [row] = [r for r in await world.store.decisions_for(REPO, 1) if r.actor == "maintainer"]
    assert (row.action_taken, row.decision, row.tier, row.check_run_id) == (
        "merged",
        "escalate",
        "critical",
        run_id,
    )
    assert world.fake.calls("GET", r"/collaborators/maintainer/permission$")


async def test_approve_merge_waits_for_pending_checks(world: World) -> None:
    pull, run_id = await _escalated(world)
    world.fake.set_permission(REPO, "maintainer", "write")
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "pending")
    await world.deliver("check_run", _approve(pull, run_id, "maintainer"))
    assert world.merges() == []
    world.fake.set_status(REPO, pull.head_sha, "ci/build", "success")
    await world.deliver("status", status_payload(sha=pull.head_sha))
    [merge] = world.merges()
    assert merge.json["sha"] == pull.head_sha


@pytest.mark.parametrize("who", ["author", "moved-head", "shadow"])
async def test_approve_merge_refusals(world: World, who: str) -> None:
    pull, run_id = await _escalated(world, user="octocat")
    reviewed = pull.head_sha
    world.fake.set_permission(REPO, "octocat", "admin")
    world.fake.set_permission(REPO, "maintainer", "admin")
    sender = "octocat" if who == "author" else "maintainer"
    if who == "moved-head":
        world.fake.move_head(REPO, 1, fake_sha("newer"))
    if who == "shadow":
        world.fake.set_file(REPO, ".github/aigateway.yml", "version: 1\n")
    await world.deliver("check_run", _approve(pull, run_id, sender, head_sha=reviewed))
    assert world.merges() == []
    [comment] = [c for c in world.comments() if "Approve merge" in c]
    expected = {"author": "author", "moved-head": "head moved", "shadow": "`shadow`"}[who]
    assert expected in comment


async def test_check_runs_of_other_apps_are_ignored(world: World) -> None:
    pull, run_id = await _escalated(world)
    world.fake.set_permission(REPO, "maintainer", "admin")
    await world.deliver("check_run", _approve(pull, run_id, "maintainer", app_id=999))
    await world.deliver("check_run", _approve(pull, run_id, "maintainer", name="ci"))
    assert world.merges() == []
    assert [r for r in world.fake.requests if r.path != "/app"] == []


async def test_rereview_without_a_gateway_reports_it_on_the_commit(world: World) -> None:
    pull, run_id = await _escalated(world)
    world.fake.set_permission(REPO, "octocat", "write")
    payload = check_run_payload(
        "requested_action", check_run_id=run_id, head_sha=pull.head_sha, requested_action="rereview"
    )
    await world.deliver("check_run", payload)
    await world.deliver(
        "check_run", check_run_payload("rerequested", check_run_id=run_id, head_sha=pull.head_sha)
    )
    assert len(world.fake.calls("GET", r"/pulls/1$")) == 2
    created = world.fake.calls("POST", r"/check-runs$")
    assert [c.json["output"]["title"] for c in created] == ["Review unavailable"] * 2


# ---------------------------------------------------------------------------------- agent branches


def _agent_push(branch: str, sha: str, **kw: Any) -> dict[str, Any]:
    return push_payload(
        ref=branch,
        after=sha,
        commits=["Fix the parser\n\nLonger text.", "Add tests for @someone's case"],
        **kw,
    )


async def test_push_to_an_agent_branch_opens_one_pr(world: World) -> None:
    world.fake.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    first, second = fake_sha("agent 1"), fake_sha("agent 2")
    world.fake.set_branch(REPO, "codex/fix-parser", first)
    await world.deliver("push", _agent_push("codex/fix-parser", first))

    [created] = world.fake.calls("POST", r"/repos/octo/demo/pulls$")
    assert created.json["head"] == "codex/fix-parser"
    assert created.json["base"] == "main"
    assert created.json["title"] == "Add tests for @someone's case"
    body = created.json["body"]
    assert "Opened by **aigateway**" in body
    assert f"`{first[:7]}` Add tests for @\u200bsomeone's case" in body
    assert "Fix the parser" in body and "Longer text" not in body
    [listed] = world.fake.calls("GET", r"/repos/octo/demo/pulls$")
    assert listed.query["head"] == "octo:codex/fix-parser"

    world.fake.set_branch(REPO, "codex/fix-parser", second)
    await world.deliver("push", _agent_push("codex/fix-parser", second))
    assert len(world.fake.calls("POST", r"/repos/octo/demo/pulls$")) == 1
    [opened] = list(world.fake.repo(REPO).pulls.values())
    [row] = await world.store.decisions_for(REPO, opened.number)
    assert (row.decision, row.action_taken, row.head_sha) == ("auto_pr", "opened_pr", first)


@pytest.mark.parametrize(
    ("config", "branch", "extra"),
    [
        pytest.param(ACT_CONFIG, "feature/x", {}, id="not-an-agent-branch"),
        pytest.param("version: 1\n", "codex/x", {}, id="shadow-mode"),
        pytest.param("version: 1\nautonomy:\n  mode: off\n", "codex/x", {}, id="off"),
        pytest.param(ACT_CONFIG, "codex/x", {"deleted": True}, id="branch-deleted"),
        pytest.param(ACT_CONFIG, "main", {}, id="default-branch"),
        pytest.param(ACT_CONFIG, "codex/x", {"pusher": "aigateway[bot]"}, id="own-push"),
        pytest.param(ACT_CONFIG, "refs/tags/codex/v1", {}, id="tag"),
    ],
)
async def test_pushes_that_open_no_pr(
    world: World, config: str | None, branch: str, extra: dict[str, Any]
) -> None:
    if config is not None:
        world.fake.set_file(REPO, ".github/aigateway.yml", config)
    sha = fake_sha(branch)
    world.fake.set_branch(REPO, branch.removeprefix("refs/tags/"), sha)
    await world.deliver("push", _agent_push(branch, sha, **extra))
    assert world.fake.calls("POST", r"/pulls$") == []
    assert world.fake.repo(REPO).pulls == {}


async def test_agent_branches_come_from_the_config(world: World) -> None:
    world.fake.set_file(
        REPO, ".github/aigateway.yml", ACT_CONFIG + "  agent_branches: ['robots/**']\n"
    )
    for branch in ("robots/a", "codex/b"):
        world.fake.set_branch(REPO, branch, fake_sha(branch))
        await world.deliver("push", _agent_push(branch, fake_sha(branch)))
    [created] = world.fake.calls("POST", r"/repos/octo/demo/pulls$")
    assert created.json["head"] == "robots/a"
