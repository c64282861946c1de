"""``review``, ``pause`` and ``resume``: a review on request, and stopping the automatic ones.

``review`` runs the same pipeline and acting stage as a push does, as a full review (not only
the new commits) and on drafts too: a person asked for it explicitly. ``pause`` stops the reviews
pushes would start (``handlers.pull_request`` asks ``CommandState.is_paused``); ``review`` still
works while paused, because a person asking is not automation.
"""

from __future__ import annotations

from app.commands.invocation import Invocation, Outcome
from app.commands.state import CommandState
from app.review.store import PUBLISHED

__all__ = ["pause", "resume", "review"]


async def review(inv: Invocation) -> Outcome:
    # Imported here: app.handlers imports the commands, so the commands import it late.
    from app.handlers.pull_request import review_and_act

    outcome = await review_and_act(
        inv.gh, inv.pr, ctx=inv.ctx, incremental=False, include_drafts=True
    )
    sha = f"`{inv.pr.head_sha[:12]}`"
    if outcome is None:
        reason = inv.ctx.services.gateway_error or "the model gateway is not configured"
        return Outcome(False, f"No review could run for {sha}: {reason}.")
    if outcome.status != PUBLISHED:
        why = f": {outcome.reason}" if outcome.reason else ""
        return Outcome(False, f"The review of {sha} was {outcome.status}{why}.")
    decision = outcome.decision
    if decision is None:
        return Outcome(True, f"Reviewed {sha}; see the check run for the findings.")
    return Outcome(
        True,
        f"Reviewed {sha}: risk `{decision.tier.value}`, confidence {decision.confidence:.2f}; "
        f"{decision.explain()}. The findings are in the review and the check run.",
    )


async def pause(inv: Invocation) -> Outcome:
    state = CommandState(inv.ctx.services.db)
    if await state.pause(inv.pr.repository, inv.pr.number, by=inv.requester):
        return Outcome(
            True,
            "Automatic reviews of this pull request are paused: pushes are not reviewed until "
            "`resume` is asked for. A `review` asked for by hand still runs.",
        )
    return Outcome(True, "Automatic reviews of this pull request were paused already.")


async def resume(inv: Invocation) -> Outcome:
    state = CommandState(inv.ctx.services.db)
    if await state.resume(inv.pr.repository, inv.pr.number):
        return Outcome(
            True,
            "Automatic reviews of this pull request are back on: the next push is reviewed "
            "(ask for `review` to review the current head now).",
        )
    return Outcome(True, "Automatic reviews of this pull request were not paused.")
