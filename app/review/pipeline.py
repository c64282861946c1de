"""The review pipeline: the one place that knows the order of the stages.

    config (default branch) → check run in_progress → files (and, on a push, the compare diff)
    → risk tiers → slices → Claude ∥ GPT per slice → consensus → autonomy decision
    → head still current? → PR review + check run completed → outcome (for the actions stage)

Everything that waits on the network after the files are fetched runs concurrently: every slice
goes to both models at once, bounded only by ``REVIEW_CONCURRENCY``. The model stage is also
available alone (``review_files``) for ``python -m app review-diff``, which posts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config_loader import fetch_text_file
from app.feedback.registry import FeedbackStore
from app.feedback.tightening import Rules
from app.gateway import AnswerCall, CallMetadata, ReviewCall, Reviewer
from app.github.writes import create, find_comment, marker
from app.health import HealthMonitor
from app.policy.autonomy import AutonomyDecision, Decision, DecisionInput, decide
from app.policy.carry import Carried, ReviewFacts, Unseen, fold
from app.policy.recheck import DecisionBasis, waived, with_tiers
from app.policy.risk import PathChange, RiskReport, Tier, classify_paths, render_risk_table
from app.policy.tripwire import TripwireHit, TripwireInput, scan
from app.quota import (
    CallOutcome,
    Plan,
    QuotaLedger,
    Refusal,
    Reservation,
    SpendReport,
    format_spend_report,
    plan_calls,
    repository_budget,
)
from app.repo_config import QuotaConfig, RepoConfig, format_errors_markdown
from app.review import publish, render
from app.review.consensus import Consensus, SliceOutcome, combine
from app.review.coordinator import ReviewCoordinator, ReviewTicket
from app.review.diff import (
    DEFAULT_IGNORE_GLOBS,
    FileDiff,
    LineMap,
    SliceResult,
    parse_github_files,
    parse_unified_diff,
    slice_diff,
)
from app.review.generated import GitAttributes, mark_generated
from app.review.model import ModelReview, Severity, Verdict
from app.review.prompt import PullRequestInfo, new_nonce, slice_prompt, system_prompt
from app.review.sanitize import clean
from app.review.store import FAILED, PUBLISHED, SKIPPED, SUPERSEDED, ReviewRow, ReviewStore
from app.settings import Settings
from app.store.types import utcnow

log = logging.getLogger(__name__)

DISPLAY_NAMES = {"anthropic": "Claude", "openai": "GPT"}
_TIER_ORDER = {Tier.CRITICAL: 0, Tier.HIGH: 1, Tier.MEDIUM: 2, Tier.LOW: 3}
PROGRESS_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class PullRequest:
    """The fields of a pull request the pipeline and the actions use."""

    repository: str
    number: int
    state: str
    head_sha: str
    head_ref: str
    head_repo: str | None
    base_ref: str
    base_sha: str
    default_branch: str
    title: str
    body: str
    draft: bool
    author: str
    labels: frozenset[str]
    mergeable: bool | None = None
    mergeable_state: str | None = None
    merged: bool = False

    @property
    def key(self) -> str:
        return f"{self.repository}#{self.number}"

    @property
    def is_fork(self) -> bool:
        return self.head_repo is None or self.head_repo.lower() != self.repository.lower()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> PullRequest:
        head = data.get("head") or {}
        base = data.get("base") or {}
        base_repo = base.get("repo") or {}
        head_repo = head.get("repo") or None
        return cls(
            repository=str(base_repo.get("full_name", "")),
            number=int(data["number"]),
            state=str(data.get("state", "open")),
            head_sha=str(head.get("sha", "")),
            head_ref=str(head.get("ref", "")),
            head_repo=str(head_repo["full_name"]) if head_repo else None,
            base_ref=str(base.get("ref", "")),
            base_sha=str(base.get("sha", "")),
            default_branch=str(base_repo.get("default_branch") or base.get("ref") or "main"),
            title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            draft=bool(data.get("draft", False)),
            author=str((data.get("user") or {}).get("login", "")),
            labels=frozenset(
                str(label.get("name", ""))
                for label in data.get("labels") or []
                if isinstance(label, dict)
            ),
            mergeable=data.get("mergeable"),
            mergeable_state=data.get("mergeable_state"),
            merged=bool(data.get("merged", False)),
        )

    def info(self) -> PullRequestInfo:
        return PullRequestInfo(
            repository=self.repository,
            number=self.number,
            title=self.title,
            body=self.body,
            base_ref=self.base_ref,
            head_ref=self.head_ref,
        )


@dataclass(frozen=True, slots=True)
class ModelRun:
    """What the model stage produced for one set of files."""

    slicing: SliceResult
    consensus: Consensus
    calls: tuple[ReviewCall, ...]
    capped: tuple[tuple[str, str], ...]
    outcomes: tuple[SliceOutcome, ...] = ()
    resumed: bool = False  # rebuilt from stored answers: no model was called this time

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd or 0.0 for c in self.calls)

    @property
    def unpriced_models(self) -> tuple[str, ...]:
        return tuple(sorted({c.model for c in self.calls if c.cost_usd is None and c.input_tokens}))


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    status: str  # published | superseded | skipped | failed
    reason: str = ""
    pr: PullRequest | None = None
    run: ModelRun | None = None
    risk: RiskReport | None = None
    decision: AutonomyDecision | None = None
    config: RepoConfig | None = None
    check_run_id: int | None = None
    conclusion: str | None = None
    review_id: int | None = None
    basis: DecisionBasis | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Spending:
    """One review's reservation: calls are recorded as they finish, the rest released at the end."""

    ledger: QuotaLedger
    reservation: Reservation
    plan: Plan
    report: SpendReport
    specs: list[ReviewerSpec]
    metadata: CallMetadata
    spent: float = 0.0

    async def record(self, call: ReviewCall) -> None:
        self.spent += call.cost_usd or 0.0
        await self.ledger.record_model_call(
            call, metadata=self.metadata, reservation_id=self.reservation.id
        )

    async def settle(self) -> None:
        await self.ledger.settle(self.reservation, actual_usd=self.spent)


