"""Acting on a decision: merge, leave it for a human, escalate; and pull requests for agent branches.

The autonomy decision (``app.policy.autonomy``) says *what* a reviewed change deserves; this module
carries it out against GitHub, idempotently, and stores what it did (``app.policy.decisions``).

Merging is the dangerous action, so it is pinned and gated:

- the merge names the reviewed head SHA (``PUT …/merge`` with ``sha``): if anyone pushed since,
  GitHub answers 409 and nothing unreviewed is merged;
- it happens only when the pull request is open, not a draft, mergeable, and every check on that
  SHA is green (the combined status and the check runs, except this bot's own review check);
- while checks are pending, or GitHub is still computing mergeability, the wish to merge is kept
  as a *merge intent* and re-examined when a ``check_suite``/``status`` event arrives for the same
  SHA; failed checks, a moved head or a closed pull request drop it;
- right before every attempt the pull request and the repository config are read again and the
  decision is taken again on those fresh facts (``policy/recheck``): a label, a draft, a switch
  to shadow mode or a new risk rule that lowers it cancels the merge, with one comment;
- a claim on the intent row makes the merge happen at most once, however many events race;
- a refusal (GitHub's 405/409, conflicts, branch protection) ends in one comment per head, never
  in a retry loop.

Nothing a model or a pull request author writes reaches these functions except as text to post:
the only inputs that choose an action are the decision (from the matrix and its guards), the
repository's config from the default branch, and GitHub's own view of the pull request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, assert_never

import gidgethub
from gidgethub.abc import GitHubAPI
from pathspec import GitIgnoreSpec
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config_loader import ConfigLoader, fetch_text_file
from app.feedback.registry import FeedbackStore
from app.github.auth import AppIdentity
from app.github.writes import LOST, create, find_comment, marker
from app.policy.autonomy import AutonomyDecision, Decision, decide
from app.policy.codeowners import CODEOWNERS_PATHS, CodeOwners, Owners, parse_codeowners
from app.policy.codeowners import select_reviewers as choose_reviewers
from app.policy.decisions import (
    ActionTaken,
    DecisionFields,
    DecisionStore,
    IntentStatus,
    MergeIntent,
)
from app.policy.outbox import ActionKind, ActionStatus, Outbox, OutboxAction
from app.policy.permissions import fetch_permission, permission_of
from app.policy.recheck import DecisionBasis, human_merge_refusal
from app.queue import RetryLater
from app.repo_config import AutonomyConfig, AutonomyMode, Permission, RepoConfig
from app.review.pipeline import PullRequest, ReviewOutcome
from app.review.render import CHECK_NAME
from app.review.sanitize import clean, truncate
from app.store.types import utcnow

__all__ = [
    "ACCEPTABLE_MERGE_STATES",
    "Acting",
    "ActionRecord",
    "AgentPush",
    "Checks",
    "Gate",
    "IdentitySource",
    "MergeOutcome",
    "Readiness",
    "act_on_review",
    "advance_intent",
    "advance_intents_for_sha",
    "approve_merge",
    "checks_gate",
    "escalate",
    "has_write_access",
    "is_agent_branch",
    "load_code_owners",
    "open_agent_pr",
    "pull_gate",
    "read_checks",
    "request_merge",
    "summarize_checks",
]

log = logging.getLogger(__name__)

#: ``mergeable_state`` values GitHub uses for a pull request that can be merged now.
ACCEPTABLE_MERGE_STATES: Final = frozenset({"clean", "unstable", "has_hooks"})
#: Check-run conclusions that count as green.
_GREEN_CONCLUSIONS: Final = frozenset({"success", "neutral", "skipped"})
#: GitHub answers that mean "not this merge", for good: commented on once, never retried.
_REFUSAL_STATUSES: Final = frozenset({405, 409, 422})
#: How long a claimed notice may go unposted before a later call looks for it on GitHub.
NOTICE_GRACE: Final = timedelta(seconds=60)
#: Most commits listed in the body of a pull request opened for an agent branch.
MAX_LISTED_COMMITS: Final = 50


class IdentitySource(Protocol):
    """Where the App's own id and login come from (``AppAuth`` in the server)."""

    async def identity(self) -> AppIdentity: ...


@dataclass(frozen=True, slots=True)
class Acting:
    """What every action needs besides the GitHub client: the store, the App's identity, and
    the repository config as it is now on the default branch (read again before acting)."""

    store: DecisionStore
    identity: IdentitySource
    configs: ConfigLoader
    log: logging.Logger = field(default=log)
    notice_grace: timedelta = NOTICE_GRACE

    async def config(self, gh: GitHubAPI, pr: PullRequest) -> RepoConfig:
        return (await self.configs.load(gh, pr.repository, pr.default_branch)).config

    @property
    def outbox(self) -> Outbox:
        """The outbox, its claims as long as the store's (both bound a dead sender's hold)."""
        return Outbox(self.store.db, claim_seconds=self.store.claim_seconds)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """What was done about one decision, as stored in the ``decisions`` table."""

    action: ActionTaken
    result: str
    decision_id: int | None = None


# ---------------------------------------------------------------------------------- readiness


class Gate(StrEnum):
    """Whether a merge intent can go ahead."""

    READY = "ready"
    WAIT = "wait"  # checks pending or mergeability unknown: keep the intent
    DROP = "drop"  # head moved, checks failed, closed: forget it quietly
    REFUSE = "refuse"  # GitHub or the pull request's state says no: say why, once
    CANCEL = "cancel"  # fresh facts lower the decision (a label, a draft, the config): say why


