"""``POST /v1/ai/review``: both models review a diff or a pull request, and the autonomy matrix
says what it would do with the result.

Built from the review pipeline's own stages, in its order, so an API review is judged exactly
as the App's would be: ``prepare_review`` (slices in risk order, prompts), ``reserve_review``
(the repository's budgets: a downgrade is a note, nothing fits is 402 with no request sent),
``run_models`` (Claude ∥ GPT per slice, each call recorded as it finishes), consensus, the
tripwire, the feedback loop's tightening, and ``decide``. Nothing is written to GitHub.

- A **diff**: risk comes from the diff's files and ``changed_paths`` together (the tier only
  ever rises); a changed path the diff does not hold is a file no model saw, which caps the
  recommendation as the App's ``unreviewed_files`` guard does.
- A **pull request** (``pull_number``): its files as the pipeline fetches them, its commit
  messages for the tripwire, and its draft, fork and label facts for the guards.
- With ``post``: the App's own review of the pull request, as the ``review`` command runs it
  (``handlers.pull_request.review_and_act``): published, recorded, and acted on as the
  repository's ``autonomy.mode`` says.

The recommendation is the decision's action, its matrix cell and every guard; the API acts on
nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import gidgethub
from gidgethub.abc import GitHubAPI

from app.api.analyze import BudgetRefused, ledger_id
from app.api.auth import ApiError
from app.api.models import (
    ConsensusOut,
    FindingOut,
    GuardOut,
    ModelReviewOut,
    NotReviewedOut,
    PathRiskOut,
    Provider,
    RecommendationOut,
    ReviewRequest,
    ReviewResponse,
    RiskOut,
)
from app.api.repos import RepoContext, Repositories, github_failed
from app.feedback.registry import FeedbackStore
from app.feedback.tightening import Rules
from app.gateway import CallMetadata
from app.handlers.context import HandlerContext
from app.policy.autonomy import AutonomyDecision, DecisionInput, Effect, decide
from app.policy.carry import Unseen
from app.policy.recheck import waived
from app.policy.risk import PathChange, RiskReport, classify_paths
from app.policy.tripwire import TripwireHit, TripwireInput, scan
from app.quota import QuotaLedger, repository_budget
from app.repo_config import RepoConfig
from app.review.diff import FileDiff, parse_unified_diff
from app.review.generated import mark_generated
from app.review.pipeline import (
    BudgetStop,
    ModelRun,
    PullGone,
    PullRequest,
    ReviewerSpec,
    Spending,
    call_hook,
    fetch_files,
    ignore_globs,
    prepare_review,
    reserve_review,
    reviewer_specs,
    run_models,
    tripwire_hits,
    unseen_files,
)
from app.review.prompt import PullRequestInfo
from app.review.store import PUBLISHED
from app.services import Services

__all__ = ["REVIEW_PURPOSE", "review"]

log = logging.getLogger(__name__)

REVIEW_PURPOSE = "api-review"
_PROVIDERS: dict[str, Provider] = {"anthropic": "anthropic", "openai": "openai"}
NOT_IN_DIFF = "in changed_paths but not in the diff sent"


async def review(
    services: Services,
    request: ReviewRequest,
    *,
    repo: RepoContext,
    repositories: Repositories,
    request_id: str,
) -> ReviewResponse:
    if services.pipeline is None:
        raise ApiError(
            503, "unavailable", services.gateway_error or "the model gateway is not configured"
        )
    if request.pull_number is not None:
        return await _review_pull(
            services, request, request.pull_number, repo, repositories, request_id
        )
    return await _review_diff(services, request, repo, request_id)


def _check_enabled(config: RepoConfig, repository: str) -> None:
    if not config.review.enabled:
        raise ApiError(
            409, "not_reviewable", f"reviews are disabled in {repository}'s configuration"
        )


async def _review_diff(
    services: Services, request: ReviewRequest, repo: RepoContext, request_id: str
) -> ReviewResponse:
    config = repo.config
    _check_enabled(config, repo.repository)
    files = mark_generated(
        parse_unified_diff(request.diff or "", ignore_globs=ignore_globs(config))
    )
    in_diff = {f.path for f in files} | {f.old_path for f in files if f.old_path}
    extra = [p.lstrip("/") for p in dict.fromkeys(request.changed_paths) if p.strip("/")]
    outside = [p for p in extra if p not in in_diff]
    if not files and not outside:
        raise ApiError(422, "invalid_request", "the diff holds no change")
    risk = classify_paths(
        [PathChange(f.path, f.old_path) for f in files] + [PathChange(p) for p in outside],
        config.risk.rules,
    )
    info = PullRequestInfo(
        repository=repo.repository,
        number=None,
        title=request.title or "(a change sent to the review API)",
        body=request.description,
        base_ref="base",
        head_ref="head",
    )
    tiers = {p.path: p.tier for p in risk.paths}
    also_unseen = [Unseen(p, NOT_IN_DIFF, tiers[p], waived(config, p)) for p in outside]
    hits = (
        scan(
            TripwireInput(title=request.title, body=request.description, files=files, commits=()),
            config.review.tripwire,
        )
        if config.review.tripwire.enabled
        else ()
    )
    return await _assess(
        services,
        repo,
        files,
        info,
        risk,
        request_id=request_id,
        pr_number=None,
        hits=hits,
        also_unseen=also_unseen,
    )


async def _review_pull(
    services: Services,
    request: ReviewRequest,
    number: int,
    repo: RepoContext,
    repositories: Repositories,
    request_id: str,
) -> ReviewResponse:
    if repo.installation_id is None:
        raise ApiError(
            422, "not_installed", f"the GitHub App is not installed on {repo.repository}"
        )
    gh = repositories.github(repo.installation_id)
    try:
        pr = PullRequest.from_api(await gh.getitem(f"/repos/{repo.repository}/pulls/{number}"))
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) in {404, 410}:
            raise ApiError(
                404, "not_found", f"{repo.repository} has no pull request #{number}"
            ) from exc
        raise github_failed(f"pull request #{number}", exc) from exc
    if request.post:
        return await _review_and_post(services, gh, pr, repo, request_id)
    config = repo.config
    _check_enabled(config, repo.repository)
    try:
        files = await fetch_files(gh, pr, ignore_globs(config))
    except PullGone as exc:
        raise ApiError(404, "not_found", f"pull request #{number} is gone ({exc})") from exc
    risk = classify_paths([PathChange(f.path, f.old_path) for f in files], config.risk.rules)
    hits = await tripwire_hits(gh, pr, files, config)
    return await _assess(
        services,
        repo,
        files,
        pr.info(),
        risk,
        request_id=request_id,
        pr_number=pr.number,
        hits=hits,
        pr=pr,
    )


async def _assess(
    services: Services,
    repo: RepoContext,
    files: Sequence[FileDiff],
    info: PullRequestInfo,
    risk: RiskReport,
    *,
    request_id: str,
    pr_number: int | None,
    hits: Sequence[TripwireHit],
    also_unseen: Sequence[Unseen] = (),
    pr: PullRequest | None = None,
) -> ReviewResponse:
    """Slices, budget, both models, consensus, decision: the pipeline's stages, posting nothing."""
    pipeline = services.pipeline
    assert pipeline is not None
    settings = services.settings
    config = repo.config
    prepared = prepare_review(files, pr=info, settings=settings, config=config, risk=risk)
    specs: Sequence[ReviewerSpec] = reviewer_specs(pipeline.reviewers, config)
    metadata = CallMetadata(
        repository=repo.repository,
        pr=pr_number,
        installation=repo.installation_id,
        delivery=ledger_id(request_id),
        purpose=REVIEW_PURPOSE,
    )
    ledger = pipeline.quota or QuotaLedger(services.db)
    budget = repository_budget(settings, config)
    spending: Spending | None = None
    if prepared.prompts:
        granted = await reserve_review(
            ledger,
            settings,
            repository=repo.repository,
            pr_number=pr_number,
            prepared=prepared,
            specs=specs,
            budget=budget,
            metadata=metadata,
        )
        if isinstance(granted, BudgetStop):
            await ledger.record_refused(metadata, granted.wanted)
            raise BudgetRefused(granted.reason, granted.report)
        spending = granted
        specs = spending.specs
    try:
        run = await run_models(
            prepared,
            reviewers=specs,
            settings=settings,
            metadata=metadata,
            on_call=call_hook(services.health, spending),
        )
    finally:
        if spending is not None:
            await spending.settle()
    unseen = (*unseen_files(run.slicing.not_reviewed, None, risk, config), *also_unseen)
    tightening = await FeedbackStore(services.db).tightening(
        repo.repository, Rules.of(config.feedback)
    )
    consensus = run.consensus
    decision = decide(
        DecisionInput(
            tier=risk.tier,
            confidence=consensus.confidence,
            verdicts=consensus.verdicts,
            any_blocker=consensus.any_blocker,
            review_complete=consensus.complete,
            failed_reviewers=frozenset(consensus.failed_reviewers),
            is_fork=pr.is_fork if pr is not None else False,
            is_draft=pr.draft if pr is not None else False,
            labels=pr.labels if pr is not None else frozenset(),
            unseen=unseen,
            carried=None,
            tripwire=tuple(h.describe() for h in hits),
            autonomy=config.autonomy,
            tightened=tightening.active,
        )
    )
    notes = list(spending.plan.notes) if spending is not None else []
    if tightening.active:
        notes.insert(0, tightening.reason)
    return _response(
        repo.repository,
        pr,
        run,
        risk,
        decision,
        unseen,
        specs,
        posted=False,
        notes=notes,
    )


