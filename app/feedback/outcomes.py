"""A registered change and its effects, and the outcome they add up to at a given moment.

Outcomes are computed, not stored: a change is ``clean`` once its observation window has passed
with no effect in it, or has the worst effect seen in the window as soon as one is seen. So the
answer only depends on the rows and the clock, and a test moves the clock rather than waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.feedback.signals import Effect

__all__ = ["ChangeRecord", "EffectRecord", "Outcome", "Settled", "settle"]


class Outcome(StrEnum):
    CLEAN = "clean"
    REVERTED = Effect.REVERTED.value
    BROKE_CI = Effect.BROKE_CI.value
    FOLLOW_UP_FIX = Effect.FOLLOW_UP_FIX.value
    HUMAN_OVERRIDE = Effect.HUMAN_OVERRIDE.value
    PENDING = "pending"  # merged, inside its observation window, nothing seen yet
    OPEN = "open"  # not merged yet
    UNMERGED = "unmerged"  # closed without merging, nothing seen

    @property
    def bad(self) -> bool:
        return self.value in _BAD

    @property
    def settled(self) -> bool:
        """Whether this outcome counts: clean, or an effect."""
        return self is Outcome.CLEAN or self.bad


_BAD = frozenset(effect.value for effect in Effect)


@dataclass(frozen=True, slots=True)
class EffectRecord:
    kind: Effect
    evidence: str
    detail: str
    observed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeRecord:
    """One pull request as the bot last decided it, with what the merge added."""

    id: int
    repository: str
    pr_number: int
    head_sha: str
    tier: str | None
    confidence: float | None
    decision: str
    acted: bool
    decided_at: datetime
    state: str
    merged_at: datetime | None = None
    merge_sha: str | None = None
    merged_by_bot: bool | None = None
    window_ends_at: datetime | None = None
    effects: tuple[EffectRecord, ...] = ()
    spend_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Settled:
    """A change's outcome now, and since when it is known (None while it is not)."""

    outcome: Outcome
    since: datetime | None
    worst: EffectRecord | None = None


def settle(change: ChangeRecord, now: datetime) -> Settled:
    """The outcome of ``change`` at ``now``.

    Effects count while the window is open (a change never merged has no window: every effect
    counts). The worst effect decides the outcome; it is known from the first effect's time.
    """
    counted = _in_window(change.effects, change.window_ends_at)
    if counted:
        worst = max(counted, key=lambda e: (e.kind.severity, -e.observed_at.timestamp()))
        first = min(e.observed_at for e in counted)
        return Settled(Outcome(worst.kind.value), first, worst)
    if change.state == "merged":
        if change.window_ends_at is not None and now >= change.window_ends_at:
            return Settled(Outcome.CLEAN, change.window_ends_at)
        return Settled(Outcome.PENDING, None)
    if change.state == "closed":
        return Settled(Outcome.UNMERGED, None)
    return Settled(Outcome.OPEN, None)


def _in_window(
    effects: Sequence[EffectRecord], window_ends_at: datetime | None
) -> list[EffectRecord]:
    if window_ends_at is None:
        return list(effects)
    return [e for e in effects if e.observed_at < window_ends_at]