@dataclass(frozen=True, slots=True)
class Readiness:
    gate: Gate
    reason: str


@dataclass(frozen=True, slots=True)
class Checks:
    """The checks on one commit, other than this bot's review: names still running or not green."""

    pending: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


def pull_gate(pr: PullRequest, head_sha: str) -> Readiness | None:
    """What the pull request alone says about merging ``head_sha``; None when it allows it so far.

    Run before the checks are read: a closed, moved, draft or conflicting pull request needs no
    further requests to know the answer.
    """
    state = pr.mergeable_state
    if pr.merged:
        if pr.head_sha == head_sha:
            # What was decided has happened (an earlier attempt whose answer was lost, or a
            # person who merged the same commit first): nothing more to do.
            return Readiness(Gate.READY, f"merged at {head_sha[:12]} already")
        return Readiness(Gate.DROP, "the pull request was merged already")
    if pr.state != "open":
        return Readiness(Gate.DROP, f"the pull request is {pr.state}")
    if pr.head_sha != head_sha:
        return Readiness(
            Gate.DROP, f"the head moved from {head_sha[:12]} to {pr.head_sha[:12]} after the review"
        )
    if pr.draft or state == "draft":
        return Readiness(Gate.CANCEL, "the pull request is now a draft")
    if pr.mergeable is False or state == "dirty":
        return Readiness(Gate.REFUSE, "it has merge conflicts with its base branch")
    if state == "behind":
        return Readiness(
            Gate.REFUSE, "its branch is behind the base branch, which branch protection forbids"
        )
    return None


def checks_gate(pr: PullRequest, checks: Checks) -> Readiness:
    """The verdict once ``pull_gate`` passed and the checks on the head are known."""
    if checks.failed:
        return Readiness(Gate.DROP, f"checks did not pass: {', '.join(checks.failed)}")
    if checks.pending:
        return Readiness(Gate.WAIT, f"waiting for checks: {', '.join(checks.pending)}")
    state = pr.mergeable_state
    if pr.mergeable is None or state in {None, "unknown"}:
        return Readiness(Gate.WAIT, "GitHub is still computing whether it can be merged")
    if state == "blocked":
        return Readiness(
            Gate.REFUSE, "branch protection blocks it (a required review or check is missing)"
        )
    if state in ACCEPTABLE_MERGE_STATES:
        return Readiness(Gate.READY, "open, mergeable and green")
    return Readiness(Gate.REFUSE, f"GitHub reports its merge state as {state!r}")


def summarize_checks(
    statuses: Iterable[Mapping[str, Any]],
    check_runs: Iterable[Mapping[str, Any]],
    *,
    own_app_id: int | None,
) -> Checks:
    """Pending and failed checks from the combined status's ``statuses`` and the check runs.

    The combined ``state`` itself is not used: GitHub calls a commit with *no* statuses
    ``pending``, which would wait for ever on a repository that only uses check runs. This bot's
    own review check is ignored (it is the review being acted on, not a gate on it).
    """
    pending: list[str] = []
    failed: list[str] = []
    for status in statuses:
        name = str(status.get("context") or "status")
        match status.get("state"):
            case "success":
                pass
            case "pending":
                pending.append(name)
            case _:
                failed.append(name)
    for run in check_runs:
        app = run.get("app") or {}
        name = str(run.get("name") or "check")
        if name == CHECK_NAME and (own_app_id is None or app.get("id") == own_app_id):
            continue
        if run.get("status") != "completed":
            pending.append(name)
        elif run.get("conclusion") not in _GREEN_CONCLUSIONS:
            failed.append(name)
    return Checks(tuple(dict.fromkeys(pending)), tuple(dict.fromkeys(failed)))


async def read_checks(
    gh: GitHubAPI, repository: str, sha: str, *, own_app_id: int | None
) -> Checks:
    """The combined status and every check run of ``sha`` (two requests, more if paginated)."""
    combined = await gh.getitem(f"/repos/{repository}/commits/{sha}/status?per_page=100")
    runs = [
        run
        async for run in gh.getiter(
            f"/repos/{repository}/commits/{sha}/check-runs?per_page=100",
            iterable_key="check_runs",
        )
    ]
    return summarize_checks(combined.get("statuses") or [], runs, own_app_id=own_app_id)


# ---------------------------------------------------------------------------------- merging


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    action: ActionTaken
    reason: str


#: How often a worker tries to claim an intent that keeps changing hands, and how often a holder
#: looks again when asked to; both only bound a burst of racing events.
_CLAIM_TRIES: Final = 3
_MAX_LOOKS: Final = 3
_FINAL_ACTIONS: Final[Mapping[IntentStatus, ActionTaken]] = {
    IntentStatus.MERGED: ActionTaken.MERGED,
    IntentStatus.DROPPED: ActionTaken.MERGE_DROPPED,
    IntentStatus.REFUSED: ActionTaken.MERGE_REFUSED,
    IntentStatus.CANCELLED: ActionTaken.MERGE_CANCELLED,
}
_SETTLED: Final[Mapping[Gate, tuple[IntentStatus, ActionTaken]]] = {
    Gate.READY: (IntentStatus.MERGED, ActionTaken.MERGED),
    Gate.WAIT: (IntentStatus.PENDING, ActionTaken.MERGE_PENDING),
    Gate.DROP: (IntentStatus.DROPPED, ActionTaken.MERGE_DROPPED),
    Gate.REFUSE: (IntentStatus.REFUSED, ActionTaken.MERGE_REFUSED),
    Gate.CANCEL: (IntentStatus.CANCELLED, ActionTaken.MERGE_CANCELLED),
}


