"""A sliding-window rate limit per caller, on the endpoints that call models.

A window, not a bucket: "30 requests in any 60 seconds" is what the operator sets and what a
caller can reason about, and the wait it is told (``Retry-After``) is exact: the moment the
oldest request in its window leaves it. One deque of timestamps per caller; callers are
authenticated and authorised before they are counted, so the keys are bounded by the
repositories the API serves, and idle ones are dropped as the map grows.

Per process: with several replicas each counts its own callers (the budgets, in the database,
are what bounds the spend across replicas).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["SlidingWindowLimiter"]

#: Past this many callers, the ones with nothing left in their window are forgotten.
PRUNE_AT: Final = 10_000


class SlidingWindowLimiter:
    def __init__(
        self, *, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """Count one request for ``key``; None when allowed, else the seconds until it would be."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= PRUNE_AT:
                self._prune(now)
            hits = self._hits[key] = deque()
        horizon = now - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window_s - now, 0.0)
        hits.append(now)
        return None

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]:
            del self._hits[key]


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (a caller that waits that long gets in)."""
    return str(max(1, math.ceil(seconds)))