@dataclass(frozen=True, slots=True)
class BudgetStop:
    reason: str
    report: SpendReport
    refusal: Refusal | None
    wanted: Mapping[str, str]

    @property
    def window_key(self) -> str:
        if self.refusal is not None:
            return self.refusal.window_key
        binding = self.report.limiting
        return binding.window_key if binding is not None else "budget"


class Superseded(Exception):
    """A newer head of the PR arrived while this review ran."""


class PullGone(Exception):
    """The pull request (or its repository) no longer exists: nothing to review, nor to retry."""


ReviewerSpec = tuple[str, Reviewer, str | None]  # (display name, reviewer, model override)
#: Writes a published review's decision and queued action in the transaction that marks it
#: published (``policy.actions.record_decision_in``); returns the decision's id.
Recorder = Callable[[AsyncConnection, "ReviewOutcome", int | None], Awaitable[int | None]]
Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PreparedReview:
    """The slices and the exact prompts of one review, known before any model is called.

    Prompts are built up front so a budget can be reserved for exactly what will be sent.
    """

    slicing: SliceResult
    capped: tuple[tuple[str, str], ...]
    system: str
    prompts: tuple[str, ...]

    def prompt_text(self) -> str:
        return self.system * len(self.prompts) + "".join(self.prompts)


def prepare_review(
    files: Sequence[FileDiff],
    *,
    pr: PullRequestInfo,
    settings: Settings,
    config: RepoConfig,
    risk: RiskReport | None = None,
    incremental_since: str | None = None,
) -> PreparedReview:
    """Slice the files in risk order and write every slice's prompt."""
    tiers = {p.path: p.tier for p in risk.paths} if risk is not None else {}
    slicing = slice_diff(
        files,
        token_budget=settings.slice_token_budget,
        risk_order=lambda path: _TIER_ORDER.get(tiers.get(path, Tier.MEDIUM), 2),
        max_files=config.review.max_files,
    )
    skipped = {f.path for f in files if f.skip_reason is not None}
    capped = tuple((p, r) for p, r in slicing.not_reviewed if p not in skipped)
    system = system_prompt(
        extra_instructions=config.review.extra_instructions,
        path_instructions=_path_instructions(config, slicing.reviewed_paths),
    )
    nonce = new_nonce()
    total = len(slicing.slices)
    prompts = tuple(
        slice_prompt(
            pr, part, index=index, total=total, nonce=nonce, incremental_since=incremental_since
        )
        for index, part in enumerate(slicing.slices)
    )
    return PreparedReview(slicing=slicing, capped=capped, system=system, prompts=prompts)


CallHook = Callable[[ReviewCall], Awaitable[None]]


async def run_models(
    prepared: PreparedReview,
    *,
    reviewers: Sequence[ReviewerSpec],
    settings: Settings,
    metadata: CallMetadata,
    ticket: ReviewTicket | None = None,
    on_progress: Progress | None = None,
    on_call: CallHook | None = None,
) -> ModelRun:
    """Every slice through every reviewer at once, bounded by ``REVIEW_CONCURRENCY`` slices."""
    total = len(prepared.prompts)
    limit = asyncio.Semaphore(settings.review_concurrency)
    done = 0

    async def one(
        index: int, name: str, reviewer: Reviewer, model: str | None
    ) -> tuple[SliceOutcome, ReviewCall]:
        nonlocal done
        call = await reviewer.review(
            system=prepared.system, prompt=prepared.prompts[index], metadata=metadata, model=model
        )
        done += 1
        if on_call is not None:
            await on_call(call)
        if on_progress is not None:
            with contextlib.suppress(Exception):
                await on_progress(done, total * len(reviewers))
        return SliceOutcome(name, index, call.review, call.error), call

    async def one_slice(index: int) -> list[tuple[SliceOutcome, ReviewCall]]:
        # The limit counts slices: within a slice every reviewer runs at the same time.
        async with limit:
            pairs = await asyncio.gather(
                *(one(index, name, reviewer, model) for name, reviewer, model in reviewers)
            )
        return list(pairs)

    per_slice = await _gather_unless_cancelled([one_slice(i) for i in range(total)], ticket)
    results = [pair for pairs in per_slice for pair in pairs]
    consensus = combine(
        [outcome for outcome, _ in results], reviewers=[name for name, _, _ in reviewers]
    )
    return ModelRun(
        slicing=prepared.slicing,
        consensus=consensus,
        calls=tuple(call for _, call in results),
        capped=prepared.capped,
        outcomes=tuple(outcome for outcome, _ in results),
    )