async def _review_and_post(
    services: Services, gh: GitHubAPI, pr: PullRequest, repo: RepoContext, request_id: str
) -> ReviewResponse:
    """The App's review of the pull request, published and acted on (the ``review`` command)."""
    # Imported here, as the review command does: the handlers import the whole App.
    from app.handlers.pull_request import review_and_act

    ctx = HandlerContext(
        services=services,
        delivery_id=ledger_id(request_id),
        installation_id=repo.installation_id,
        repository=repo.repository,
        log=log,
    )
    outcome = await review_and_act(gh, pr, ctx=ctx, incremental=False, include_drafts=True)
    if outcome is None:
        raise ApiError(503, "unavailable", services.gateway_error or "no gateway is configured")
    if outcome.status != PUBLISHED or outcome.run is None or outcome.decision is None:
        if outcome.reason.startswith("budget:"):
            raise ApiError(402, "budget_exhausted", outcome.reason.removeprefix("budget: "))
        raise ApiError(409, "not_reviewable", f"the review was {outcome.status}: {outcome.reason}")
    facts = outcome.extra.get("facts")
    unseen = tuple(getattr(facts, "unseen", ()))
    assert outcome.risk is not None and services.pipeline is not None
    specs = reviewer_specs(services.pipeline.reviewers, outcome.config or repo.config)
    return _response(
        repo.repository,
        outcome.pr or pr,
        outcome.run,
        outcome.risk,
        outcome.decision,
        unseen,
        specs,
        posted=True,
        check_run_id=outcome.check_run_id,
    )


