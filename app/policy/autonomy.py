"""How much autonomy a reviewed change gets: the matrix, then guards that can only lower it.

The matrix (DESIGN.md) maps the pull request's risk tier and the consensus confidence to a
decision; columns start at 0.60, 0.80 and 0.95, each boundary belonging to the higher column.
Decisions are ordered by how much they leave to a human: ``auto_merge`` < ``auto_pr`` <
``escalate`` ("lower" autonomy means more restrictive).

Guards, each recorded in the result whenever it applies (even when the outcome was already as
low), and what each does:

=========================  ==================================================================
guard                      effect
=========================  ==================================================================
``request_changes``        **escalate** — a reviewer asked for changes: a human must look.
``blocker_finding``        **escalate** — a blocker is a reviewer saying "do not merge".
``review_incomplete``      a reviewer failed or timed out, or part of the diff went unreviewed,
                           or no verdict came back: we could not check everything. **At most
                           auto_pr** for low/medium risk (a human merges, and reads it then);
                           **escalate** for high/critical, where the unchecked part needs a
                           named human, not whoever clicks merge.
``unreviewed_files``       a changed file the models could not see (binary, too large, no patch,
                           ignored, over a cap) and the config does not waive. **At most
                           auto_pr**: nothing unseen is merged by the bot; a human merges it and
                           reads it then (a critical unseen path makes the PR critical anyway).
``carried``                what earlier reviews of the pull request still say (``policy/carry``):
                           a carried blocker, request for changes or escalation **escalates**; a
                           carried reviewer failure acts like ``review_incomplete``; and the
                           matrix cell is taken at the lowest confidence since the last full
                           review.
``tripwire``               **escalate** — the deterministic tripwire (``policy/tripwire``) found
                           hidden Unicode, a look-alike identifier or text addressed to the
                           reviewer: the models' confidence may have been steered.
``reviewers_disagree``     **step down** one level — the models' verdicts differ, so the
                           confidence behind the matrix cell is weaker than the number says.
``tightened``              **step down** one level — the feedback loop saw this repository's
                           automated changes go wrong.
``fork``                   **at most auto_pr** (unless ``autonomy.allow_forks``) — the author
                           is outside the repository; merging is a maintainer's call.
``draft``                  **at most auto_pr** — the author said it is not ready.
``no_automation_label``    **hold**: at most auto_pr *and* no action — a human asked the bot to
                           keep its hands off this pull request (the review is still posted).
``shadow_mode``            **no action** — decide as usual, report "would have …".
``autonomy_off``           **no action** — nothing is done beyond the review.
=========================  ==================================================================

Step-downs apply to the matrix cell first (they say how far to trust the assessment), then the
caps (what the situation allows); caps are minimums, so their order does not matter. Applying a
step-down after a cap would punish the same pull request twice for one reason — e.g. a draft
whose reviewers differ would be escalated rather than left for its author. Every guard is a
monotone step towards ``escalate``, so the final decision is never above the matrix: nothing a
model writes (a summary, a finding, a comment in the diff) is an input here except the verdicts,
blocker flags and confidence, and none of those can raise a decision.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, assert_never

from app.policy.carry import Carried, Unseen
from app.policy.risk import Tier
from app.repo_config import AutonomyConfig, AutonomyMode
from app.review.model import Verdict

__all__ = [
    "AppliedGuard",
    "AutonomyDecision",
    "Decision",
    "DecisionInput",
    "Effect",
    "Guard",
    "decide",
    "lower",
    "matrix",
    "step_down",
]


class Decision(StrEnum):
    """What to do with a reviewed change, from most to least autonomous."""

    AUTO_MERGE = "auto_merge"
    AUTO_PR = "auto_pr"
    ESCALATE = "escalate"

    @property
    def restrictiveness(self) -> int:
        """0 for auto_merge up to 2 for escalate: higher leaves more to a human."""
        return _RESTRICTIVENESS[self]


_RESTRICTIVENESS: Final[Mapping[Decision, int]] = {
    Decision.AUTO_MERGE: 0,
    Decision.AUTO_PR: 1,
    Decision.ESCALATE: 2,
}


def lower(a: Decision, b: Decision) -> Decision:
    """The more restrictive of two decisions (the one that leaves more to a human)."""
    return a if a.restrictiveness >= b.restrictiveness else b


def step_down(decision: Decision) -> Decision:
    """One level less autonomy; ``escalate`` is the floor."""
    match decision:
        case Decision.AUTO_MERGE:
            return Decision.AUTO_PR
        case Decision.AUTO_PR | Decision.ESCALATE:
            return Decision.ESCALATE
        case _:
            assert_never(decision)


_LOW_ROW: Final = (Decision.AUTO_PR, Decision.AUTO_MERGE, Decision.AUTO_MERGE, Decision.AUTO_MERGE)
_MEDIUM_ROW: Final = (Decision.ESCALATE, Decision.AUTO_PR, Decision.AUTO_MERGE, Decision.AUTO_MERGE)
_HIGH_ROW: Final = (Decision.ESCALATE, Decision.ESCALATE, Decision.AUTO_PR, Decision.AUTO_MERGE)
_CRITICAL_ROW: Final = (Decision.ESCALATE,) * 4


def _column(confidence: float) -> int:
    if math.isnan(confidence) or not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be within [0, 1], not {confidence!r}")
    if confidence >= 0.95:
        return 3
    if confidence >= 0.80:
        return 2
    if confidence >= 0.60:
        return 1
    return 0


def matrix(tier: Tier, confidence: float) -> Decision:
    """The DESIGN.md autonomy matrix: a pure function of risk tier and consensus confidence.

    Raises ``ValueError`` for a confidence outside [0, 1] or NaN: a number we cannot place is a
    bug upstream, and silently clamping it could pick a more autonomous column.
    """
    column = _column(confidence)
    match tier:
        case Tier.LOW:
            return _LOW_ROW[column]
        case Tier.MEDIUM:
            return _MEDIUM_ROW[column]
        case Tier.HIGH:
            return _HIGH_ROW[column]
        case Tier.CRITICAL:
            return _CRITICAL_ROW[column]
        case _:
            assert_never(tier)


class Guard(StrEnum):
    REQUEST_CHANGES = "request_changes"
    BLOCKER_FINDING = "blocker_finding"
    REVIEW_INCOMPLETE = "review_incomplete"
    UNREVIEWED_FILES = "unreviewed_files"
    CARRIED = "carried"
    TRIPWIRE = "tripwire"
    REVIEWERS_DISAGREE = "reviewers_disagree"
    TIGHTENED = "tightened"
    FORK = "fork"
    DRAFT = "draft"
    NO_AUTOMATION_LABEL = "no_automation_label"
    SHADOW_MODE = "shadow_mode"
    AUTONOMY_OFF = "autonomy_off"


class Effect(StrEnum):
    """What a guard does to the decision."""

    ESCALATE = "escalate"
    AT_MOST_AUTO_PR = "at_most_auto_pr"
    STEP_DOWN = "step_down"
    HOLD = "hold"  # at most auto_pr, and take no action
    NO_ACTION = "no_action"  # decision unchanged, but nothing is done


@dataclass(frozen=True, slots=True)
class AppliedGuard:
    guard: Guard
    effect: Effect
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionInput:
    """Everything the decision depends on, fetched and computed before deciding.

    The safety-relevant fields have no defaults, so a caller cannot forget one and silently get
    the permissive answer. ``verdicts`` holds the reviewers that returned a valid review; the ones
    that failed or timed out are in ``failed_reviewers``. ``review_complete`` is false when any
    slice of the diff went unreviewed. ``unseen`` lists every changed file the models did not see
    (waived ones included, marked), ``carried`` what earlier reviews of the pull request still
    say, and ``tripwire`` each hit of the deterministic tripwire, described.
    """

    tier: Tier
    confidence: float
    verdicts: Mapping[str, Verdict] = field(hash=False)
    any_blocker: bool
    review_complete: bool
    failed_reviewers: frozenset[str]
    is_fork: bool
    is_draft: bool
    labels: frozenset[str]
    unseen: tuple[Unseen, ...]
    carried: Carried | None
    tripwire: tuple[str, ...]
    autonomy: AutonomyConfig = field(default_factory=AutonomyConfig)
    tightened: bool = False

    def __post_init__(self) -> None:
        _column(self.confidence)  # reject NaN and out-of-range values at construction
        if self.carried is not None:
            _column(self.carried.confidence)

    @property
    def effective_confidence(self) -> float:
        """The confidence the matrix is read at: the lowest since the last full review."""
        if self.carried is None:
            return self.confidence
        return min(self.confidence, self.carried.confidence)


@dataclass(frozen=True, slots=True)
class AutonomyDecision:
    """The matrix cell, the final decision after guards, and whether to carry it out."""

    tier: Tier
    confidence: float
    matrix_decision: Decision
    decision: Decision
    act: bool
    mode: AutonomyMode
    guards: tuple[AppliedGuard, ...]

    @property
    def should_merge(self) -> bool:
        return self.act and self.decision is Decision.AUTO_MERGE

    @property
    def should_escalate(self) -> bool:
        return self.act and self.decision is Decision.ESCALATE

    def applied(self, guard: Guard) -> bool:
        return any(applied.guard is guard for applied in self.guards)

    def explain(self) -> str:
        """One line for the check run, e.g. "would have merged (shadow mode)"."""
        if self.act:
            text = _PRESENT[self.decision]
        else:
            text = "would have " + _PAST[self.decision]
            if self.applied(Guard.AUTONOMY_OFF):
                text += " (autonomy off)"
            elif self.applied(Guard.NO_AUTOMATION_LABEL):
                text += " (no-automation label)"
            elif self.applied(Guard.SHADOW_MODE):
                text += " (shadow mode)"
        if self.decision is not self.matrix_decision:
            lowering = [
                applied.guard.value.replace("_", " ")
                for applied in self.guards
                if applied.effect not in {Effect.NO_ACTION}
            ]
            text += f"; lowered from {self.matrix_decision.value} by " + ", ".join(lowering)
        return text


_PRESENT: Final[Mapping[Decision, str]] = {
    Decision.AUTO_MERGE: "merge",
    Decision.AUTO_PR: "leave it for a human to merge",
    Decision.ESCALATE: "escalate to a human",
}
_PAST: Final[Mapping[Decision, str]] = {
    Decision.AUTO_MERGE: "merged",
    Decision.AUTO_PR: "left it for a human to merge",
    Decision.ESCALATE: "escalated to a human",
}


def _guards(inp: DecisionInput) -> Iterator[AppliedGuard]:
    """Every guard that applies to ``inp``, in the order they are listed in the module docs."""
    asked = sorted(name for name, v in inp.verdicts.items() if v is Verdict.REQUEST_CHANGES)
    if asked:
        yield AppliedGuard(
            Guard.REQUEST_CHANGES, Effect.ESCALATE, f"changes requested by {', '.join(asked)}"
        )
    if inp.any_blocker:
        yield AppliedGuard(Guard.BLOCKER_FINDING, Effect.ESCALATE, "a blocker finding was raised")

    problems: list[str] = []
    if inp.failed_reviewers:
        problems.append(f"{', '.join(sorted(inp.failed_reviewers))} failed or timed out")
    if not inp.review_complete:
        problems.append("part of the diff was not reviewed")
    if not inp.verdicts:
        problems.append("no reviewer returned a verdict")
    if problems:
        effect = Effect.ESCALATE if inp.tier >= Tier.HIGH else Effect.AT_MOST_AUTO_PR
        yield AppliedGuard(Guard.REVIEW_INCOMPLETE, effect, "; ".join(problems))

    unseen = [u for u in inp.unseen if not u.waived]
    if unseen:
        # A critical unseen file needs no escalation here: it makes the PR critical already.
        named = ", ".join(f"{u.path} ({u.reason})" for u in unseen[:3])
        more = f" and {len(unseen) - 3} more" if len(unseen) > 3 else ""
        yield AppliedGuard(
            Guard.UNREVIEWED_FILES,
            Effect.AT_MOST_AUTO_PR,
            f"{len(unseen)} changed file(s) were not shown to the models: {named}{more}",
        )

    carried = inp.carried
    if carried is not None:
        if carried.blockers or carried.request_changes or carried.escalated:
            yield AppliedGuard(Guard.CARRIED, Effect.ESCALATE, carried.describe())
        elif carried.failed:
            effect = Effect.ESCALATE if inp.tier >= Tier.HIGH else Effect.AT_MOST_AUTO_PR
            yield AppliedGuard(Guard.CARRIED, effect, carried.describe())

    if inp.tripwire:
        # Every hit (up to 20) is in the reason, so the stored decision says what tripped.
        shown = "; ".join(inp.tripwire[:20])
        more = f" and {len(inp.tripwire) - 20} more" if len(inp.tripwire) > 20 else ""
        yield AppliedGuard(
            Guard.TRIPWIRE,
            Effect.ESCALATE,
            f"the tripwire found text aimed at the reviewer: {shown}{more}",
        )

    if len(set(inp.verdicts.values())) > 1:
        said = ", ".join(f"{name} {inp.verdicts[name].value}" for name in sorted(inp.verdicts))
        yield AppliedGuard(
            Guard.REVIEWERS_DISAGREE, Effect.STEP_DOWN, f"reviewers disagree ({said})"
        )
    if inp.tightened:
        yield AppliedGuard(
            Guard.TIGHTENED,
            Effect.STEP_DOWN,
            "the feedback loop tightened this repository after automated changes went wrong",
        )
    if inp.is_fork and not inp.autonomy.allow_forks:
        yield AppliedGuard(Guard.FORK, Effect.AT_MOST_AUTO_PR, "the pull request comes from a fork")
    if inp.is_draft:
        yield AppliedGuard(Guard.DRAFT, Effect.AT_MOST_AUTO_PR, "the pull request is a draft")
    wanted = inp.autonomy.no_automation_label.casefold()
    if any(label.casefold() == wanted for label in inp.labels):
        yield AppliedGuard(
            Guard.NO_AUTOMATION_LABEL,
            Effect.HOLD,
            f"the pull request carries the {inp.autonomy.no_automation_label!r} label",
        )

    match inp.autonomy.mode:
        case AutonomyMode.ACT:
            pass
        case AutonomyMode.SHADOW:
            yield AppliedGuard(
                Guard.SHADOW_MODE, Effect.NO_ACTION, "autonomy.mode is shadow: report only"
            )
        case AutonomyMode.OFF:
            yield AppliedGuard(Guard.AUTONOMY_OFF, Effect.NO_ACTION, "autonomy.mode is off")
        case _:
            assert_never(inp.autonomy.mode)


def _apply(effect: Effect, decision: Decision) -> Decision:
    match effect:
        case Effect.ESCALATE:
            return Decision.ESCALATE
        case Effect.AT_MOST_AUTO_PR | Effect.HOLD:
            return lower(decision, Decision.AUTO_PR)
        case Effect.STEP_DOWN:
            return step_down(decision)
        case Effect.NO_ACTION:
            return decision
        case _:
            assert_never(effect)


def _stops_action(effect: Effect) -> bool:
    match effect:
        case Effect.HOLD | Effect.NO_ACTION:
            return True
        case Effect.ESCALATE | Effect.AT_MOST_AUTO_PR | Effect.STEP_DOWN:
            return False
        case _:
            assert_never(effect)


def decide(inp: DecisionInput) -> AutonomyDecision:
    """The matrix cell for ``inp``, lowered by every guard that applies."""
    cell = matrix(inp.tier, inp.effective_confidence)
    guards = tuple(_guards(inp))
    decision = cell
    # Step-downs first (how far to trust the cell), then caps (what the situation allows).
    for applied in sorted(guards, key=lambda g: g.effect is not Effect.STEP_DOWN):
        decision = _apply(applied.effect, decision)
    return AutonomyDecision(
        tier=inp.tier,
        confidence=inp.effective_confidence,
        matrix_decision=cell,
        decision=lower(decision, cell),  # belt and braces: never above the matrix
        act=not any(_stops_action(applied.effect) for applied in guards),
        mode=inp.autonomy.mode,
        guards=guards,
    )