def commit_text(
    pr: PullRequest,
    *,
    confidence: float | None,
    tier: str | None,
    approved_by: str | None = None,
) -> tuple[str, str]:
    """The merge commit's title and message: the pull request, and the review that let it in."""
    title = truncate(f"{pr.title} (#{pr.number})", 250, note="…")
    how = f"on {approved_by}'s approval " if approved_by else ""
    facts = [f"confidence {confidence:.2f}"] if confidence is not None else []
    facts += [f"risk {tier}"] if tier else []
    message = f"Merged by {CHECK_NAME} {how}after review of {pr.head_sha[:12]}"
    return title, message + (f": {', '.join(facts)}." if facts else ".")


async def request_merge(
    gh: GitHubAPI,
    *,
    repository: str,
    pr_number: int,
    head_sha: str,
    method: str,
    title: str,
    message: str,
    acting: Acting,
    basis: DecisionBasis | None,
    requested_by: str | None = None,
    installation_id: int | None = None,
) -> MergeOutcome:
    """Record the intent to merge the pull request at ``head_sha``, then try it now.

    ``basis`` is what the bot decided from, so the decision can be taken again before each
    attempt; None for a merge a person asked for (then only their word, the label, the draft
    flag and the autonomy mode are checked again).
    """
    intent = await acting.store.upsert_intent(
        repository=repository,
        pr_number=pr_number,
        head_sha=head_sha,
        merge_method=method,
        commit_title=title,
        commit_message=message,
        requested_by=requested_by,
        basis=basis.to_json() if basis is not None else None,
        installation_id=installation_id,
    )
    return await advance_intent(gh, intent, acting=acting)


async def advance_intents_for_sha(
    gh: GitHubAPI, repository: str, sha: str, *, acting: Acting
) -> list[MergeOutcome]:
    """Re-examine every waiting merge intent for ``sha`` (after a check_suite or status event)."""
    outcomes: list[MergeOutcome] = []
    for intent in await acting.store.intents_for_sha(repository, sha):
        outcome = await advance_intent(gh, intent, acting=acting)
        outcomes.append(outcome)
        if outcome.action is not ActionTaken.MERGE_PENDING:
            await acting.store.settle_pending_decision(
                repository, intent.pr_number, sha, outcome.action, outcome.reason
            )
    return outcomes


async def advance_intent(gh: GitHubAPI, intent: MergeIntent, *, acting: Acting) -> MergeOutcome:
    """Claim the intent, check the pull request and its checks, and merge if everything is green.

    Only the worker that moved the row from ``pending`` to ``merging`` may call GitHub. Another
    worker arriving meanwhile asks the holder to look again (its event may be the one that made
    the checks green) and returns. Whatever happens, the claim is settled: back to ``pending``
    when the attempt raised (the next event tries again), else to the outcome's status.
    """
    if intent.status is IntentStatus.MERGED:
        return MergeOutcome(ActionTaken.MERGED, "merged already")
    deferred = await _claim_or_defer(intent, acting)
    if deferred is not None:
        return deferred
    try:
        readiness = await _attempt_until_settled(gh, intent, acting=acting)
    except Exception:
        await acting.store.settle(intent.id, IntentStatus.PENDING, "the last attempt failed")
        raise
    status, action = _SETTLED[readiness.gate]
    if readiness.gate is not Gate.WAIT:  # a wait was released inside the loop
        await acting.store.settle(intent.id, status, readiness.reason)
    acting.log.info(
        "merge of %s#%d at %s: %s (%s)",
        intent.repository,
        intent.pr_number,
        intent.head_sha[:12],
        action.value,
        readiness.reason,
    )
    if readiness.gate is Gate.REFUSE:
        await _explain_refusal(gh, intent, readiness.reason, acting=acting)
    elif readiness.gate is Gate.CANCEL:
        await _explain_cancel(gh, intent, readiness.reason, acting=acting)
    return MergeOutcome(action, readiness.reason)


async def _claim_or_defer(intent: MergeIntent, acting: Acting) -> MergeOutcome | None:
    """None once this worker holds the claim; else what happened to the intent instead."""
    for _ in range(_CLAIM_TRIES):
        if await acting.store.claim(intent.id):
            return None
        if await acting.store.request_recheck(intent.id):
            return MergeOutcome(ActionTaken.MERGE_PENDING, "another worker is handling this merge")
        current = await acting.store.get_intent(intent.id)
        if current is None:
            return MergeOutcome(ActionTaken.MERGE_DROPPED, "the merge intent is gone")
        if current.status not in {IntentStatus.PENDING, IntentStatus.MERGING}:
            status = current.status
            action = _FINAL_ACTIONS.get(status, ActionTaken.MERGE_DROPPED)
            return MergeOutcome(action, current.reason or status.value)
    return MergeOutcome(ActionTaken.MERGE_PENDING, "the merge intent is busy")


async def _attempt_until_settled(
    gh: GitHubAPI, intent: MergeIntent, *, acting: Acting
) -> Readiness:
    """Attempt the merge; a wait is released only when no other event asked for a recheck."""
    for _ in range(_MAX_LOOKS):
        readiness = await _attempt(gh, intent, acting=acting)
        if readiness.gate is not Gate.WAIT:
            return readiness
        if await acting.store.release(intent.id, readiness.reason):
            return readiness
    await acting.store.settle(intent.id, IntentStatus.PENDING, readiness.reason)
    return readiness