async def review_files(
    files: Sequence[FileDiff],
    *,
    reviewers: Sequence[ReviewerSpec],
    pr: PullRequestInfo,
    settings: Settings,
    config: RepoConfig,
    metadata: CallMetadata,
    risk: RiskReport | None = None,
    ticket: ReviewTicket | None = None,
    incremental_since: str | None = None,
    on_progress: Progress | None = None,
) -> ModelRun:
    """Prepare and run in one step, with no budget (``review-diff`` and benchmarks)."""
    prepared = prepare_review(
        files,
        pr=pr,
        settings=settings,
        config=config,
        risk=risk,
        incremental_since=incremental_since,
    )
    return await run_models(
        prepared,
        reviewers=reviewers,
        settings=settings,
        metadata=metadata,
        ticket=ticket,
        on_progress=on_progress,
    )


async def _gather_unless_cancelled(
    jobs: Sequence[Awaitable[list[tuple[SliceOutcome, ReviewCall]]]], ticket: ReviewTicket | None
) -> list[list[tuple[SliceOutcome, ReviewCall]]]:
    if not jobs:
        return []
    gathered = asyncio.ensure_future(asyncio.gather(*jobs))
    if ticket is None:
        return await gathered
    cancelled = asyncio.ensure_future(ticket.cancelled.wait())
    waiters: set[asyncio.Future[Any]] = {gathered, cancelled}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled.cancel()
    if not gathered.done():
        gathered.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gathered
        raise Superseded(ticket.head_sha)
    return gathered.result()


def _path_instructions(config: RepoConfig, paths: Sequence[str]) -> list[str]:
    if not config.review.path_instructions:
        return []
    import pathspec

    chosen: list[str] = []
    for rule in config.review.path_instructions:
        spec = pathspec.GitIgnoreSpec.from_lines([rule.path])
        if any(spec.match_file(p) for p in paths):
            chosen.append(f"For {rule.path}: {rule.instructions}")
    return chosen


def ignore_globs(config: RepoConfig) -> Sequence[str]:
    """The paths no model is shown: the built-in list, then the repository's globs (after it,
    so that ``!pattern`` re-includes); ``review.ignore_defaults: false`` drops the built-ins."""
    own = tuple(config.review.ignore_globs or ())
    return (*DEFAULT_IGNORE_GLOBS, *own) if config.review.ignore_defaults else own


async def fetch_files(gh: GitHubAPI, pr: PullRequest, ignore: Sequence[str]) -> list[FileDiff]:
    """The pull request's changed files, parsed (every page, fetched once); ``PullGone`` when
    GitHub no longer has the pull request. Reviews and the ``ask`` command see the same files."""
    try:
        entries = [
            e
            async for e in gh.getiter(
                f"/repos/{pr.repository}/pulls/{pr.number}/files?per_page=100"
            )
        ]
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) in {404, 410}:
            raise PullGone(f"GitHub answers {int(exc.status_code)} for it") from exc
        raise
    attributes = await fetch_gitattributes(gh, pr.repository, pr.head_sha)
    return mark_generated(parse_github_files(entries, ignore_globs=ignore), attributes)


async def fetch_gitattributes(gh: GitHubAPI, repository: str, ref: str) -> GitAttributes:
    """The root ``.gitattributes`` at the reviewed commit (one request; parsed once per text).

    Read at the head, as GitHub's own diff view does: a pull request that marks a file
    generated only moves it to "not reviewed", which holds the decision back unless waived.
    """
    try:
        fetched = await fetch_text_file(gh, repository, ".gitattributes", ref=ref)
    except gidgethub.BadRequest as exc:  # not ours to read: content detection still applies
        log.warning("could not read .gitattributes of %s at %s: %s", repository, ref[:12], exc)
        return GitAttributes()
    return GitAttributes.parse(fetched.text if fetched is not None else None)


def reviewer_specs(reviewers: Sequence[Reviewer], config: RepoConfig) -> list[ReviewerSpec]:
    overrides = {"anthropic": config.review.models.anthropic, "openai": config.review.models.openai}
    return [
        (DISPLAY_NAMES.get(r.provider, r.provider), r, overrides.get(r.provider)) for r in reviewers
    ]


def conclusion_for(
    run: ModelRun, decision: AutonomyDecision, config: RepoConfig, unseen: Sequence[Unseen] = ()
) -> str:
    """success only for a complete review without blockers; partial is never success.

    A review is partial when a reviewer failed or a changed file went unseen without a waiver.
    """
    consensus = run.consensus
    if consensus.any_blocker and config.review.blocking_findings_fail:
        return "failure"
    if decision.should_escalate:
        return "action_required"
    if not consensus.complete or consensus.any_blocker or any(not u.waived for u in unseen):
        return "neutral"
    return "success"


