"""Pull requests opened, pushed to, reopened or marked ready: review them, then act."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.handlers.context import HandlerContext
from app.review import publish
from app.review.pipeline import PullRequest

router = routing.Router()

REVIEW_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")


async def on_pull_request(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    if gh is None:
        ctx.log.warning("pull_request delivery without an installation; ignored")
        return
    pr = PullRequest.from_api(data["pull_request"])
    pipeline = ctx.services.pipeline
    if pipeline is None:
        await publish.report_unavailable(
            gh,
            pr.repository,
            pr.head_sha,
            reason=ctx.services.gateway_error or "the model gateway is not configured",
        )
        return
    outcome = await pipeline.review(
        gh,
        pr,
        installation_id=ctx.installation_id,
        delivery_id=ctx.delivery_id,
        incremental=data.get("action") == "synchronize",
    )
    ctx.log.info(
        "review of %s at %s: %s%s",
        pr.key,
        pr.head_sha[:12],
        outcome.status,
        f" ({outcome.reason})" if outcome.reason else "",
    )


for _action in REVIEW_ACTIONS:
    router.add(on_pull_request, "pull_request", action=_action)