async def _attempt(gh: GitHubAPI, intent: MergeIntent, *, acting: Acting) -> Readiness:
    """One look at the merge, on facts read now: the pull request, the config, the checks."""
    pr = await _read_pull(gh, intent.repository, intent.pr_number)
    verdict = pull_gate(pr, intent.head_sha)
    if verdict is not None:
        return verdict
    config = await acting.config(gh, pr)
    if intent.basis is not None:
        basis = DecisionBasis.from_json(intent.basis)
        cancel = basis.refusal(labels=pr.labels, draft=pr.draft, config=config)
    else:
        cancel = human_merge_refusal(pr.labels, pr.draft, config)
    if cancel is not None:
        return Readiness(Gate.CANCEL, cancel)
    own = await acting.identity.identity()
    checks = await read_checks(gh, intent.repository, intent.head_sha, own_app_id=own.id)
    verdict = checks_gate(pr, checks)
    if verdict.gate is not Gate.READY:
        return verdict
    return await _merge(gh, intent)


async def _merge(gh: GitHubAPI, intent: MergeIntent) -> Readiness:
    """``PUT …/merge`` pinned to the intent's SHA; a refusal is an answer, not an error."""
    try:
        await gh.put(
            f"/repos/{intent.repository}/pulls/{intent.pr_number}/merge",
            data={
                "sha": intent.head_sha,
                "merge_method": intent.merge_method,
                "commit_title": intent.commit_title,
                "commit_message": intent.commit_message,
            },
        )
    except gidgethub.BadRequest as exc:
        status = int(exc.status_code)
        if status not in _REFUSAL_STATUSES or isinstance(exc, gidgethub.RateLimitExceeded):
            raise
        # A merge that went through on an earlier, timed-out attempt is answered 405 now.
        current = await _read_pull(gh, intent.repository, intent.pr_number)
        if current.merged and current.head_sha == intent.head_sha:
            return Readiness(Gate.READY, "merged (by an earlier attempt)")
        return Readiness(Gate.REFUSE, f"GitHub refused the merge ({status}: {_message(exc)})")
    return Readiness(Gate.READY, f"merged at {intent.head_sha[:12]} ({intent.merge_method})")


def _message(exc: gidgethub.BadRequest) -> str:
    text = str(exc.args[0]) if exc.args else ""
    return text or "no message"


async def _read_pull(gh: GitHubAPI, repository: str, number: int) -> PullRequest:
    return PullRequest.from_api(await gh.getitem(f"/repos/{repository}/pulls/{number}"))


async def _explain_refusal(
    gh: GitHubAPI, intent: MergeIntent, reason: str, *, acting: Acting
) -> None:
    body = (
        f"**{CHECK_NAME}** did not merge this pull request at `{intent.head_sha[:12]}`: "
        f"{clean(reason)}.\n\nIt will not try again for this commit. Merge it yourself once "
        "that is resolved, or push a new commit for a fresh review."
    )
    await post_once(
        gh,
        intent.repository,
        intent.pr_number,
        intent.head_sha,
        "merge_refused",
        body,
        acting=acting,
    )


async def _explain_cancel(
    gh: GitHubAPI, intent: MergeIntent, reason: str, *, acting: Acting
) -> None:
    body = (
        f"**{CHECK_NAME}** cancelled its merge of this pull request at "
        f"`{intent.head_sha[:12]}`: {clean(reason)}.\n\nNothing was merged. Merge it yourself "
        "if that is right, or push a new commit for a fresh review."
    )
    await post_once(
        gh,
        intent.repository,
        intent.pr_number,
        intent.head_sha,
        "merge_cancelled",
        body,
        acting=acting,
    )


async def post_once(
    gh: GitHubAPI,
    repository: str,
    number: int,
    head_sha: str,
    kind: str,
    body: str,
    *,
    acting: Acting,
) -> bool:
    """Comment on the pull request unless a comment of this kind exists for this head already.

    The stored notice makes it once per head; the hidden marker makes it once on GitHub even
    when GitHub's answer to the POST is lost.
    """
    tag = marker("notice", f"{kind}:{head_sha}")

    async def find() -> Any | None:
        return await find_comment(gh, repository, number, tag)

    if not await acting.store.claim_notice(repository, number, head_sha, kind):
        # Claimed before. Normally posted too; but a process killed between the claim and the
        # post leaves a claim with no comment, so an old claim is checked against GitHub.
        claimed = await acting.store.notice_claimed_at(repository, number, head_sha, kind)
        if claimed is None or utcnow() - claimed < acting.notice_grace or await find() is not None:
            return False
        acting.log.info("notice %s on %s#%d was claimed but never posted", kind, repository, number)

    try:
        await create(
            gh,
            f"/repos/{repository}/issues/{number}/comments",
            {"body": f"{body}\n\n{tag}"},
            find=find,
        )
    except Exception:
        await acting.store.forget_notice(repository, number, head_sha, kind)
        raise
    return True


# ---------------------------------------------------------------------------------- escalating


async def load_code_owners(gh: GitHubAPI, repository: str, ref: str) -> CodeOwners | None:
    """The CODEOWNERS file GitHub would use on ``ref``: the first of its three places that exists."""
    for path in CODEOWNERS_PATHS:
        fetched = await fetch_text_file(gh, repository, path, ref=ref)
        if fetched is not None:
            return parse_codeowners(fetched.text)
    return None


