"""What a pull request's earlier reviews still say about its newest head.

A push is reviewed incrementally: the models see only what changed since the last reviewed head.
Deciding from that delta alone would let a trivial follow-up commit wash away a blocker, a
request for changes or an escalation raised on the commit before it. So every published review
stores its own facts (``ReviewFacts``), and the decision for a head folds the facts of every review
since the last *boundary*:

* a **full review** (the whole diff was shown again) is a boundary that counts: its facts are
  the start of the window;
* a **human clearance** (the "Approve merge" button, or an approval by a code owner) is a
  boundary that does not: a person vouched for everything up to that head, so the window starts
  after it.

The fold is deliberately pessimistic: the lowest confidence, every blocker, every request for
changes, every reviewer failure, every file the models could not see that is still in the pull
request, and any escalation. Findings are not matched across heads ("is this the same blocker?"):
an unresolved blocker stays until a human or a full re-review clears it, which is the only
resolution the bot can verify.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.policy.risk import Tier

__all__ = ["Carried", "ReviewFacts", "Unseen", "fold"]


@dataclass(frozen=True, slots=True)
class Unseen:
    """A changed file the models did not see, and why; ``waived`` when the config allows it."""

    path: str
    reason: str
    tier: Tier
    waived: bool = False


@dataclass(frozen=True, slots=True)
class ReviewFacts:
    """What one published review found, as stored with it (``reviews.facts``)."""

    head_sha: str
    confidence: float
    blockers: int
    request_changes: tuple[str, ...]
    failed: tuple[str, ...]
    escalated: bool
    unseen: tuple[Unseen, ...] = ()
    full: bool = True
    cleared_by: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "head_sha": self.head_sha,
                "confidence": self.confidence,
                "blockers": self.blockers,
                "request_changes": list(self.request_changes),
                "failed": list(self.failed),
                "escalated": self.escalated,
                "unseen": [
                    {"path": u.path, "reason": u.reason, "tier": u.tier.value, "waived": u.waived}
                    for u in self.unseen
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, *, full: bool, cleared_by: str | None) -> ReviewFacts:
        data: dict[str, Any] = json.loads(text)
        return cls(
            head_sha=str(data["head_sha"]),
            confidence=float(data["confidence"]),
            blockers=int(data["blockers"]),
            request_changes=tuple(str(x) for x in data.get("request_changes", ())),
            failed=tuple(str(x) for x in data.get("failed", ())),
            escalated=bool(data.get("escalated", False)),
            unseen=tuple(
                Unseen(str(u["path"]), str(u["reason"]), Tier(u["tier"]), bool(u["waived"]))
                for u in data.get("unseen", ())
            ),
            full=full,
            cleared_by=cleared_by,
        )


@dataclass(frozen=True, slots=True)
class Carried:
    """The facts of earlier heads that still bear on the decision for the newest one."""

    since_sha: str
    confidence: float
    blockers: int
    request_changes: tuple[str, ...]
    failed: tuple[str, ...]
    escalated: bool
    unseen: tuple[Unseen, ...] = field(default=())

    @property
    def lowers(self) -> bool:
        """Whether anything carried can lower a decision (an empty carry is not shown)."""
        return bool(
            self.blockers
            or self.request_changes
            or self.failed
            or self.escalated
            or any(not u.waived for u in self.unseen)
        )

    def describe(self) -> str:
        """One line for the review body, e.g. "carried from abc1234: 1 blocker"."""
        parts: list[str] = []
        if self.blockers:
            parts.append(f"{self.blockers} blocker{'s' if self.blockers != 1 else ''}")
        if self.request_changes:
            parts.append(f"changes requested by {', '.join(self.request_changes)}")
        if self.failed:
            parts.append(f"{', '.join(self.failed)} failed")
        if self.escalated:
            parts.append("an escalation")
        unseen = [u for u in self.unseen if not u.waived]
        if unseen:
            parts.append(f"{len(unseen)} file{'s' if len(unseen) != 1 else ''} not reviewed")
        parts.append(f"lowest confidence {self.confidence:.2f}")
        return f"carried from {self.since_sha[:7]}: " + ", ".join(parts)


def window(history: Sequence[ReviewFacts]) -> list[ReviewFacts]:
    """The reviews, newest first in ``history``, that still count: back to the last boundary."""
    kept: list[ReviewFacts] = []
    for facts in history:
        if facts.cleared_by is not None:
            break
        kept.append(facts)
        if facts.full:
            break
    return kept


def fold(history: Sequence[ReviewFacts], *, still_changed: Iterable[str]) -> Carried | None:
    """What earlier reviews (newest first) carry into the next decision; None when nothing does.

    ``still_changed`` holds the paths the pull request changes now: a file that was unseen on an
    earlier head but is no longer part of the change carries nothing.
    """
    kept = window(history)
    if not kept:
        return None
    paths = set(still_changed)
    unseen: dict[str, Unseen] = {}
    for facts in reversed(kept):
        for u in facts.unseen:
            if u.path in paths:
                unseen[u.path] = u
    return Carried(
        since_sha=kept[-1].head_sha,
        confidence=min(f.confidence for f in kept),
        blockers=sum(f.blockers for f in kept),
        request_changes=tuple(sorted({n for f in kept for n in f.request_changes})),
        failed=tuple(sorted({n for f in kept for n in f.failed})),
        escalated=any(f.escalated for f in kept),
        unseen=tuple(unseen.values()),
    )
