"""Whether a repository's autonomy steps down, from what its would-be automatic merges led to.

A pure function of the settled outcomes, in the order they became known, and of the admins'
resets. It walks them as a small state machine:

- **loose**: each outcome joins the last ``lookback`` ones; when more than ``max_bad_rate`` of
  them are bad, the repository is tightened from that moment. Fewer than ``lookback`` outcomes
  count as they are (one revert among the first three is 33 %): the loop errs on the safe side.
- **tightened**: every new decision steps down one level (``Guard.TIGHTENED``). Each clean
  outcome adds to a streak, a bad one ends it; ``clean_streak`` clean outcomes in a row lift the
  tightening and the count starts afresh.
- an admin's ``autonomy reset`` lifts it at once, and also starts the count afresh, so the
  outcomes that tightened it do not tighten it again.

"Would-be automatic merges" are changes whose decision, before any tightening, was
``auto_merge``, acted on or not (shadow mode measures too). Tightening only ever lowers a
decision, never raises one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from app.repo_config import FeedbackConfig

__all__ = ["DEFAULT_RULES", "Rules", "Tightening", "evaluate"]


@dataclass(frozen=True, slots=True)
class Rules:
    lookback: int = 20
    max_bad_rate: float = 0.10
    clean_streak: int = 20

    @classmethod
    def of(cls, config: FeedbackConfig) -> Rules:
        return cls(config.tighten_lookback, config.tighten_bad_rate, config.relax_after)


DEFAULT_RULES: Final = Rules()


@dataclass(frozen=True, slots=True)
class Tightening:
    """The state after the last outcome; ``reason`` is what the check run says when active."""

    active: bool
    since: datetime | None = None
    bad: int = 0
    counted: int = 0
    streak: int = 0
    rules: Rules = DEFAULT_RULES

    @property
    def reason(self) -> str:
        if not self.active:
            return ""
        rate = self.bad / self.counted if self.counted else 0.0
        since = self.since.strftime("%Y-%m-%d") if self.since is not None else "now"
        return (
            f"Autonomy is stepped down one level for this repository since {since}: "
            f"{self.bad} of the last {self.counted} would-be automatic merges went wrong "
            f"({rate:.0%}, above {self.rules.max_bad_rate:.0%}). It steps back after "
            f"{self.rules.clean_streak} clean outcomes in a row ({self.streak} so far) or "
            "when an admin asks for `autonomy reset`."
        )


def evaluate(
    outcomes: Iterable[tuple[datetime, bool]],
    resets: Iterable[datetime] = (),
    rules: Rules = DEFAULT_RULES,
) -> Tightening:
    """The tightening after every ``(known_at, bad)`` outcome and every reset, in time order.

    At equal times a reset comes after the outcomes it was meant to forgive.
    """
    events = sorted(
        [(at, 0, bad) for at, bad in outcomes] + [(at, 1, False) for at in resets],
        key=lambda e: (e[0], e[1]),
    )
    window: deque[bool] = deque(maxlen=max(rules.lookback, 1))
    state = Tightening(False, rules=rules)
    for at, kind, bad in events:
        if kind == 1:  # an admin's reset
            window.clear()
            state = Tightening(False, rules=rules)
            continue
        if state.active:
            streak = 0 if bad else state.streak + 1
            if streak >= rules.clean_streak:
                window.clear()
                state = Tightening(False, rules=rules)
            else:
                state = Tightening(True, state.since, state.bad, state.counted, streak, rules=rules)
            continue
        window.append(bad)
        bad_count = sum(window)
        if bad_count / len(window) > rules.max_bad_rate:
            state = Tightening(True, at, bad_count, len(window), 0, rules=rules)
    return state
