"""How the bot's dependencies are doing: a sliding window of calls per component, and a state.

Each component (``"webhook"``, ``"github"``, ``"gateway:anthropic"``, ``"gateway:openai"``, ...)
keeps the calls of the last five minutes: when, how long, and whether it worked. From them come
the error rate, the p50/p95/p99 latency and a state:

* ``unhealthy``: more than 50% of the calls failed, or nothing succeeds (at least
  ``outage_min_calls`` calls, all failed);
* ``degraded``: more than 10% failed, or p95 latency above 30 s;
* ``healthy``: otherwise, and whenever a component had no calls in the window (no news is not
  bad news: an idle repository must not make the bot look ill).

A single failed call is ``degraded``, not ``unhealthy``: ``/healthz`` answers 503 when unhealthy,
which takes a replica out of a load balancer, and one flaky request must not do that. From
``outage_min_calls`` calls on, the error-rate rule applies in full.

The clock is injectable (``time.monotonic`` by default) so tests move time instead of sleeping.
Memory is bounded: each component keeps at most ``max_entries`` calls (a ``deque`` with
``maxlen``; the oldest drop first), and expired calls are evicted on every record and every read.

:func:`register_health_metrics` exports the same figures to Prometheus through a custom
collector, computed at scrape time from the same windows as ``/healthz``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = [
    "DEGRADED_ERROR_RATE",
    "DEGRADED_P95_SECONDS",
    "UNHEALTHY_ERROR_RATE",
    "ComponentHealth",
    "HealthCollector",
    "HealthMonitor",
    "HealthState",
    "classify",
    "percentile",
    "register_health_metrics",
]

#: More errors than this share of the window's calls is ``degraded``.
DEGRADED_ERROR_RATE: Final = 0.10
#: More errors than this share is ``unhealthy``.
UNHEALTHY_ERROR_RATE: Final = 0.50
#: A p95 latency above this is ``degraded`` (seconds).
DEGRADED_P95_SECONDS: Final = 30.0


class HealthState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def level(self) -> int:
        """0, 1, 2: the Prometheus gauge value, and the order for "worst of"."""
        return _LEVELS[self]


_LEVELS: Final = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.UNHEALTHY: 2}


class _Call(NamedTuple):
    at: float
    latency_s: float
    ok: bool


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's window. Latencies are None when the window holds no calls."""

    name: str
    count: int
    errors: int
    error_rate: float
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    state: HealthState

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures for ``/healthz`` (latencies rounded to the millisecond)."""
        return {
            "state": self.state.value,
            "calls": self.count,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p50_s": _ms(self.p50_s),
            "p95_s": _ms(self.p95_s),
            "p99_s": _ms(self.p99_s),
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` of the values at or below.

    Nearest rank, not interpolation, so a reported p95 is a latency that really happened, and
    "p95 over 30 s" means what it says: more than 5% of the calls took longer than 30 s.
    """
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def classify(
    *, count: int, errors: int, p95_s: float | None, outage_min_calls: int = 3
) -> HealthState:
    """The state for a window's figures (the thresholds in the module docstring)."""
    if count == 0:
        return HealthState.HEALTHY
    rate = errors / count
    if count >= outage_min_calls and (rate > UNHEALTHY_ERROR_RATE or errors == count):
        return HealthState.UNHEALTHY
    if rate > DEGRADED_ERROR_RATE or (p95_s is not None and p95_s > DEGRADED_P95_SECONDS):
        return HealthState.DEGRADED
    return HealthState.HEALTHY


