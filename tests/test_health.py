"""The health monitor: thresholds exactly at their edges, the sliding window with an injected
clock (nothing sleeps), the worst-of overall state, and the Prometheus export."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.health import (
    ComponentHealth,
    HealthMonitor,
    HealthState,
    classify,
    percentile,
    register_health_metrics,
)

H, D, U = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def monitor_with(
    *, window_s: float = 300.0, max_entries: int = 10_000, components: tuple[str, ...] = ()
) -> tuple[HealthMonitor, Clock]:
    clock = Clock()
    monitor = HealthMonitor(
        window_s=window_s, clock=clock, max_entries=max_entries, components=components
    )
    return monitor, clock


def feed(monitor: HealthMonitor, name: str, *, ok: int, failed: int, latency: float = 0.1) -> None:
    for _ in range(ok):
        monitor.record(name, latency, True)
    for _ in range(failed):
        monitor.record(name, latency, False)


@pytest.mark.parametrize(
    ("ok", "failed", "state"),
    [
        pytest.param(100, 0, H, id="no-errors"),
        pytest.param(90, 10, H, id="10%-is-healthy"),
        pytest.param(89, 11, D, id="11%-is-degraded"),
        pytest.param(50, 50, D, id="50%-is-degraded"),
        pytest.param(49, 51, U, id="51%-is-unhealthy"),
        pytest.param(0, 3, U, id="all-failing"),
        pytest.param(1, 3, U, id="75%-failing"),
        # One or two failures are not yet "nothing succeeding": degraded, not a 503.
        pytest.param(0, 1, D, id="one-failure"),
        pytest.param(0, 2, D, id="two-failures"),
        pytest.param(1, 1, D, id="half-of-two"),
    ],
)
def test_error_rate_thresholds(ok: int, failed: int, state: HealthState) -> None:
    monitor, _ = monitor_with()
    feed(monitor, "github", ok=ok, failed=failed)
    health = monitor.component("github")
    assert (health.count, health.errors, health.state) == (ok + failed, failed, state)
    assert health.error_rate == pytest.approx(failed / (ok + failed))


@pytest.mark.parametrize(
    ("slow", "latency", "state"),
    [
        # Nearest-rank p95 of 100 calls is the 95th smallest: 5 slow calls do not move it...
        pytest.param(5, 31.0, H, id="5%-slow"),
        # ...6 do.
        pytest.param(6, 31.0, D, id="6%-slow"),
        pytest.param(100, 29.999, H, id="p95-just-under-30s"),
        pytest.param(100, 30.0, H, id="p95-exactly-30s"),
        pytest.param(100, 30.001, D, id="p95-just-over-30s"),
    ],
)
def test_p95_latency_threshold(slow: int, latency: float, state: HealthState) -> None:
    monitor, _ = monitor_with()
    for _ in range(100 - slow):
        monitor.record("gateway:anthropic", 1.0, True)
    for _ in range(slow):
        monitor.record("gateway:anthropic", latency, True)
    assert monitor.component("gateway:anthropic").state is state


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (0.5, 0.95, 0.99, 1.0)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 0.5) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    monitor, _ = monitor_with()
    for value in reversed(values):
        monitor.record("webhook", value / 1000, True)
    health = monitor.component("webhook")
    assert (health.p50_s, health.p95_s, health.p99_s) == (0.05, 0.095, 0.099)


def test_classify_without_calls_and_with_a_custom_outage_minimum() -> None:
    assert classify(count=0, errors=0, p95_s=None) is H
    assert classify(count=1, errors=1, p95_s=0.1, outage_min_calls=1) is U


def test_calls_expire_after_the_window() -> None:
    monitor, clock = monitor_with(window_s=300)
    feed(monitor, "github", ok=0, failed=5)
    assert monitor.component("github").state is U
    clock.now += 200
    feed(monitor, "github", ok=10, failed=0)
    health = monitor.component("github")
    assert (health.count, health.errors, health.state) == (15, 5, D)
    clock.now += 100  # the failures are exactly 300 s old: out
    health = monitor.component("github")
    assert (health.count, health.errors, health.state) == (10, 0, H)
    clock.now += 200  # everything is out: no calls is healthy
    health = monitor.component("github")
    assert health == ComponentHealth("github", 0, 0, 0.0, None, None, None, H)


def test_recording_evicts_and_memory_is_capped() -> None:
    monitor, clock = monitor_with(window_s=10, max_entries=50)
    feed(monitor, "webhook", ok=0, failed=200)
    assert monitor.component("webhook").count == 50
    clock.now += 11
    monitor.record("webhook", 0.01, True)
    assert monitor.component("webhook").count == 1
    assert len(monitor._calls["webhook"]) == 1  # evicted on record, not only on read


def test_odd_latencies_do_not_break_the_window() -> None:
    monitor, _ = monitor_with()
    monitor.record("github", float("nan"), True)
    monitor.record("github", -1.0, True)
    health = monitor.component("github")
    assert (health.p50_s, health.p99_s) == (0.0, 0.0)


def test_overall_is_the_worst_component() -> None:
    monitor, clock = monitor_with(components=("webhook", "github", "gateway:openai"))
    assert monitor.overall() is H  # registered, no calls yet
    feed(monitor, "webhook", ok=100, failed=0)
    feed(monitor, "github", ok=80, failed=20)
    assert monitor.overall() is D
    feed(monitor, "gateway:openai", ok=0, failed=5)
    assert monitor.overall() is U
    clock.now += 301
    assert monitor.overall() is H
    assert HealthMonitor().overall() is H
    assert monitor.component("never-seen").state is H


def test_snapshot_is_json_for_healthz() -> None:
    monitor, clock = monitor_with(components=("webhook",))
    clock.now += 42.5
    feed(monitor, "github", ok=3, failed=1, latency=0.25)
    snapshot = json.loads(json.dumps(monitor.snapshot()))
    assert snapshot == {
        "status": "degraded",
        "uptime_s": 42.5,
        "window_s": 300.0,
        "components": {
            "github": {
                "state": "degraded",
                "calls": 4,
                "errors": 1,
                "error_rate": 0.25,
                "p50_s": 0.25,
                "p95_s": 0.25,
                "p99_s": 0.25,
            },
            "webhook": {
                "state": "healthy",
                "calls": 0,
                "errors": 0,
                "error_rate": 0.0,
                "p50_s": None,
                "p95_s": None,
                "p99_s": None,
            },
        },
    }


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        HealthMonitor(window_s=0)
    with pytest.raises(ValueError, match="positive"):
        HealthMonitor(max_entries=0)


def test_prometheus_collector_exports_every_window() -> None:
    monitor, _ = monitor_with(components=("webhook",))
    for latency in (1.0, 2.0, 3.0, 4.0):
        monitor.record("gateway:anthropic", latency, True)
    monitor.record("gateway:anthropic", 5.0, False)
    feed(monitor, "github", ok=0, failed=3)
    registry = CollectorRegistry()
    register_health_metrics(monitor, registry)

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        assert family.type == "gauge"
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name: str, component: str | None = None, **labels: str) -> float:
        key = dict(labels)
        if component is not None:
            key["component"] = component
        return samples[(f"aigateway_health_{name}", tuple(sorted(key.items())))]

    assert value("calls", "gateway:anthropic") == 5
    assert value("errors", "gateway:anthropic") == 1
    assert value("error_rate", "gateway:anthropic") == pytest.approx(0.2)
    assert value("latency_seconds", "gateway:anthropic", quantile="0.5") == 3.0
    assert value("latency_seconds", "gateway:anthropic", quantile="0.95") == 5.0
    assert value("latency_seconds", "gateway:anthropic", quantile="0.99") == 5.0
    assert value("state", "gateway:anthropic") == 1
    assert value("state", "github") == 2
    assert value("state", "webhook") == 0
    assert value("calls", "webhook") == 0
    assert math.isnan(value("latency_seconds", "webhook", quantile="0.95"))
    assert value("overall_state") == 2


def test_registering_twice_in_one_registry_is_refused() -> None:
    """``describe`` names the metrics, so a second collector with the same names is caught."""
    registry = CollectorRegistry()
    register_health_metrics(HealthMonitor(), registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_health_metrics(HealthMonitor(), registry)


def test_record_many_is_several_records_with_one_clock_reading() -> None:
    monitor, _clock = monitor_with(components=("webhook",))
    monitor.record_many("webhook", [(0.01, True), (0.02, True), (float("nan"), False)])
    health = monitor.component("webhook")
    assert (health.count, health.errors) == (3, 1)
    assert health.p99_s is not None and health.p99_s <= 0.02  # the NaN counts as 0
