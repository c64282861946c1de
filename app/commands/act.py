"""``escalate`` and ``merge``: a person's decision, carried out through the acting stage.

``escalate`` labels the pull request and asks the code owners of its changed files, as an
escalation by the autonomy matrix would. ``merge`` is a person vouching for the *reviewed* commit:
the merge is pinned to the head SHA of the last published review, so a push after the review is
never merged unreviewed; it is refused when there is no such review, the head moved, the
repository does not let the bot act, the pull request carries the no-automation label or is a
draft (``policy.recheck.human_merge_refusal``, the rule every human-asked merge is re-checked
against before it happens). Otherwise it waits for green checks as a merge intent, or merges now.
"""

from __future__ import annotations

from app.commands.invocation import Invocation, Outcome
from app.policy.actions import commit_text, escalate, record_human_action, request_merge
from app.policy.decisions import ActionTaken, DecisionFields, DecisionStore
from app.policy.recheck import human_merge_refusal
from app.policy.risk import PathChange, classify_paths
from app.repo_config import RepoConfig
from app.review.pipeline import PullRequest
from app.review.store import ReviewRow, ReviewStore

__all__ = ["escalated", "merge", "merge_refusal", "run_escalate"]


async def _changed_paths(inv: Invocation) -> list[PathChange]:
    pr = inv.pr
    return [
        PathChange(str(f["filename"]), f.get("previous_filename"))
        async for f in inv.gh.getiter(f"/repos/{pr.repository}/pulls/{pr.number}/files")
    ]


async def run_escalate(inv: Invocation) -> Outcome:
    from app.handlers.pull_request import acting_for  # app.handlers imports the commands

    changes = await _changed_paths(inv)
    risk = classify_paths(changes, inv.config.risk.rules)
    paths = [name for c in changes for name in (c.path, c.previous_path) if name]
    summary = await escalate(
        inv.gh,
        inv.pr,
        driving_paths=list(dict.fromkeys(paths)),
        tier=risk.tier.value,
        autonomy=inv.config.autonomy,
        acting=acting_for(inv.ctx),
    )
    return Outcome(True, f"Escalated to a human (risk `{risk.tier.value}`): {summary}.")


def merge_refusal(pr: PullRequest, reviewed: ReviewRow | None, config: RepoConfig) -> str | None:
    """Why a ``merge`` cannot be honoured, from the data at hand; None when it can."""
    if reviewed is None:
        return "no review of this pull request was published yet; ask for `review` first"
    if pr.head_sha != reviewed.head_sha:
        return (
            f"the head moved from `{reviewed.head_sha[:12]}` to `{pr.head_sha[:12]}` since the "
            "last review; ask for `review` first"
        )
    return human_merge_refusal(pr.labels, pr.draft, config)


async def merge(inv: Invocation) -> Outcome:
    from app.handlers.pull_request import acting_for  # app.handlers imports the commands

    pr = inv.pr
    reviewed = await ReviewStore(inv.ctx.services.db).last_published(pr.repository, pr.number)
    refusal = merge_refusal(pr, reviewed, inv.config)
    if refusal is not None or reviewed is None:
        return Outcome(False, f"Not merged: {refusal}.")
    decided = [
        row
        for row in await DecisionStore(inv.ctx.services.db).decisions_for(pr.repository, pr.number)
        if row.head_sha == reviewed.head_sha
    ]
    title, message = commit_text(
        pr,
        confidence=reviewed.confidence,
        tier=decided[-1].tier if decided else None,
        approved_by=inv.requester,
    )
    acting = acting_for(inv.ctx)
    outcome = await request_merge(
        inv.gh,
        repository=pr.repository,
        pr_number=pr.number,
        head_sha=reviewed.head_sha,
        method=inv.config.autonomy.merge_method.value,
        title=title,
        message=message,
        acting=acting,
        basis=None,
        requested_by=inv.requester,
        installation_id=inv.ctx.installation_id,
    )
    await record_human_action(
        acting,
        repository=pr.repository,
        pr_number=pr.number,
        head_sha=reviewed.head_sha,
        fields=(
            DecisionFields.copy_of(decided[-1])
            if decided
            else DecisionFields(
                None, None, None, "auto_pr", "[]", inv.config.autonomy.mode.value, False
            )
        ),
        action=outcome.action,
        result=outcome.reason,
        actor=inv.requester,
    )
    sha = f"`{reviewed.head_sha[:12]}`"
    match outcome.action:
        case ActionTaken.MERGED:
            return Outcome(True, f"Merged the reviewed commit {sha}.")
        case ActionTaken.MERGE_PENDING:
            return Outcome(
                True,
                f"Will merge the reviewed commit {sha} once its checks pass: {outcome.reason}.",
            )
        case _:
            return Outcome(False, f"Not merged ({outcome.action.value}): {outcome.reason}.")


async def escalated(inv: Invocation) -> bool:
    """Whether the bot escalated this pull request: its label, or a decision at this head."""
    wanted = inv.config.autonomy.escalation_label.casefold()
    if any(label.casefold() == wanted for label in inv.pr.labels):
        return True
    rows = await DecisionStore(inv.ctx.services.db).decisions_for(inv.pr.repository, inv.pr.number)
    return any(r.decision == "escalate" and r.head_sha == inv.pr.head_sha for r in rows)