async def escalate(
    gh: GitHubAPI,
    pr: PullRequest,
    *,
    driving_paths: Sequence[str],
    tier: str,
    autonomy: AutonomyConfig,
    acting: Acting,
    head_sha: str | None = None,
) -> str:
    """Label the pull request and ask the code owners of the risky paths (or the configured
    people) to review it; say so in a comment when nobody can be asked. Returns a summary."""
    label = autonomy.escalation_label
    await gh.post(f"/repos/{pr.repository}/issues/{pr.number}/labels", data={"labels": [label]})
    owners = await load_code_owners(gh, pr.repository, pr.default_branch)
    found = owners.owners_for(driving_paths) if owners is not None else Owners()
    sha = head_sha or pr.head_sha
    chosen = choose_reviewers(
        found.users,
        found.teams,
        autonomy.escalation.reviewers,
        autonomy.escalation.teams,
        pr_author=pr.author,
    )
    if not chosen.users and not chosen.teams:
        await post_once(
            gh,
            pr.repository,
            pr.number,
            sha,
            "escalation_nobody",
            _nobody_comment(driving_paths, tier),
            acting=acting,
        )
        return f"labelled {label!r}; nobody to request a review from"
    try:
        await gh.post(
            f"/repos/{pr.repository}/pulls/{pr.number}/requested_reviewers",
            data={"reviewers": list(chosen.users), "team_reviewers": list(chosen.teams)},
        )
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) != 422:
            raise
        await post_once(
            gh,
            pr.repository,
            pr.number,
            sha,
            "escalation_request_failed",
            f"**{CHECK_NAME}** escalated this pull request but GitHub would not request reviews "
            f"from {_who(chosen)}: {clean(_message(exc))}. Please find a reviewer by hand.",
            acting=acting,
        )
        return f"labelled {label!r}; requesting {_who(chosen)} failed: {_message(exc)}"
    return f"labelled {label!r}; requested {_who(chosen)}"


def _who(owners: Owners) -> str:
    names = [f"`{u}`" for u in owners.users] + [f"team `{t}`" for t in owners.teams]
    return ", ".join(names)


def _nobody_comment(driving_paths: Sequence[str], tier: str) -> str:
    paths = ", ".join(f"`{p}`" for p in driving_paths[:10]) or "the changed files"
    return (
        f"**{CHECK_NAME}** escalated this pull request to a human (risk: {tier}, "
        f"driven by {paths}), but found nobody to request a review from: no code owner of "
        "those paths other than the author, and no `autonomy.escalation.reviewers` or "
        "`autonomy.escalation.teams` in `.github/aigateway.yml`. Please find a reviewer by hand."
    )


# ---------------------------------------------------------------------------------- after a review


def plan_action(
    decision: AutonomyDecision, basis: DecisionBasis | None
) -> tuple[ActionTaken, str, ActionKind | None]:
    """What a decision asks for: the row's first ``action_taken`` and the action to queue."""
    if not decision.act:
        return ActionTaken.NOTHING, decision.explain(), None
    match decision.decision:
        case Decision.AUTO_MERGE:
            if basis is None:  # nothing to decide again on fresh facts: a human merges it
                return (
                    ActionTaken.LEFT_FOR_HUMAN,
                    "no decision basis to re-check before merging",
                    None,
                )
            return ActionTaken.PENDING, "merge queued", ActionKind.MERGE
        case Decision.AUTO_PR:
            return ActionTaken.LEFT_FOR_HUMAN, "left for a human to merge", None
        case Decision.ESCALATE:
            return ActionTaken.PENDING, "escalation queued", ActionKind.ESCALATE
        case _:
            assert_never(decision.decision)


async def record_decision_in(
    conn: AsyncConnection,
    outcome: ReviewOutcome,
    *,
    store: DecisionStore,
    outbox: Outbox,
    installation_id: int | None,
) -> int | None:
    """Write the decision and the action it asks for, inside the caller's transaction.

    The pipeline calls this in the transaction that marks the review published, so a published
    review always has its decision and its queued action, and a retried delivery finds them.
    """
    pr, decision, risk, config = outcome.pr, outcome.decision, outcome.risk, outcome.config
    if pr is None or decision is None or risk is None or config is None:
        return None
    action, result, kind = plan_action(decision, outcome.basis)
    decision_id = await store.record_in(
        conn,
        repository=pr.repository,
        pr_number=pr.number,
        head_sha=pr.head_sha,
        fields=DecisionFields.of(decision),
        action_taken=action,
        result=result,
        check_run_id=outcome.check_run_id,
    )
    if kind is not None:
        await outbox.add_in(
            conn,
            repository=pr.repository,
            pr_number=pr.number,
            head_sha=pr.head_sha,
            kind=kind,
            decision_id=decision_id,
            installation_id=installation_id,
            payload=_payload(kind, outcome),
        )
    # Every decision is a registered change, in the same transaction: none is ever missing.
    await FeedbackStore(store.db).register_in(
        conn,
        repository=pr.repository,
        pr_number=pr.number,
        head_sha=pr.head_sha,
        decision_id=decision_id,
        tier=decision.tier.value,
        confidence=decision.confidence,
        decision=decision.decision.value,
        untightened_decision=_untightened(decision, outcome.basis).value,
        acted=decision.act,
    )
    return decision_id


def _untightened(decision: AutonomyDecision, basis: DecisionBasis | None) -> Decision:
    """The decision as it would be without the feedback loop's tightening.

    The feedback loop steps back after clean outcomes of *would-be* automatic merges; judged
    on the tightened decisions it could never see one, and a tightened repository would stay so.
    """
    if basis is None or not basis.inp.tightened:
        return decision.decision
    return decide(replace(basis.inp, tightened=False)).decision


