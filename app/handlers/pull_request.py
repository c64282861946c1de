"""Pull requests opened, pushed to, reopened or marked ready: review them, then act."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.commands.state import CommandState
from app.config_loader import ConfigLoader
from app.handlers.context import HandlerContext
from app.policy.actions import Acting, act_on_review, send_pending
from app.policy.decisions import DecisionStore
from app.repo_config import RepoConfig
from app.review import publish
from app.review.pipeline import PullRequest, ReviewOutcome
from app.review.store import PUBLISHED

router = routing.Router()

REVIEW_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")


def acting_for(ctx: HandlerContext) -> Acting:
    """The acting stage's dependencies for one delivery (cheap: nothing is fetched here)."""
    return Acting(
        store=DecisionStore(ctx.services.db, claim_seconds=ctx.services.settings.lease_seconds),
        identity=ctx.services.auth,
        configs=ctx.services.config_loader or ConfigLoader(),
        log=ctx.log,
        notice_grace=timedelta(seconds=ctx.services.settings.notice_grace_seconds),
    )


async def repo_config(
    gh: GitHubAPI, repository: str, default_branch: str, *, ctx: HandlerContext
) -> RepoConfig:
    """The repository's config from its default branch (errors fall back to safe defaults)."""
    loader = ctx.services.config_loader or ConfigLoader()
    return (await loader.load(gh, repository, default_branch)).config


async def review_and_act(
    gh: GitHubAPI,
    pr: PullRequest,
    *,
    ctx: HandlerContext,
    incremental: bool,
    include_drafts: bool = False,
) -> ReviewOutcome | None:
    """Review ``pr`` and, once the review is published, carry out its decision.

    ``include_drafts`` reviews a draft too (a person asked for this review by hand).

    Returns None when no review can run at all (no model gateway configured); that is reported
    on the commit as a neutral check run instead.
    """
    pipeline = ctx.services.pipeline
    if pipeline is None:
        await publish.report_unavailable(
            gh,
            pr.repository,
            pr.head_sha,
            reason=ctx.services.gateway_error or "the model gateway is not configured",
        )
        return None
    outcome = await pipeline.review(
        gh,
        pr,
        installation_id=ctx.installation_id,
        delivery_id=ctx.delivery_id,
        incremental=incremental,
        include_drafts=include_drafts,
    )
    ctx.log.info(
        "review of %s at %s: %s%s",
        pr.key,
        pr.head_sha[:12],
        outcome.status,
        f" ({outcome.reason})" if outcome.reason else "",
    )
    metrics = ctx.services.metrics
    metrics.reviews.labels(repository=pr.repository, status=outcome.status).inc()
    if outcome.run is not None:
        metrics.spend.labels(repository=pr.repository).inc(outcome.run.cost_usd)
    if outcome.decision is not None:
        metrics.decisions.labels(
            repository=pr.repository,
            decision=outcome.decision.decision.value,
            acted=str(outcome.decision.act).lower(),
        ).inc()
    for hit in outcome.extra.get("tripwire") or ():
        metrics.tripwire_hits.labels(rule=hit.rule.value).inc()
    if outcome.status == PUBLISHED:
        await act_on_review(
            gh, outcome, acting=acting_for(ctx), installation_id=ctx.installation_id
        )
    else:
        # A retried delivery whose review was published already: send what it left queued.
        await send_pending(gh, pr.repository, pr.number, pr.head_sha, acting=acting_for(ctx))
    return outcome


async def on_pull_request(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    if gh is None:
        ctx.log.warning("pull_request delivery without an installation; ignored")
        return
    pr = PullRequest.from_api(data["pull_request"])
    if await CommandState(ctx.services.db).is_paused(pr.repository, pr.number):
        ctx.log.info("automatic reviews of %s are paused (/pause); not reviewed", pr.key)
        return
    await review_and_act(gh, pr, ctx=ctx, incremental=data.get("action") == "synchronize")


for _action in REVIEW_ACTIONS:
    router.add(on_pull_request, "pull_request", action=_action)
