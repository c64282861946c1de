"""GitHub writes of a review: the check run (created, progressed, completed) and the PR review.

Each function is one or a few requests and knows GitHub's limits: at most 50 annotations per
check-run request (later ones are appended with further updates), bodies within 65,535
characters, and a review that GitHub rejects for its inline comments is posted again with the
comments folded into its body rather than lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from app.github.writes import create, find_review, marker
from app.review.render import CHECK_NAME, batches
from app.review.sanitize import GITHUB_BODY_LIMIT, truncate

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _output(title: str, summary: str, text: str | None = None) -> dict[str, Any]:
    output: dict[str, Any] = {
        "title": truncate(title, 250),
        "summary": truncate(summary, GITHUB_BODY_LIMIT),
    }
    if text:
        output["text"] = truncate(text, GITHUB_BODY_LIMIT)
    return output


async def create_check_run(
    gh: GitHubAPI,
    repository: str,
    head_sha: str,
    *,
    title: str,
    summary: str,
    external_id: str = "",
) -> int:
    """Start the check run; ``external_id`` (the review's id) finds it again after a lost answer."""

    async def find() -> Any | None:
        if not external_id:
            return None
        async for run in gh.getiter(
            f"/repos/{repository}/commits/{head_sha}/check-runs"
            f"?check_name={CHECK_NAME}&filter=all&per_page=100",
            iterable_key="check_runs",
        ):
            if run.get("external_id") == external_id:
                return run
        return None

    data = await create(
        gh,
        f"/repos/{repository}/check-runs",
        {
            "name": CHECK_NAME,
            "head_sha": head_sha,
            "status": "in_progress",
            "started_at": _now(),
            "external_id": external_id,
            "output": _output(title, summary),
        },
        find=find,
    )
    return int(data["id"])


async def update_check_run_progress(
    gh: GitHubAPI, repository: str, check_run_id: int, *, title: str, summary: str
) -> None:
    await gh.patch(
        f"/repos/{repository}/check-runs/{check_run_id}",
        data={"status": "in_progress", "output": _output(title, summary)},
    )


async def complete_check_run(
    gh: GitHubAPI,
    repository: str,
    check_run_id: int,
    *,
    conclusion: str,
    title: str,
    summary: str,
    text: str | None = None,
    annotations: Sequence[dict[str, Any]] = (),
    actions: Sequence[dict[str, str]] = (),
) -> int:
    """Complete the run; return how many requests it took (annotations come 50 at a time)."""
    chunks = batches(annotations) or [[]]
    output = _output(title, summary, text)
    body: dict[str, Any] = {
        "status": "completed",
        "conclusion": conclusion,
        "completed_at": _now(),
        "output": {**output, "annotations": chunks[0]} if chunks[0] else output,
    }
    if actions:
        body["actions"] = list(actions)[:3]
    url = f"/repos/{repository}/check-runs/{check_run_id}"
    await gh.patch(url, data=body)
    for chunk in chunks[1:]:
        await gh.patch(
            url,
            data={
                "output": {
                    "title": output["title"],
                    "summary": output["summary"],
                    "annotations": chunk,
                }
            },
        )
    return len(chunks)


async def post_review(
    gh: GitHubAPI,
    repository: str,
    pr_number: int,
    *,
    commit_id: str,
    body: str,
    comments: Sequence[dict[str, Any]],
    key: str = "",
    check_first: bool = False,
) -> tuple[int | None, bool]:
    """Post one ``COMMENT`` review pinned to ``commit_id``; return (review id, inline kept).

    A 422 on the inline comments (a line GitHub will not take) is answered by posting the same
    review without them, their text folded into the body: nothing the reviewers found is lost.
    ``key`` (the review's id) is hidden in the body, so that a lost answer, or a retry of an
    interrupted run (``check_first``), finds the review on GitHub instead of posting it again.
    """
    url = f"/repos/{repository}/pulls/{pr_number}/reviews"
    tag = marker("review", key or commit_id)

    async def find() -> Any | None:
        return await find_review(gh, repository, pr_number, tag)

    if check_first:
        existing = await find()
        if existing is not None:
            log.info("review %s is on GitHub already (review %s)", key, existing.get("id"))
            return int(existing["id"]), bool(comments)
    payload: dict[str, Any] = {
        "commit_id": commit_id,
        "event": "COMMENT",
        "body": truncate(body, GITHUB_BODY_LIMIT - len(tag) - 2) + "\n\n" + tag,
    }
    if comments:
        payload["comments"] = list(comments)
    try:
        data = await create(gh, url, payload, find=find)
        return int(data["id"]), True
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) != 422 or not comments:
            raise
        log.warning("review with inline comments was rejected (%s); posting them in the body", exc)
    folded = "\n\n".join(
        f"**`{c['path']}:{c.get('start_line', c['line'])}`**\n\n{c['body']}" for c in comments
    )
    payload = {
        "commit_id": commit_id,
        "event": "COMMENT",
        "body": truncate(f"{body}\n\n---\n\n{folded}", GITHUB_BODY_LIMIT - len(tag) - 2)
        + "\n\n"
        + tag,
    }
    data = await create(gh, url, payload, find=find)
    return int(data["id"]), False


async def report_unavailable(gh: GitHubAPI, repository: str, head_sha: str, *, reason: str) -> None:
    """A neutral check run that says why no review can run (e.g. no gateway configured)."""
    await gh.post(
        f"/repos/{repository}/check-runs",
        data={
            "name": CHECK_NAME,
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": "neutral",
            "completed_at": _now(),
            "output": _output("Review unavailable", f"No review was run: {reason}."),
        },
    )