def _payload(kind: ActionKind, outcome: ReviewOutcome) -> dict[str, Any]:
    assert outcome.pr is not None and outcome.decision is not None
    assert outcome.risk is not None and outcome.config is not None
    basis = outcome.basis.to_json() if outcome.basis is not None else None
    match kind:
        case ActionKind.MERGE:
            decision = outcome.decision
            title, message = commit_text(
                outcome.pr, confidence=decision.confidence, tier=decision.tier.value
            )
            return {
                "basis": basis,
                "method": outcome.config.autonomy.merge_method.value,
                "title": title,
                "message": message,
            }
        case ActionKind.ESCALATE:
            return {
                "basis": basis,
                "tier": outcome.risk.tier.value,
                "driving_paths": list(outcome.risk.driving_paths),
            }
        case _:
            assert_never(kind)


async def act_on_review(
    gh: GitHubAPI, outcome: ReviewOutcome, *, acting: Acting, installation_id: int | None = None
) -> ActionRecord:
    """Carry out a published review's decision: record it (unless the pipeline did, in the
    transaction that published the review) and send its queued action now."""
    pr = outcome.pr
    if pr is None or outcome.decision is None:
        return ActionRecord(ActionTaken.NOTHING, f"no decision to act on ({outcome.status})")
    decision_id = outcome.extra.get("decision_id")
    if not isinstance(decision_id, int):
        async with acting.store.db.write() as conn:
            decision_id = await record_decision_in(
                conn,
                outcome,
                store=acting.store,
                outbox=acting.outbox,
                installation_id=installation_id,
            )
    records = await send_pending(gh, pr.repository, pr.number, pr.head_sha, acting=acting)
    if records:
        return records[-1]
    row = await acting.store.get(decision_id) if decision_id is not None else None
    if row is None:
        return ActionRecord(ActionTaken.NOTHING, "nothing to do", decision_id)
    return ActionRecord(ActionTaken(row.action_taken), row.result or "", decision_id)


async def send_pending(
    gh: GitHubAPI, repository: str, number: int, head_sha: str, *, acting: Acting
) -> list[ActionRecord]:
    """Send every action queued for this head that is due (a retried delivery resumes here)."""
    records: list[ActionRecord] = []
    for action in await acting.outbox.for_head(repository, number, head_sha):
        if action.status in {ActionStatus.PENDING, ActionStatus.RUNNING}:
            record = await send(gh, action.id, acting=acting, early=True)
            if record is not None:
                records.append(record)
    return records


async def send(
    gh: GitHubAPI,
    action_id: int,
    *,
    acting: Acting,
    early: bool = False,
    now: datetime | None = None,
) -> ActionRecord | None:
    """Claim one queued action and carry it out; None when it is not due or someone holds it.

    A GitHub or network failure counts as one attempt: the action is queued again with backoff,
    and after ``ACTION_MAX_ATTEMPTS`` it ends ``failed``, its decision says ``error`` and the
    check run says what could not be done. Nothing is raised, so a failed action never makes the
    queue run the (paid) review again.
    """
    action = await acting.outbox.claim(action_id, early=early, now=now)
    if action is None:
        return None
    try:
        taken, result = await _execute(gh, action, acting)
    except (gidgethub.GitHubException, RetryLater, *LOST) as exc:
        code = getattr(exc, "status_code", None)
        error = f"{type(exc).__name__}{f' ({int(code)})' if code else ''}: {exc}"[:2000]
        acting.log.warning(
            "action %s (%s) on %s#%d failed: %s",
            action.id,
            action.kind.value,
            action.repository,
            action.pr_number,
            error,
        )
        left = await acting.outbox.attempt_failed(action, error)
        if left is ActionStatus.FAILED:
            await _give_up(gh, action, error, acting)
            return ActionRecord(ActionTaken.ERROR, error, action.decision_id)
        return ActionRecord(ActionTaken.PENDING, f"will try again: {error}", action.decision_id)
    await acting.outbox.done(action.id, result)
    if action.decision_id is not None:
        await acting.store.update_action(action.decision_id, taken, result)
    if taken is ActionTaken.MERGE_PENDING:
        await _catch_up(acting, action.repository, action.pr_number, action.head_sha)
    acting.log.info(
        "acted on %s#%d at %s: %s (%s)",
        action.repository,
        action.pr_number,
        action.head_sha[:12],
        taken.value,
        result,
    )
    return ActionRecord(taken, result, action.decision_id)


async def _execute(gh: GitHubAPI, action: OutboxAction, acting: Acting) -> tuple[ActionTaken, str]:
    payload = action.payload
    basis = DecisionBasis.from_json(payload["basis"]) if payload.get("basis") else None
    match action.kind:
        case ActionKind.MERGE:
            merged = await request_merge(
                gh,
                repository=action.repository,
                pr_number=action.pr_number,
                head_sha=action.head_sha,
                method=str(payload["method"]),
                title=str(payload["title"]),
                message=str(payload["message"]),
                acting=acting,
                basis=basis,
                installation_id=action.installation_id,
            )
            return merged.action, merged.reason
        case ActionKind.ESCALATE:
            # Escalating labels and pings people: not if they asked the bot to keep off since.
            pr = await _read_pull(gh, action.repository, action.pr_number)
            if pr.state != "open":
                return ActionTaken.CANCELLED, f"the pull request is {pr.state}"
            config = await acting.config(gh, pr)
            cancel = (
                basis.refusal(labels=pr.labels, draft=pr.draft, config=config)
                if basis is not None
                else None
            )
            if cancel is not None:
                return ActionTaken.CANCELLED, cancel
            summary = await escalate(
                gh,
                pr,
                driving_paths=tuple(payload.get("driving_paths") or ()),
                tier=str(payload.get("tier") or ""),
                autonomy=config.autonomy,
                acting=acting,
                head_sha=action.head_sha,
            )
            return ActionTaken.ESCALATED, summary
        case _:
            assert_never(action.kind)