async def reserve_review(
    ledger: QuotaLedger,
    settings: Settings,
    *,
    repository: str,
    pr_number: int | None,
    prepared: PreparedReview,
    specs: Sequence[ReviewerSpec],
    budget: QuotaConfig,
    metadata: CallMetadata,
) -> Spending | BudgetStop:
    """Pick the models the budget allows and hold their maximum cost before any call.

    The review's own budget step, public for the service API's reviews (``app.api.review``),
    which are held to the same budgets; ``pr_number`` None for a diff with no pull request.
    """
    report = await ledger.spend(repository, pr_number=pr_number, budget=budget)
    by_provider = {r.provider: (name, r, model) for name, r, model in specs}
    wanted = {p: model or r.model for p, (_, r, model) in by_provider.items()}
    plan = plan_calls(
        settings,
        wanted=wanted,
        report=report,
        budget=budget,
        prompt_text=prepared.prompt_text(),
        max_output_tokens=settings.model_max_output_tokens,
    )
    if plan.skip:
        return BudgetStop(
            reason=plan.skip_reason or "budget exhausted",
            report=report,
            refusal=None,
            wanted=wanted,
        )
    amount = plan.estimated_usd or 0.0
    granted = await ledger.reserve(
        repository=repository, pr_number=pr_number, amount_usd=amount, budget=budget
    )
    if isinstance(granted, Refusal):
        return BudgetStop(reason=granted.message, report=report, refusal=granted, wanted=wanted)
    chosen = [
        (name, reviewer, plan.models.get(provider, model))
        for provider, (name, reviewer, model) in by_provider.items()
    ]
    return Spending(ledger, granted, plan, report, chosen, metadata)


async def tripwire_hits(
    gh: GitHubAPI, pr: PullRequest, files: Sequence[FileDiff], config: RepoConfig
) -> tuple[TripwireHit, ...]:
    """The tripwire over the whole PR (every push: it is cheap and sees what the models see).

    Commit messages are read from GitHub; they are text the models never receive but a
    human reads as the change's story, so they are scanned as well.
    """
    settings = config.review.tripwire
    if not settings.enabled:
        return ()
    commits = [
        (str(c.get("sha", "")), str((c.get("commit") or {}).get("message") or ""))
        async for c in gh.getiter(f"/repos/{pr.repository}/pulls/{pr.number}/commits?per_page=100")
    ]
    return scan(TripwireInput(title=pr.title, body=pr.body, files=files, commits=commits), settings)


def call_hook(health: HealthMonitor | None, spending: Spending | None) -> CallHook:
    """What happens as each model call finishes: the health window hears of it, and the
    reservation's ledger records it (when the review holds one)."""

    async def on_call(call: ReviewCall) -> None:
        if health is not None:
            health.record(f"gateway:{call.provider}", call.latency_s, provider_ok(call))
        if spending is not None:
            await spending.record(call)

    return on_call


class ReviewPipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ReviewStore,
        reviewers: Sequence[Reviewer],
        coordinator: ReviewCoordinator,
        load_config: Callable[[GitHubAPI, str, str], Awaitable[Any]],
        quota: QuotaLedger | None = None,
        health: HealthMonitor | None = None,
        recorder: Recorder | None = None,
        feedback: FeedbackStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``feedback``: the change registry, read for the tightening and the check run's line."""
        self.settings = settings
        self.recorder = recorder
        self.feedback = feedback
        self.quota = quota
        self.health = health
        self.store = store
        self.reviewers = list(reviewers)
        self.coordinator = coordinator
        self._load_config = load_config
        self._clock = clock

    async def review(
        self,
        gh: GitHubAPI,
        pr: PullRequest,
        *,
        installation_id: int | None,
        delivery_id: str | None,
        incremental: bool,
        tightened: bool = False,
        include_drafts: bool = False,
    ) -> ReviewOutcome:
        """``include_drafts``: a person asked for this review, so a draft is reviewed too."""
        config_result = await self._load_config(gh, pr.repository, pr.default_branch)
        config: RepoConfig = config_result.config
        if not config.review.enabled:
            return ReviewOutcome(SKIPPED, "reviews are disabled in the repository config", pr)
        if pr.draft and not (config.review.drafts or include_drafts):
            return ReviewOutcome(SKIPPED, "draft pull request", pr)
        if pr.state != "open":
            return ReviewOutcome(SKIPPED, f"pull request is {pr.state}", pr)
        previous = await self.store.latest_for_head(pr.repository, pr.number, pr.head_sha)
        # A push is reviewed once per head; and a delivery that is being retried (it crashed
        # after publishing) must not pay for its review again: its actions are resumed.
        retried = (
            delivery_id is not None
            and previous is not None
            and (previous.delivery_id == delivery_id)
        )
        if previous is not None and previous.status == PUBLISHED and (incremental or retried):
            return ReviewOutcome(SKIPPED, "this head was reviewed already", pr)

        ticket = self.coordinator.begin(pr.key, pr.head_sha)
        try:
            return await self._review(
                gh,
                pr,
                config=config,
                config_errors=format_errors_markdown(config_result.errors),
                ticket=ticket,
                installation_id=installation_id,
                delivery_id=delivery_id,
                incremental=incremental,
                tightened=tightened,
            )
        finally:
            self.coordinator.end(ticket)

    async def _review(
        self,
        gh: GitHubAPI,
        pr: PullRequest,
        *,
        config: RepoConfig,
        config_errors: str,
        ticket: ReviewTicket,
        installation_id: int | None,
        delivery_id: str | None,
        incremental: bool,
        tightened: bool,
    ) -> ReviewOutcome:
        last = await self.store.last_published(pr.repository, pr.number) if incremental else None
        since = last.head_sha if last is not None and last.head_sha != pr.head_sha else None
        row = await self.store.start(
            repository=pr.repository,
            pr_number=pr.number,
            head_sha=pr.head_sha,
            base_sha=pr.base_sha,
            delivery_id=delivery_id,
            incremental_from=since,
        )
        check_run_id = row.check_run_id
        if check_run_id is None:
            check_run_id = await publish.create_check_run(
                gh,
                pr.repository,
                pr.head_sha,
                title="Reviewing with Claude and GPT",
                summary="Fetching the diff.",
                external_id=str(row.id),
            )
            await self.store.set_check_run(row.id, check_run_id)
        elif row.resumed:
            await publish.update_check_run_progress(
                gh,
                pr.repository,
                check_run_id,
                title="Reviewing with Claude and GPT",
                summary="Resuming a review that was interrupted.",
            )
        try:
            outcome = await self._run_and_publish(
                gh,
                pr,
                row=row,
                config=config,
                config_errors=config_errors,
                ticket=ticket,
                check_run_id=check_run_id,
                installation_id=installation_id,
                delivery_id=delivery_id,
                since=since,
                tightened=tightened,
            )
        except Superseded:
            await self._close_superseded(gh, pr, check_run_id)
            await self.store.finish(row.id, status=SUPERSEDED)
            return ReviewOutcome(SUPERSEDED, "a newer push arrived", pr, check_run_id=check_run_id)
        except PullGone as exc:
            await self._close_failed(gh, pr, check_run_id, exc, retried=False)
            await self.store.finish(row.id, status=SKIPPED, summary=f"pull request gone: {exc}")
            return ReviewOutcome(SKIPPED, f"the pull request is gone ({exc})", pr)
        except Exception as exc:
            # A check run never stays in progress: it says why, and a retry reuses it.
            await self._close_failed(gh, pr, check_run_id, exc)
            await self.store.finish(row.id, status=FAILED)
            raise
        run = outcome.run
        facts = outcome.extra.get("facts")
        recorded: list[int | None] = []

        async def record(conn: AsyncConnection) -> None:
            if self.recorder is not None and outcome.status == PUBLISHED:
                recorded.append(await self.recorder(conn, outcome, installation_id))

        await self.store.finish(
            row.id,
            status=outcome.status,
            confidence=run.consensus.confidence if run else None,
            conclusion=outcome.conclusion,
            input_tokens=run.input_tokens if run else 0,
            output_tokens=run.output_tokens if run else 0,
            cost_usd=run.cost_usd if run else 0.0,
            summary=outcome.reason or None,
            facts=facts if isinstance(facts, ReviewFacts) else None,
            also=record,
        )
        if recorded and recorded[0] is not None:
            outcome.extra["decision_id"] = recorded[0]
        return outcome

    async def _run_and_publish(
        self,
        gh: GitHubAPI,
        pr: PullRequest,
        *,
        row: ReviewRow,
        config: RepoConfig,
        config_errors: str,
        ticket: ReviewTicket,
        check_run_id: int,
        installation_id: int | None,
        delivery_id: str | None,
        since: str | None,
        tightened: bool,
    ) -> ReviewOutcome:
        ignore = ignore_globs(config)
        pr_files = await fetch_files(gh, pr, ignore)
        line_map = LineMap(pr_files)
        changes = [PathChange(f.path, f.old_path) for f in pr_files]
        risk = classify_paths(changes, config.risk.rules)
        # Before and apart from the models: what the PR says to its reviewer, whatever they answer.
        hits = await self._tripwire(gh, pr, pr_files, config)
        review_files_ = pr_files
        if since is not None:
            increment = await self._compare(gh, pr, since, ignore)
            if increment is None:
                since = None
            else:
                # What the whole pull request left unread (generated, binary) stays unread here.
                in_pr = {f.path: f.skip_reason for f in pr_files}
                review_files_ = [
                    f
                    if f.skip_reason or not in_pr[f.path]
                    else replace(f, skip_reason=in_pr[f.path])
                    for f in increment
                    if f.path in in_pr
                ]
        if ticket.superseded:
            raise Superseded(pr.head_sha)

        metadata = CallMetadata(
            repository=pr.repository,
            pr=pr.number,
            installation=installation_id,
            delivery=delivery_id,
            purpose="review",
        )
        prepared = prepare_review(
            review_files_,
            pr=pr.info(),
            settings=self.settings,
            config=config,
            risk=risk,
            incremental_since=since,
        )
        specs = reviewer_specs(self.reviewers, config)
        budget = self._budget(config)
        spending: Spending | None = None
        run = load_run(row.outcomes, prepared, specs) if row.outcomes else None
        if run is None:
            if self.quota is not None and prepared.prompts:
                granted = await self._reserve(pr, prepared, specs, budget, metadata)
                if isinstance(granted, BudgetStop):
                    return await self._publish_budget_stop(gh, pr, check_run_id, granted, metadata)
                spending = granted
                specs = spending.specs
            progress = self._progress_reporter(gh, pr, check_run_id)
            try:
                run = await run_models(
                    prepared,
                    reviewers=specs,
                    settings=self.settings,
                    metadata=metadata,
                    ticket=ticket,
                    on_progress=progress,
                    on_call=self._call_hook(spending),
                )
            finally:
                if spending is not None:
                    await spending.settle()
            # Paid for: kept before anything is published, so a retry publishes this instead.
            await self.store.save_outcomes(row.id, dump_run(run))
        notes = list(spending.plan.notes) if spending is not None else []
        if run.resumed:
            notes.append(
                "Resumed from the answers of an interrupted run; no model was called again."
            )
        if spending is not None and spending.report.has_budget:
            after = await spending.ledger.spend(pr.repository, pr_number=pr.number, budget=budget)
            notes.append(format_spend_report(after, this_review_usd=run.cost_usd))
        consensus = run.consensus
        carried = (
            fold(
                await self.store.history(pr.repository, pr.number),
                still_changed=(f.path for f in pr_files),
            )
            if since is not None
            else None
        )
        unseen = unseen_files(run.slicing.not_reviewed, carried, risk, config)
        feedback_line = ""
        if self.feedback is not None:
            # Two reads of the repository's history, side by side rather than one after the other.
            tightening, feedback_line = await asyncio.gather(
                self.feedback.tightening(pr.repository, Rules.of(config.feedback)),
                self.feedback.summary_line(pr.repository, at=utcnow()),
            )
            if tightening.active:
                tightened = True
                notes.insert(0, tightening.reason)
        decision_input = DecisionInput(
            tier=risk.tier,
            confidence=consensus.confidence,
            verdicts=consensus.verdicts,
            any_blocker=consensus.any_blocker,
            review_complete=consensus.complete,
            failed_reviewers=frozenset(consensus.failed_reviewers),
            is_fork=pr.is_fork,
            is_draft=pr.draft,
            labels=pr.labels,
            unseen=unseen,
            carried=carried,
            tripwire=tuple(h.describe() for h in hits),
            autonomy=config.autonomy,
            tightened=tightened,
        )
        decision = decide(decision_input)
        facts = _facts(pr.head_sha, run, decision, unseen, full=since is None)
        # Publish only for the head that was reviewed; a newer push makes this review moot.
        current = await self._current_head(gh, pr)
        if ticket.superseded or (current is not None and current.head_sha != pr.head_sha):
            raise Superseded(pr.head_sha)

        posted = await self.store.posted_fingerprints(pr.repository, pr.number)
        placed = render.place_comments(consensus.findings, line_map, already_posted=posted)
        not_reviewed = _not_reviewed_lines(unseen)
        carried_line = carried.describe() if carried is not None and carried.lowers else None
        body = render.review_body(
            consensus,
            outside_diff=placed.outside_diff,
            not_reviewed=not_reviewed,
            decision_line=decision.explain(),
            incremental_since=since,
            carried_line=carried_line,
            tripwire=[h.describe() for h in hits],
            notes=notes[:-1] if spending is not None and spending.report.has_budget else notes,
        )
        review_id, inline_kept = await publish.post_review(
            gh,
            pr.repository,
            pr.number,
            commit_id=pr.head_sha,
            body=body,
            comments=placed.comments,
            key=str(row.id),
            check_first=row.resumed,
        )
        await self.store.record_posted(
            pr.repository,
            pr.number,
            pr.head_sha,
            [m.fingerprint for m in consensus.findings if m.fingerprint not in posted],
        )
        conclusion = conclusion_for(run, decision, config, unseen)
        await publish.complete_check_run(
            gh,
            pr.repository,
            check_run_id,
            conclusion=conclusion,
            title=_title(run, decision),
            summary=self._summary(
                run,
                decision,
                risk,
                since,
                config_errors,
                [*notes, feedback_line] if feedback_line else notes,
                not_reviewed,
                carried_line,
                [h.describe() for h in hits],
            ),
            text=render_risk_table(risk),
            annotations=render.check_annotations(consensus.findings, line_map)
            + render.tripwire_annotations(hits),
            actions=_actions(decision),
        )
        return ReviewOutcome(
            PUBLISHED,
            pr=current or pr,
            run=run,
            risk=risk,
            decision=decision,
            config=config,
            check_run_id=check_run_id,
            conclusion=conclusion,
            review_id=review_id,
            basis=DecisionBasis.of(decision_input, changes, decision),
            extra={
                "inline_kept": inline_kept,
                "skipped_duplicates": placed.skipped_duplicates,
                "facts": facts,
                "tripwire": hits,
            },
        )

    def _call_hook(self, spending: Spending | None) -> CallHook:
        return call_hook(self.health, spending)

    def _budget(self, config: RepoConfig) -> QuotaConfig:
        return repository_budget(self.settings, config)

    async def _reserve(
        self,
        pr: PullRequest,
        prepared: PreparedReview,
        specs: Sequence[ReviewerSpec],
        budget: QuotaConfig,
        metadata: CallMetadata,
    ) -> Spending | BudgetStop:
        """Pick the models the budget allows and hold their maximum cost before any call."""
        assert self.quota is not None
        return await reserve_review(
            self.quota,
            self.settings,
            repository=pr.repository,
            pr_number=pr.number,
            prepared=prepared,
            specs=specs,
            budget=budget,
            metadata=metadata,
        )

    async def _publish_budget_stop(
        self,
        gh: GitHubAPI,
        pr: PullRequest,
        check_run_id: int,
        stop: BudgetStop,
        metadata: CallMetadata,
    ) -> ReviewOutcome:
        """No model call: a neutral check run with the spend, and one notice per window."""
        assert self.quota is not None
        for provider, model in stop.wanted.items():
            await self.quota.record_call(
                repository=pr.repository,
                pr_number=pr.number,
                installation_id=metadata.installation,
                delivery_id=metadata.delivery,
                provider=provider,
                model=model,
                cost_usd=0.0,
                outcome=CallOutcome.REFUSED,
            )
        spend = format_spend_report(stop.report)
        summary = f"No model was called: {stop.reason}.\n\n{spend}"
        await publish.complete_check_run(
            gh,
            pr.repository,
            check_run_id,
            conclusion="neutral",
            title="Not reviewed: budget exhausted",
            summary=summary,
        )
        window = stop.window_key
        if await self.quota.should_notify_exhausted(pr.repository, pr.number, window):
            tag = marker("budget", f"{window}")
            await create(
                gh,
                f"/repos/{pr.repository}/issues/{pr.number}/comments",
                {
                    "body": (
                        f"aigateway did not review this pull request: {stop.reason}. "
                        "A push after the budget resets is reviewed as usual.\n\n"
                        f"{spend}\n\n{tag}"
                    )
                },
                find=lambda: find_comment(gh, pr.repository, pr.number, tag),
            )
        return ReviewOutcome(
            SKIPPED, f"budget: {stop.reason}", pr, check_run_id=check_run_id, conclusion="neutral"
        )

    async def _tripwire(
        self, gh: GitHubAPI, pr: PullRequest, files: Sequence[FileDiff], config: RepoConfig
    ) -> tuple[TripwireHit, ...]:
        return await tripwire_hits(gh, pr, files, config)

    async def _compare(
        self, gh: GitHubAPI, pr: PullRequest, since: str, ignore: Sequence[str]
    ) -> list[FileDiff] | None:
        """The changes pushed since ``since``, or None when GitHub cannot compare (force push)."""
        try:
            text = await gh.getitem(
                f"/repos/{pr.repository}/compare/{since}...{pr.head_sha}",
                accept="application/vnd.github.diff",
            )
        except gidgethub.BadRequest as exc:
            log.info(
                "compare %s...%s failed (%s); reviewing in full", since[:12], pr.head_sha[:12], exc
            )
            return None
        if not isinstance(text, str):
            return None
        return parse_unified_diff(text, ignore_globs=ignore)

    async def _current_head(self, gh: GitHubAPI, pr: PullRequest) -> PullRequest | None:
        try:
            data = await gh.getitem(f"/repos/{pr.repository}/pulls/{pr.number}")
        except gidgethub.BadRequest:
            return None
        return PullRequest.from_api(data)

    def _progress_reporter(self, gh: GitHubAPI, pr: PullRequest, check_run_id: int) -> Progress:
        last = self._clock()

        async def report(done: int, total: int) -> None:
            nonlocal last
            now = self._clock()
            if done >= total or now - last < PROGRESS_INTERVAL_S:
                return
            last = now
            await publish.update_check_run_progress(
                gh,
                pr.repository,
                check_run_id,
                title="Reviewing with Claude and GPT",
                summary=f"{done} of {total} model reviews finished.",
            )

        return report

    async def _close_superseded(self, gh: GitHubAPI, pr: PullRequest, check_run_id: int) -> None:
        with contextlib.suppress(gidgethub.GitHubException):
            await publish.complete_check_run(
                gh,
                pr.repository,
                check_run_id,
                conclusion="neutral",
                title="Superseded by a newer push",
                summary=f"A newer commit was pushed; {pr.head_sha[:12]} was not reviewed to the end.",
            )

    async def _close_failed(
        self,
        gh: GitHubAPI,
        pr: PullRequest,
        check_run_id: int,
        exc: Exception,
        *,
        retried: bool = True,
    ) -> None:
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        then = (
            "It is tried again automatically and reuses this check run; the models' answers, "
            "once received, are not paid for twice."
            if retried
            else "It is not tried again."
        )
        with contextlib.suppress(Exception):
            await publish.complete_check_run(
                gh,
                pr.repository,
                check_run_id,
                conclusion="neutral",
                title="Review interrupted",
                summary=(
                    f"The review of {pr.head_sha[:12]} could not be finished: {clean(why)}.\n\n"
                    + then
                ),
            )

    def _summary(
        self,
        run: ModelRun,
        decision: AutonomyDecision,
        risk: RiskReport,
        since: str | None,
        config_errors: str,
        notes: Sequence[str] = (),
        not_reviewed: Sequence[tuple[str, str]] = (),
        carried_line: str | None = None,
        tripwire: Sequence[str] = (),
    ) -> str:
        lines = [
            render.review_body(
                run.consensus,
                outside_diff=(),
                not_reviewed=not_reviewed,
                decision_line=decision.explain(),
                incremental_since=since,
                carried_line=carried_line,
                tripwire=tripwire,
            )
        ]
        lines.append(f"\n**Risk tier**: {risk.tier.value}")
        for guard in decision.guards:
            lines.append(f"- guard `{guard.guard.value}`: {guard.reason}")
        reviewed = len(run.slicing.reviewed_paths)
        lines.append(
            f"\n**Files**: {reviewed} reviewed, {len(not_reviewed)} not reviewed, "
            f"in {len(run.slicing.slices)} part(s)."
        )
        cost = f"${run.cost_usd:.4f}"
        if run.unpriced_models:
            cost += f" (no price known for {', '.join(run.unpriced_models)})"
        lines.append(
            f"**Usage**: {run.input_tokens} input and {run.output_tokens} output tokens, {cost}."
        )
        lines.extend(f"\n{note}" for note in notes)
        if config_errors:
            lines.append("\n**Configuration problems** (the defaults were used for these):\n")
            lines.append(config_errors)
        return "\n".join(lines)