class HealthMonitor:
    """Sliding windows of calls per component. Not thread-safe: use it from the event loop."""

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
        outage_min_calls: int = 3,
        components: Iterable[str] = (),
    ) -> None:
        if window_s <= 0 or max_entries < 1 or outage_min_calls < 1:
            raise ValueError("window_s, max_entries and outage_min_calls must be positive")
        self.window_s = window_s
        self._clock = clock
        self._max_entries = max_entries
        self._outage_min_calls = outage_min_calls
        self._started = clock()
        self._calls: dict[str, deque[_Call]] = {}
        for name in components:
            self.register(name)

    def register(self, name: str) -> None:
        """Show ``name`` (healthy, no calls) before its first call, e.g. in ``/healthz``."""
        self._calls.setdefault(name, deque(maxlen=self._max_entries))

    def record(self, component: str, latency_s: float, ok: bool) -> None:
        """One finished call. Negative or non-finite latencies (clock trouble) count as 0."""
        calls = self._calls.get(component)
        if calls is None:
            calls = self._calls[component] = deque(maxlen=self._max_entries)
        now = self._clock()
        if not math.isfinite(latency_s) or latency_s < 0:
            latency_s = 0.0
        calls.append(_Call(now, latency_s, ok))
        self._evict(calls, now)

    def record_many(self, component: str, calls: Iterable[tuple[float, bool]]) -> None:
        """Several calls that finished just now, as ``(latency, ok)``: one clock reading."""
        window = self._calls.get(component)
        if window is None:
            window = self._calls[component] = deque(maxlen=self._max_entries)
        now = self._clock()
        for latency_s, ok in calls:
            if not math.isfinite(latency_s) or latency_s < 0:
                latency_s = 0.0
            window.append(_Call(now, latency_s, ok))
        self._evict(window, now)

    def component(self, name: str) -> ComponentHealth:
        calls = self._calls.get(name)
        if calls is None:
            return ComponentHealth(name, 0, 0, 0.0, None, None, None, HealthState.HEALTHY)
        self._evict(calls, self._clock())
        count = len(calls)
        if count == 0:
            return ComponentHealth(name, 0, 0, 0.0, None, None, None, HealthState.HEALTHY)
        errors = sum(1 for call in calls if not call.ok)
        latencies = sorted(call.latency_s for call in calls)
        p95 = percentile(latencies, 0.95)
        return ComponentHealth(
            name=name,
            count=count,
            errors=errors,
            error_rate=errors / count,
            p50_s=percentile(latencies, 0.50),
            p95_s=p95,
            p99_s=percentile(latencies, 0.99),
            state=classify(
                count=count,
                errors=errors,
                p95_s=p95,
                outage_min_calls=self._outage_min_calls,
            ),
        )

    def components(self) -> list[ComponentHealth]:
        """Every component seen or registered, by name."""
        return [self.component(name) for name in sorted(self._calls)]

    def overall(self) -> HealthState:
        """The worst component's state; healthy with no components."""
        states = [c.state for c in self.components()]
        return max(states, key=lambda s: s.level, default=HealthState.HEALTHY)

    @property
    def uptime_s(self) -> float:
        return self._clock() - self._started

    def snapshot(self) -> dict[str, Any]:
        """JSON-able: overall state, uptime, window, and each component's figures."""
        components = self.components()
        overall = max(
            (c.state for c in components), key=lambda s: s.level, default=HealthState.HEALTHY
        )
        return {
            "status": overall.value,
            "uptime_s": round(self.uptime_s, 3),
            "window_s": self.window_s,
            "components": {c.name: c.as_dict() for c in components},
        }

    def _evict(self, calls: deque[_Call], now: float) -> None:
        horizon = now - self.window_s
        while calls and calls[0].at <= horizon:
            calls.popleft()


# ---------------------------------------------------------------------------------- Prometheus


class HealthCollector(Collector):
    """Exports the monitor's windows at scrape time (nothing is stored twice)."""

    def __init__(self, monitor: HealthMonitor, *, prefix: str = "aigateway_health") -> None:
        self._monitor = monitor
        self._prefix = prefix

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        p = self._prefix
        return (
            GaugeMetricFamily(
                f"{p}_calls",
                "Calls in the sliding window, by component",
                labels=["component"],
            ),
            GaugeMetricFamily(
                f"{p}_errors",
                "Failed calls in the sliding window, by component",
                labels=["component"],
            ),
            GaugeMetricFamily(
                f"{p}_error_rate",
                "Share of failed calls in the sliding window (0-1), by component",
                labels=["component"],
            ),
            GaugeMetricFamily(
                f"{p}_latency_seconds",
                "Latency percentile over the sliding window (NaN without calls), by component",
                labels=["component", "quantile"],
            ),
            GaugeMetricFamily(
                f"{p}_state",
                "Component state: 0 healthy, 1 degraded, 2 unhealthy",
                labels=["component"],
            ),
            GaugeMetricFamily(
                f"{p}_overall_state",
                "Worst component state: 0 healthy, 1 degraded, 2 unhealthy",
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        calls, errors, rate, latency, state, overall = self._families()
        worst = HealthState.HEALTHY
        for health in self._monitor.components():
            name = [health.name]
            calls.add_metric(name, health.count)
            errors.add_metric(name, health.errors)
            rate.add_metric(name, health.error_rate)
            for quantile, value in (
                ("0.5", health.p50_s),
                ("0.95", health.p95_s),
                ("0.99", health.p99_s),
            ):
                latency.add_metric([health.name, quantile], math.nan if value is None else value)
            state.add_metric(name, health.state.level)
            if health.state.level > worst.level:
                worst = health.state
        overall.add_metric([], worst.level)
        yield from (calls, errors, rate, latency, state, overall)


def register_health_metrics(
    monitor: HealthMonitor, registry: CollectorRegistry, *, prefix: str = "aigateway_health"
) -> HealthCollector:
    """Add the monitor's gauges to ``registry`` (the app's own, so tests can build many apps)."""
    collector = HealthCollector(monitor, prefix=prefix)
    registry.register(collector)
    return collector