async def _give_up(gh: GitHubAPI, action: OutboxAction, error: str, acting: Acting) -> None:
    """An action whose retries are spent: say so on its decision and on the check run."""
    what = {ActionKind.MERGE: "merge", ActionKind.ESCALATE: "escalate"}[action.kind]
    reason = f"could not {what} after {action.attempts} attempts: {error}"
    if action.decision_id is None:
        return
    await acting.store.update_action(action.decision_id, ActionTaken.ERROR, reason)
    row = await acting.store.get(action.decision_id)
    if row is None or row.check_run_id is None:
        return
    url = f"/repos/{action.repository}/check-runs/{row.check_run_id}"
    try:
        run = await gh.getitem(url)
        output = run.get("output") or {}
        summary = str(output.get("summary") or "")
        note = (
            f"\n\n**Action failed**: {CHECK_NAME} {clean(reason)}. "
            f"An operator can retry it with `python -m app actions retry {action.id}`."
        )
        await gh.patch(
            url,
            data={
                "output": {
                    "title": str(output.get("title") or "Review"),
                    "summary": truncate(summary, 60000) + note,
                }
            },
        )
    except (gidgethub.GitHubException, *LOST):
        acting.log.warning("could not note the failed action %s on its check run", action.id)


async def _catch_up(acting: Acting, repository: str, number: int, head_sha: str) -> None:
    """Settle a just-written ``merge_pending`` row if its merge ended in the meantime.

    A check_suite or status event may finish the intent between the attempt and the update of
    the decision row; its update found no row to settle then, so settle it now.
    """
    intent = await acting.store.intent_for(repository, number, head_sha)
    if intent is not None and intent.status in _FINAL_ACTIONS:
        await acting.store.settle_pending_decision(
            repository, number, head_sha, _FINAL_ACTIONS[intent.status], intent.reason
        )


# ---------------------------------------------------------------------------------- approve button


def has_write_access(permission: Mapping[str, Any]) -> bool:
    """Whether ``GET …/collaborators/{user}/permission`` grants write (admin, maintain, write)."""
    held = permission_of(permission)
    return held is not None and held.satisfies(Permission.WRITE)


async def approve_merge(
    gh: GitHubAPI,
    *,
    repository: str,
    pr_number: int,
    reviewed_sha: str,
    check_run_id: int,
    approver: str,
    autonomy: AutonomyConfig,
    acting: Acting,
) -> ActionRecord:
    """The "Approve merge" button: merge the reviewed commit for a person with write access.

    Refused, with one comment per person and head, when the repository does not let the bot act,
    the pull request carries the no-automation label, the person is its author, they lack write
    access, or the head moved since the review. Otherwise the merge follows the same rules as an
    automatic one (pinned to ``reviewed_sha``, green checks, or an intent until they are).
    """
    pr = await _read_pull(gh, repository, pr_number)
    refusal = await _why_not_approve(gh, pr, approver, reviewed_sha, autonomy)
    prior = await acting.store.latest_for_check_run(repository, check_run_id)
    fields = (
        DecisionFields.copy_of(prior)
        if prior is not None
        else DecisionFields(
            None, None, None, Decision.ESCALATE.value, "[]", autonomy.mode.value, False
        )
    )
    if refusal is not None:
        await post_once(
            gh,
            repository,
            pr_number,
            reviewed_sha,
            f"approval_refused:{approver.casefold()}",
            f"**{CHECK_NAME}** did not act on the *Approve merge* button: {refusal}.",
            acting=acting,
        )
        action, result = ActionTaken.APPROVAL_REFUSED, refusal
    else:
        title, message = commit_text(
            pr, confidence=fields.confidence, tier=fields.tier, approved_by=approver
        )
        merged = await request_merge(
            gh,
            repository=pr.repository,
            pr_number=pr.number,
            head_sha=reviewed_sha,
            method=autonomy.merge_method.value,
            title=title,
            message=message,
            acting=acting,
            basis=None,
            requested_by=approver,
        )
        action, result = merged.action, merged.reason
    decision_id = await record_human_action(
        acting,
        repository=repository,
        pr_number=pr_number,
        head_sha=reviewed_sha,
        fields=fields,
        action=action,
        result=result,
        actor=approver,
        check_run_id=check_run_id,
    )
    acting.log.info("approve_merge by %s on %s#%d: %s", approver, repository, pr_number, result)
    return ActionRecord(action, result, decision_id)


async def record_human_action(
    acting: Acting,
    *,
    repository: str,
    pr_number: int,
    head_sha: str,
    fields: DecisionFields,
    action: ActionTaken,
    result: str,
    actor: str,
    check_run_id: int | None = None,
) -> int:
    """Store what a person had the bot do (a button, a command), with their login as ``actor``,
    so the feedback loop tells the bot's decisions from people's."""
    decision_id = await acting.store.record(
        repository=repository,
        pr_number=pr_number,
        head_sha=head_sha,
        fields=fields,
        action_taken=action,
        result=result,
        check_run_id=check_run_id,
        actor=actor,
    )
    if action is ActionTaken.MERGE_PENDING:
        await _catch_up(acting, repository, pr_number, head_sha)
    return decision_id


