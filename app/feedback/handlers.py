"""The events that tell what became of a decided change, wired to the registry.

Fetch → decide → store, per event:

- ``pull_request`` closed: a merge completes the change's registration (merge commit, the pull
  request's commits, the lines it wrote, the checks that passed on its head). The merged pull
  request may itself be evidence: a GitHub revert branch (``revert-<n>-…``) reverts pull request
  ``n``; a fix (by title, branch or label) that changes lines an earlier change wrote inside its
  window is a follow-up fix of it.
- ``push`` to the default branch: a commit saying ``This reverts commit <sha>`` reverts the
  change owning that commit (its merge commit or any commit of its pull request).
- ``check_run`` / ``check_suite`` completed, ``status``: a check failing on a merge commit that
  passed on the pull request's head means the merge broke CI.
- ``pull_request_review`` submitted with changes requested by a person, on a change the bot let
  through (``auto_merge`` or ``auto_pr``), and a person removing the bot's escalation label:
  a human overrode the bot.

Each effect is stored with the event's evidence (commit, pull request, check, review), unique per
change, so a redelivered event counts once. Bots' reviews and labels (this App's included) are
not a human's override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.commands.handler import is_bot
from app.config_loader import ConfigLoader
from app.feedback.registry import ChangeRef, FeedbackStore, MergeFacts
from app.feedback.signals import (
    FAILED_CHECK_CONCLUSIONS,
    FAILED_STATUS_STATES,
    Effect,
    failed_checks_that_passed,
    is_fix,
    overlaps,
    patch_ranges,
    revert_branch_number,
    reverted_shas,
)
from app.repo_config import RepoConfig
from app.review.render import CHECK_NAME

if TYPE_CHECKING:  # app.handlers imports this module; the context is only a type here
    from app.handlers.context import HandlerContext

__all__ = ["router"]

router = routing.Router()

#: At most this many files and commits are read from a merged pull request (GitHub's own caps).
MAX_FILES: Final = 3000
MAX_COMMITS: Final = 250


def _store(ctx: HandlerContext) -> FeedbackStore:
    return FeedbackStore(ctx.services.db)


async def _config(gh: GitHubAPI, data: Mapping[str, Any], ctx: HandlerContext) -> RepoConfig:
    repository = data["repository"]
    loader = ctx.services.config_loader or ConfigLoader()
    loaded = await loader.load(
        gh, str(repository["full_name"]), str(repository.get("default_branch") or "main")
    )
    return loaded.config


def _when(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


async def _collect(gh: GitHubAPI, url: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async for item in gh.getiter(url):
        items.append(item)
        if len(items) >= limit:
            break
    return items


async def _passed_checks(gh: GitHubAPI, repository: str, sha: str) -> tuple[str, ...]:
    """The check runs and commit statuses that passed on ``sha`` (this App's own excluded)."""
    passed: list[str] = []
    async for run in gh.getiter(
        f"/repos/{repository}/commits/{sha}/check-runs", iterable_key="check_runs"
    ):
        if run.get("conclusion") == "success" and run.get("name") != CHECK_NAME:
            passed.append(str(run["name"]))
    combined = await gh.getitem(f"/repos/{repository}/commits/{sha}/status")
    for status in combined.get("statuses") or []:
        if status.get("state") == "success":
            passed.append(str(status.get("context") or ""))
    return tuple(name for name in passed if name)


async def _effect(
    ctx: HandlerContext, change: ChangeRef, kind: Effect, evidence: str, detail: str
) -> None:
    added = await _store(ctx).add_effect(change.id, kind, evidence=evidence, detail=detail)
    if added:
        ctx.log.info(
            "feedback: %s#%s %s (%s)", change.repository, change.pr_number, kind.value, detail
        )


# ---------------------------------------------------------------------------- merges


@router.register("pull_request", action="closed")
async def on_closed(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    data: dict[str, Any] = event.data
    pull = data.get("pull_request") or {}
    repository = str(data["repository"]["full_name"])
    number = int(pull.get("number") or data.get("number") or 0)
    store = _store(ctx)
    if not pull.get("merged"):
        await store.record_closed(repository, number)
        return
    if gh is None:
        return
    config = await _config(gh, data, ctx)
    window = timedelta(days=config.feedback.window_days)
    merged_at = _when(pull.get("merged_at") or pull.get("closed_at"))
    change = await store.change_for_pr(repository, number)
    branch = str((pull.get("head") or {}).get("ref") or "")
    labels = [str(label.get("name") or "") for label in pull.get("labels") or []]
    default_branch = str(data["repository"].get("default_branch") or "main")
    into_default = str((pull.get("base") or {}).get("ref") or "") == default_branch
    reverts = revert_branch_number(branch)
    fixes = into_default and is_fix(str(pull.get("title") or ""), branch, labels)
    files: list[dict[str, Any]] = []
    if change is not None or fixes:
        files = await _collect(gh, f"/repos/{repository}/pulls/{number}/files", MAX_FILES)

    if change is not None and change.state != "merged":
        head_sha = str((pull.get("head") or {}).get("sha") or change.head_sha)
        commits = await _collect(gh, f"/repos/{repository}/pulls/{number}/commits", MAX_COMMITS)
        identity = await ctx.services.auth.identity()
        merged_by = (pull.get("merged_by") or {}).get("login") or ""
        await store.record_merge(
            MergeFacts(
                repository=repository,
                pr_number=number,
                head_sha=head_sha,
                merge_sha=pull.get("merge_commit_sha"),
                merged_at=merged_at,
                merged_by_bot=str(merged_by).casefold() == identity.bot_login.casefold(),
                commits=tuple(str(c["sha"]) for c in commits if c.get("sha")),
                touched=patch_ranges(files, side="new"),
                passed_checks=await _passed_checks(gh, repository, head_sha),
                window=window,
            )
        )

    if reverts is not None and into_default and reverts != number:
        target = await store.change_for_pr(repository, reverts)
        if target is not None and target.state == "merged":
            await _effect(
                ctx, target, Effect.REVERTED, f"pr:{number}", f"reverted by pull request #{number}"
            )
    if fixes:
        await _follow_up_fixes(ctx, repository, number, files, merged_at, window)


async def _follow_up_fixes(
    ctx: HandlerContext,
    repository: str,
    number: int,
    files: Sequence[Mapping[str, Any]],
    merged_at: datetime,
    window: timedelta,
) -> None:
    changed = patch_ranges(files, side="old")
    for earlier in await _store(ctx).merged_between(repository, merged_at - window, merged_at):
        if earlier.pr_number == number:
            continue
        paths = overlaps(earlier.touched, changed)
        if paths:
            where = ", ".join(paths[:3]) + (" …" if len(paths) > 3 else "")
            await _effect(
                ctx,
                earlier,
                Effect.FOLLOW_UP_FIX,
                f"pr:{number}",
                f"pull request #{number} fixed lines it wrote ({where})",
            )


# ---------------------------------------------------------------------------- reverts


@router.register("push")
async def on_push(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    """Reverts pushed to the default branch (directly, or as a pull request's merge commit)."""
    data: dict[str, Any] = event.data
    repository_data = data.get("repository") or {}
    default_branch = str(repository_data.get("default_branch") or "")
    if not default_branch or data.get("ref") != f"refs/heads/{default_branch}":
        return
    repository = str(repository_data["full_name"])
    store = _store(ctx)
    for commit in data.get("commits") or []:
        sha = str(commit.get("id") or "")
        shas = reverted_shas(str(commit.get("message") or ""))
        if not sha or not shas:
            continue
        for change in await store.changes_by_commit(repository, shas):
            if change.merge_sha == sha.lower():
                continue  # a change never reverts itself (its squash message may quote one)
            await _effect(
                ctx, change, Effect.REVERTED, f"commit:{sha}", f"reverted by commit {sha[:12]}"
            )


# ---------------------------------------------------------------------------- CI


async def _broke(
    ctx: HandlerContext, repository: str, sha: str, failed: Sequence[str], how: str
) -> None:
    for change in await _store(ctx).changes_by_merge_sha(repository, sha):
        for name in failed_checks_that_passed(failed, change.passed_checks):
            await _effect(
                ctx,
                change,
                Effect.BROKE_CI,
                f"check:{name}@{sha}",
                f"{how} {name!r} failed on the merge commit {sha[:12]} after passing on the head",
            )


@router.register("check_run", action="completed")
async def on_check_run(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    run = event.data.get("check_run") or {}
    if run.get("conclusion") not in FAILED_CHECK_CONCLUSIONS or run.get("name") == CHECK_NAME:
        return
    await _broke(
        ctx,
        str(event.data["repository"]["full_name"]),
        str(run.get("head_sha") or ""),
        [str(run.get("name") or "")],
        "check",
    )


@router.register("check_suite", action="completed")
async def on_check_suite(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    suite = event.data.get("check_suite") or {}
    if gh is None or suite.get("conclusion") not in FAILED_CHECK_CONCLUSIONS:
        return
    repository = str(event.data["repository"]["full_name"])
    sha = str(suite.get("head_sha") or "")
    if not await _store(ctx).changes_by_merge_sha(repository, sha):
        return  # the common case: no registered merge here, nothing to fetch
    # The suite's runs, read from the commit's latest runs (one listing GitHub documents for
    # every App), so a suite's failure names the checks that failed in it.
    failed = [
        str(run.get("name") or "")
        async for run in gh.getiter(
            f"/repos/{repository}/commits/{sha}/check-runs", iterable_key="check_runs"
        )
        if (run.get("check_suite") or {}).get("id") == suite.get("id")
        and run.get("conclusion") in FAILED_CHECK_CONCLUSIONS
        and run.get("name") != CHECK_NAME
    ]
    await _broke(ctx, repository, sha, failed, "check")


@router.register("status")
async def on_status(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    data: dict[str, Any] = event.data
    if data.get("state") not in FAILED_STATUS_STATES:
        return
    await _broke(
        ctx,
        str(data["repository"]["full_name"]),
        str(data.get("sha") or ""),
        [str(data.get("context") or "")],
        "status",
    )


# ---------------------------------------------------------------------------- overrides

LET_THROUGH: Final = frozenset({"auto_merge", "auto_pr"})


@router.register("pull_request_review", action="submitted")
async def on_review(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    data: dict[str, Any] = event.data
    review = data.get("review") or {}
    if str(review.get("state") or "").lower() != "changes_requested" or is_bot(
        review.get("user") or {}
    ):
        return
    repository = str(data["repository"]["full_name"])
    number = int((data.get("pull_request") or {}).get("number") or 0)
    change = await _store(ctx).change_for_pr(repository, number)
    if change is None or change.decision not in LET_THROUGH:
        return
    who = str((review.get("user") or {}).get("login") or "someone")
    await _effect(
        ctx,
        change,
        Effect.HUMAN_OVERRIDE,
        f"review:{review.get('id')}",
        f"{who} requested changes after the bot decided {change.decision}",
    )


@router.register("pull_request", action="unlabeled")
async def on_unlabeled(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    data: dict[str, Any] = event.data
    if gh is None or is_bot(data.get("sender") or {}):
        return
    label = str((data.get("label") or {}).get("name") or "")
    repository = str(data["repository"]["full_name"])
    pull = data.get("pull_request") or {}
    number = int(pull.get("number") or data.get("number") or 0)
    change = await _store(ctx).change_for_pr(repository, number)
    if change is None or change.decision != "escalate":
        return
    config = await _config(gh, data, ctx)
    if label.casefold() != config.autonomy.escalation_label.casefold():
        return
    who = str((data.get("sender") or {}).get("login") or "someone")
    await _effect(
        ctx,
        change,
        Effect.HUMAN_OVERRIDE,
        f"unlabeled:{label}@{pull.get('updated_at')}",
        f"{who} removed the {label!r} label the bot set",
    )