def unseen_files(
    not_reviewed: Sequence[tuple[str, str]],
    carried: Carried | None,
    risk: RiskReport,
    config: RepoConfig,
) -> tuple[Unseen, ...]:
    """Every changed file no model saw on this head or, unseen since, on the heads before it."""
    tiers = {p.path: p.tier for p in risk.paths}
    own = {
        path: Unseen(path, reason, tiers.get(path, risk.tier), waived(config, path))
        for path, reason in not_reviewed
    }
    if carried is not None:
        for u in with_tiers(carried.unseen, tiers, config):
            own.setdefault(u.path, u)
    return tuple(own.values())


def _not_reviewed_lines(unseen: Sequence[Unseen]) -> list[tuple[str, str]]:
    return [
        (u.path, f"{u.reason} (waived by review.unreviewed_ok)" if u.waived else u.reason)
        for u in unseen
    ]


def _facts(
    head_sha: str,
    run: ModelRun,
    decision: AutonomyDecision,
    unseen: tuple[Unseen, ...],
    *,
    full: bool,
) -> ReviewFacts:
    consensus = run.consensus
    return ReviewFacts(
        head_sha=head_sha,
        confidence=consensus.confidence,
        blockers=sum(1 for m in consensus.findings if m.finding.severity is Severity.BLOCKER),
        request_changes=tuple(
            sorted(n for n, v in consensus.verdicts.items() if v is Verdict.REQUEST_CHANGES)
        ),
        failed=tuple(sorted(consensus.failed_reviewers)),
        escalated=decision.decision is Decision.ESCALATE,
        unseen=unseen,
        full=full,
    )


