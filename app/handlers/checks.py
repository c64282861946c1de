"""Check-run buttons, and the events that can turn a waiting merge green.

- ``check_run`` ``rerequested`` and the "Re-review" button run a full review again, then act on it,
  for a person whose permission meets ``commands.min_permission`` (a review costs money);
- the "Approve merge" button merges the reviewed commit for a person with write access, and clears
  what earlier reviews carried into the next decision (``policy/carry``);
- ``check_suite`` ``completed`` and ``status`` re-examine the merge intents waiting on that commit.

Only check runs this App created are acted on: GitHub sends ``rerequested`` and
``requested_action`` to the run's own App, but the name and App id are checked anyway, since a
delivery is cheap to forge inside an installation that runs other Apps' checks under our name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.handlers.context import HandlerContext
from app.handlers.pull_request import acting_for, repo_config, review_and_act
from app.policy.actions import advance_intents_for_sha, approve_merge, post_once
from app.policy.decisions import ActionTaken, DecisionStore
from app.policy.permissions import fetch_permission
from app.review.pipeline import PullRequest
from app.review.render import CHECK_NAME
from app.review.store import ReviewStore

router = routing.Router()

REREVIEW = "rereview"
APPROVE_MERGE = "approve_merge"


async def _is_ours(run: Mapping[str, Any], ctx: HandlerContext) -> bool:
    if run.get("name") != CHECK_NAME:
        return False
    app_id = (run.get("app") or {}).get("id")
    return app_id is not None and int(app_id) == (await ctx.services.auth.identity()).id


async def _pull_numbers(run: Mapping[str, Any], repository: str, ctx: HandlerContext) -> list[int]:
    """The pull requests of a check run: from the payload, else from the stored decision.

    GitHub leaves ``pull_requests`` empty for pull requests from forks, so the decision stored
    when the review was published on this check run is the fallback.
    """
    numbers = [int(p["number"]) for p in run.get("pull_requests") or [] if p.get("number")]
    if numbers:
        return list(dict.fromkeys(numbers))
    stored = await DecisionStore(ctx.services.db).latest_for_check_run(repository, int(run["id"]))
    return [stored.pr_number] if stored is not None else []


async def _rereview(
    gh: GitHubAPI,
    data: Mapping[str, Any],
    run: Mapping[str, Any],
    repository: str,
    ctx: HandlerContext,
) -> None:
    numbers = await _pull_numbers(run, repository, ctx)
    if not numbers:
        ctx.log.info("check run %s belongs to no pull request; nothing to re-review", run["id"])
    requester = str((data.get("sender") or {}).get("login") or "")
    for number in numbers:
        pr = PullRequest.from_api(await gh.getitem(f"/repos/{repository}/pulls/{number}"))
        config = await repo_config(gh, repository, pr.default_branch, ctx=ctx)
        needed = config.commands.min_permission
        held = await fetch_permission(gh, repository, requester) if requester else None
        if held is None or not held.satisfies(needed):
            ctx.log.info("re-review of %s by %r refused: %s", pr.key, requester, held)
            await post_once(
                gh,
                repository,
                number,
                pr.head_sha,
                f"rereview_refused:{requester.casefold()}",
                f"**{CHECK_NAME}** did not run a new review for `{requester}`: a review costs "
                f"money, so it needs `{needed.value}` permission on the repository "
                f"(`{requester}` has {f'`{held.value}`' if held else 'none'}).",
                acting=acting_for(ctx),
            )
            continue
        await review_and_act(gh, pr, ctx=ctx, incremental=False)


async def _approve(
    gh: GitHubAPI, data: Mapping[str, Any], run: Mapping[str, Any], ctx: HandlerContext
) -> None:
    repository = str(data["repository"]["full_name"])
    numbers = await _pull_numbers(run, repository, ctx)
    if len(numbers) != 1:
        ctx.log.warning("approve_merge on check run %s: pull requests %s", run["id"], numbers)
        return
    default_branch = str(data["repository"].get("default_branch") or "main")
    config = await repo_config(gh, repository, default_branch, ctx=ctx)
    approver = str(data["sender"]["login"])
    record = await approve_merge(
        gh,
        repository=repository,
        pr_number=numbers[0],
        reviewed_sha=str(run["head_sha"]),
        check_run_id=int(run["id"]),
        approver=approver,
        autonomy=config.autonomy,
        acting=acting_for(ctx),
    )
    if record.action is not ActionTaken.APPROVAL_REFUSED:
        # A person with write access vouched for this head: what earlier heads carried ends here.
        await ReviewStore(ctx.services.db).clear(
            repository, numbers[0], str(run["head_sha"]), by=approver
        )


@router.register("check_run", action="rerequested")
async def on_check_run_rerequested(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    run = data["check_run"]
    if gh is None or not await _is_ours(run, ctx):
        return
    await _rereview(gh, data, run, str(data["repository"]["full_name"]), ctx)


@router.register("check_run", action="requested_action")
async def on_check_run_requested_action(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    run = data["check_run"]
    if gh is None or not await _is_ours(run, ctx):
        return
    identifier = str((data.get("requested_action") or {}).get("identifier") or "")
    if identifier == REREVIEW:
        await _rereview(gh, data, run, str(data["repository"]["full_name"]), ctx)
    elif identifier == APPROVE_MERGE:
        await _approve(gh, data, run, ctx)
    else:
        ctx.log.info("unknown check-run action %r ignored", identifier)


@router.register("check_suite", action="completed")
async def on_check_suite_completed(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    if gh is None:
        return
    sha = str(data["check_suite"]["head_sha"])
    await advance_intents_for_sha(
        gh, str(data["repository"]["full_name"]), sha, acting=acting_for(ctx)
    )


@router.register("status")
async def on_status(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    data: dict[str, Any] = event.data
    if gh is None or data.get("state") == "pending":
        return  # a status turning pending can never make a waiting merge ready
    await advance_intents_for_sha(
        gh, str(data["repository"]["full_name"]), str(data["sha"]), acting=acting_for(ctx)
    )