# ---------------------------------------------------------------------------------- answers


def _recommendation(decision: AutonomyDecision) -> RecommendationOut:
    """The action, and a sentence that says how the matrix and the guards got there."""
    reason = (
        f"{decision.tier.value} risk at confidence {decision.confidence:.2f}: the matrix gives "
        f"{decision.matrix_decision.value}"
    )
    lowering = [g for g in decision.guards if g.effect is not Effect.NO_ACTION]
    if decision.decision is not decision.matrix_decision:
        reason += f"; lowered to {decision.decision.value} by " + "; ".join(
            f"{g.guard.value} ({g.reason})" for g in lowering
        )
    elif lowering:
        reason += "; also applied: " + "; ".join(f"{g.guard.value} ({g.reason})" for g in lowering)
    return RecommendationOut(
        action=decision.decision.value,
        matrix_action=decision.matrix_decision.value,
        reason=reason,
        guards=[
            GuardOut(guard=g.guard.value, effect=g.effect.value, reason=g.reason)
            for g in decision.guards
        ],
    )


def _reviews(run: ModelRun, specs: Sequence[ReviewerSpec]) -> list[ModelReviewOut]:
    by_name = {name: (_PROVIDERS.get(r.provider), model or r.model) for name, r, model in specs}
    out = []
    for summary in run.consensus.reviewers:
        provider, model = by_name.get(summary.reviewer, (None, ""))
        if provider is None:
            continue
        calls = [c for c in run.calls if c.provider == provider]
        costs = [c.cost_usd for c in calls]
        out.append(
            ModelReviewOut(
                reviewer=summary.reviewer,
                provider=provider,
                model=calls[0].model if calls else model,
                verdict=summary.verdict.value if summary.verdict is not None else None,
                confidence=summary.confidence,
                summaries=list(summary.summaries),
                errors=list(summary.errors),
                input_tokens=sum(c.input_tokens for c in calls),
                output_tokens=sum(c.output_tokens for c in calls),
                cost_usd=None if None in costs else sum(c or 0.0 for c in costs),
                log_ids=[c.log_id for c in calls if c.log_id],
            )
        )
    return out


def _response(
    repository: str,
    pr: PullRequest | None,
    run: ModelRun,
    risk: RiskReport,
    decision: AutonomyDecision,
    unseen: Sequence[Unseen],
    specs: Sequence[ReviewerSpec],
    *,
    posted: bool,
    check_run_id: int | None = None,
    notes: Sequence[str] = (),
) -> ReviewResponse:
    consensus = run.consensus
    return ReviewResponse(
        repository=repository,
        pull_number=pr.number if pr is not None else None,
        head_sha=pr.head_sha if pr is not None else None,
        reviews=_reviews(run, specs),
        consensus=ConsensusOut(
            confidence=consensus.confidence,
            complete=consensus.complete,
            disagreement=consensus.disagreement,
            any_blocker=consensus.any_blocker,
            any_request_changes=consensus.any_request_changes,
            findings=[
                FindingOut(**m.finding.model_dump(mode="json"), raised_by=list(m.raised_by))
                for m in consensus.findings
            ],
            reasons=list(consensus.reasons),
        ),
        confidence=decision.confidence,
        risk=RiskOut(
            tier=risk.tier.value,
            paths=[
                PathRiskOut(path=p.path, tier=p.tier.value, rule=p.match.describe())
                for p in risk.paths
            ],
        ),
        recommendation=_recommendation(decision),
        not_reviewed=[
            NotReviewedOut(
                path=u.path,
                reason=f"{u.reason} (waived by review.unreviewed_ok)" if u.waived else u.reason,
            )
            for u in unseen
        ],
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        cost_usd=run.cost_usd,
        posted=posted,
        check_run_id=check_run_id,
        notes=list(notes),
    )
