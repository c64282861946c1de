"""``report`` and ``autonomy reset``: the feedback loop, read and reset from a comment.

``report`` shows the same numbers as ``python -m app report`` for this repository, with whether
its autonomy is stepped down now. ``autonomy reset`` lets an admin lift the tightening at once
(after fixing what made changes go wrong, say); it needs admin permission because it loosens
what the bot may do, and outcomes known before the reset no longer count.
"""

from __future__ import annotations

from app.commands.invocation import Invocation, Outcome
from app.feedback.registry import FeedbackStore
from app.feedback.report import build_report, markdown
from app.feedback.tightening import Rules
from app.store.types import utcnow

__all__ = ["autonomy", "report"]


async def report(inv: Invocation) -> Outcome:
    store = FeedbackStore(inv.ctx.services.db)
    repository = inv.pr.repository
    text = markdown(build_report(repository, await store.records(repository), at=utcnow()))
    tightening = await store.tightening(repository, Rules.of(inv.config.feedback))
    if tightening.active:
        text += "\n\n" + tightening.reason
    return Outcome(True, text)


async def autonomy(inv: Invocation) -> Outcome:
    if inv.command.args.strip().casefold() != "reset":
        return Outcome(
            False,
            "Ask for `autonomy reset` to lift the feedback loop's tightening of this "
            "repository (admin permission).",
        )
    store = FeedbackStore(inv.ctx.services.db)
    rules = Rules.of(inv.config.feedback)
    before = await store.tightening(inv.pr.repository, rules)
    await store.reset(inv.pr.repository, by=inv.requester)
    if not before.active:
        return Outcome(
            True,
            "Autonomy was not stepped down for this repository; the feedback loop counts "
            "afresh from now.",
        )
    return Outcome(
        True,
        "Autonomy is back to the matrix for new decisions in this repository; the feedback "
        "loop counts afresh from now.",
    )