def dump_run(run: ModelRun) -> str:
    """The model stage's answers as JSON: what a retry of the same head resumes from."""
    return json.dumps(
        {
            "paths": list(run.slicing.reviewed_paths),
            "outcomes": [
                {
                    "reviewer": o.reviewer,
                    "slice": o.slice_index,
                    "review": o.review.model_dump(mode="json") if o.review is not None else None,
                    "error": o.error,
                }
                for o in run.outcomes
            ],
            "calls": [
                {
                    "provider": c.provider,
                    "model": c.model,
                    "error": c.error,
                    "input_tokens": c.input_tokens,
                    "output_tokens": c.output_tokens,
                    "cost_usd": c.cost_usd,
                    "priced": c.priced,
                    "log_id": c.log_id,
                }
                for c in run.calls
            ],
        }
    )


def load_run(text: str, prepared: PreparedReview, specs: Sequence[ReviewerSpec]) -> ModelRun | None:
    """Rebuild the model stage from ``dump_run``; None when it no longer fits what is reviewed
    (another set of files or reviewers: then the models are asked again)."""
    try:
        data = json.loads(text)
        if data["paths"] != list(prepared.slicing.reviewed_paths):
            return None
        names = [name for name, _, _ in specs]
        outcomes = tuple(
            SliceOutcome(
                str(o["reviewer"]),
                int(o["slice"]),
                ModelReview.model_validate(o["review"]) if o["review"] is not None else None,
                o["error"],
            )
            for o in data["outcomes"]
        )
        if {o.reviewer for o in outcomes} != set(names):
            return None
        calls = tuple(
            ReviewCall(
                provider=str(c["provider"]),
                model=str(c["model"]),
                review=None,
                error=c["error"],
                input_tokens=int(c["input_tokens"]),
                output_tokens=int(c["output_tokens"]),
                cost_usd=c["cost_usd"],
                priced=bool(c["priced"]),
                log_id=c["log_id"],
            )
            for c in data["calls"]
        )
    except (ValueError, KeyError, TypeError):
        log.warning("stored model answers could not be read; asking the models again")
        return None
    return ModelRun(
        slicing=prepared.slicing,
        consensus=combine(list(outcomes), reviewers=names),
        calls=calls,
        capped=prepared.capped,
        outcomes=outcomes,
        resumed=True,
    )


def provider_ok(call: ReviewCall | AnswerCall) -> bool:
    """Whether the provider itself worked: an answer we could not validate still counts."""
    if call.error in {"timeout", "connection error"}:
        return False
    return not (call.status is not None and (call.status >= 500 or call.status == 429))


def _title(run: ModelRun, decision: AutonomyDecision) -> str:
    n = len(run.consensus.findings)
    state = "Partial review" if not run.consensus.complete else "Reviewed"
    return (
        f"{state}: confidence {run.consensus.confidence:.2f}, {n} finding{'s' if n != 1 else ''}; "
        f"{decision.explain()}"
    )


def _actions(decision: AutonomyDecision) -> list[dict[str, str]]:
    actions = [
        {"label": "Re-review", "description": "Run a full review again", "identifier": "rereview"}
    ]
    if decision.should_escalate:
        actions.append(
            {
                "label": "Approve merge",
                "description": "Merge the reviewed commit (write access)",
                "identifier": "approve_merge",
            }
        )
    return actions