async def _why_not_approve(
    gh: GitHubAPI, pr: PullRequest, approver: str, reviewed_sha: str, autonomy: AutonomyConfig
) -> str | None:
    """Why the button press cannot be honoured; the permission is asked for only if needed."""
    refusal = _approval_refusal(pr, approver, reviewed_sha, autonomy)
    if refusal is not None:
        return refusal
    held = await fetch_permission(gh, pr.repository, approver)
    if held is None or not held.satisfies(Permission.WRITE):
        return f"approving a merge needs write access to the repository, which `{approver}` lacks"
    return None


def _approval_refusal(
    pr: PullRequest, approver: str, reviewed_sha: str, autonomy: AutonomyConfig
) -> str | None:
    """Why the button press cannot be honoured, judged from data at hand (no requests)."""
    if autonomy.mode is not AutonomyMode.ACT:
        return (
            f"`autonomy.mode` is `{autonomy.mode.value}` in `.github/aigateway.yml`, so "
            f"{CHECK_NAME} merges nothing; merge it yourself"
        )
    wanted = autonomy.no_automation_label.casefold()
    if any(label.casefold() == wanted for label in pr.labels):
        return f"the pull request carries the `{autonomy.no_automation_label}` label"
    if approver.casefold() == pr.author.casefold():
        return "the author of a pull request cannot approve its escalated merge"
    if pr.head_sha != reviewed_sha:
        return (
            f"the head moved from `{reviewed_sha[:12]}` to `{pr.head_sha[:12]}` since the review; "
            "the new commits are reviewed first"
        )
    return None


# ---------------------------------------------------------------------------------- agent branches


@dataclass(frozen=True, slots=True)
class AgentPush:
    """The parts of a ``push`` event that opening a pull request needs."""

    repository: str
    branch: str
    default_branch: str
    after: str
    commits: tuple[tuple[str, str], ...]  # (sha, message), oldest first
    head_message: str

    @property
    def owner(self) -> str:
        return self.repository.partition("/")[0]


def is_agent_branch(branch: str, globs: Sequence[str]) -> bool:
    """Whether ``branch`` matches one of ``autonomy.agent_branches`` (gitignore-style globs)."""
    return bool(globs) and GitIgnoreSpec.from_lines(globs).match_file(branch)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0].strip() if message.strip() else ""


def agent_pr_text(push: AgentPush) -> tuple[str, str]:
    """Title (the head commit's first line) and body (the pushed commits) of the new PR."""
    title = truncate(_first_line(push.head_message) or f"Changes from {push.branch}", 250, note="…")
    lines = [
        f"Opened by **{CHECK_NAME}** for a push to the agent branch `{push.branch}`.",
        "",
        "Commits:",
    ]
    shown = push.commits[-MAX_LISTED_COMMITS:]
    if len(push.commits) > len(shown):
        lines.append(f"- … {len(push.commits) - len(shown)} earlier commit(s)")
    lines += [f"- `{sha[:7]}` {clean(_first_line(message))}" for sha, message in shown]
    lines += [
        "",
        f"{CHECK_NAME} reviews it next; whether it is merged follows the repository's autonomy "
        "settings.",
    ]
    return title, truncate("\n".join(lines), 65000)


async def open_agent_pr(
    gh: GitHubAPI, push: AgentPush, *, autonomy: AutonomyConfig, acting: Acting
) -> ActionRecord:
    """Open a pull request for a push to an agent branch that has none (``act`` mode only)."""
    match autonomy.mode:
        case AutonomyMode.OFF:
            return ActionRecord(ActionTaken.NOTHING, "autonomy is off")
        case AutonomyMode.SHADOW:
            acting.log.info(
                "would have opened a PR for %s:%s (shadow mode)", push.repository, push.branch
            )
            return ActionRecord(ActionTaken.NOTHING, "would have opened a PR (shadow mode)")
        case AutonomyMode.ACT:
            pass
        case _:
            assert_never(autonomy.mode)
    query = f"head={push.owner}:{push.branch}&state=open&per_page=1"
    existing = await gh.getitem(f"/repos/{push.repository}/pulls?{query}")
    if existing:
        number = int(existing[0]["number"])
        return ActionRecord(ActionTaken.NOTHING, f"#{number} is open for this branch already")
    title, body = agent_pr_text(push)

    async def find() -> Any | None:
        found = await gh.getitem(f"/repos/{push.repository}/pulls?{query}")
        return found[0] if found else None

    try:
        created = await create(
            gh,
            f"/repos/{push.repository}/pulls",
            {"title": title, "head": push.branch, "base": push.default_branch, "body": body},
            find=find,
        )
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) != 422:
            raise
        # Another delivery opened it first, or the branch has nothing the base lacks.
        return ActionRecord(ActionTaken.NOTHING, f"GitHub declined: {_message(exc)}")
    number = int(created["number"])
    decision_id = await acting.store.record(
        repository=push.repository,
        pr_number=number,
        head_sha=push.after,
        fields=DecisionFields(
            None, None, None, Decision.AUTO_PR.value, "[]", AutonomyMode.ACT.value, True
        ),
        action_taken=ActionTaken.OPENED_PR,
        result=f"opened #{number} for {push.branch}",
    )
    acting.log.info("opened %s#%d for agent branch %s", push.repository, number, push.branch)
    return ActionRecord(ActionTaken.OPENED_PR, f"opened #{number}", decision_id)
