"""Prometheus metrics, one registry per app so that tests can build many apps in one process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Labelled children by (metric, label value): ``labels()`` validates and locks on every
    # call, which the webhook view would pay several times per delivery.
    _children: dict[tuple[Counter, str], Any] = field(default_factory=dict, repr=False)

    def inc(self, metric: Counter, value: str, amount: int = 1) -> None:
        """Add ``amount`` to ``metric``'s child for its single label ``value``."""
        key = (metric, value)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(value)
        child.inc(amount)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter(
            "aigateway_deliveries_received",
            "Webhook deliveries accepted and queued",
            ["event"],
            registry=r,
        )
        self.duplicates = Counter(
            "aigateway_deliveries_duplicate",
            "Redeliveries recognised by their X-GitHub-Delivery and not queued again",
            ["event"],
            registry=r,
        )
        self.rejected = Counter(
            "aigateway_deliveries_rejected",
            "Webhook requests refused, by HTTP status",
            ["status"],
            registry=r,
        )
        self.shed = Counter(
            "aigateway_webhook_shed",
            "Webhook requests answered 503 because intake held its maximum (app/intake/limit.py)",
            registry=r,
        )
        self.intake_pending_requests = Gauge(
            "aigateway_intake_pending_requests",
            "Webhook requests intake holds, not yet answered",
            registry=r,
        )
        self.intake_pending_bytes = Gauge(
            "aigateway_intake_pending_bytes",
            "Bytes of the bodies of the webhook requests intake holds",
            registry=r,
        )
        self.processed = Counter(
            "aigateway_deliveries_processed",
            "Deliveries handled successfully",
            ["event"],
            registry=r,
        )
        self.failed = Counter(
            "aigateway_deliveries_failed",
            "Deliveries that exhausted their attempts",
            ["event"],
            registry=r,
        )
        self.retried = Counter(
            "aigateway_deliveries_retried",
            "Delivery attempts that failed and were rescheduled",
            ["event"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "aigateway_queue_depth", "Deliveries queued or running", registry=r
        )
        self.handler_seconds = Histogram(
            "aigateway_handler_seconds",
            "Time spent handling one delivery",
            ["event"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.reviews = Counter(
            "aigateway_reviews",
            "Reviews finished, by repository and outcome",
            ["repository", "status"],
            registry=r,
        )
        self.decisions = Counter(
            "aigateway_decisions",
            "Autonomy decisions, by repository, decision and whether it was acted on",
            ["repository", "decision", "acted"],
            registry=r,
        )
        self.spend = Counter(
            "aigateway_spend_usd",
            "Model spend in US dollars, by repository",
            ["repository"],
            registry=r,
        )
        self.tripwire_hits = Counter(
            "aigateway_tripwire_hits",
            "Tripwire hits in reviewed pull requests, by rule (policy/tripwire)",
            ["rule"],
            registry=r,
        )
        self.ledger_discrepancies = Gauge(
            "aigateway_ledger_discrepancies",
            "Open discrepancies between the cost ledger and the gateway's logs, by kind (app/ledger)",
            ["kind"],
            registry=r,
        )
        self.ledger_corrections = Counter(
            "aigateway_ledger_corrections",
            "Ledger rows whose cost differed from the gateway's logs and was corrected (app/ledger)",
            registry=r,
        )
        self.github_requests = Counter(
            "aigateway_github_requests",
            "GitHub API requests, by method and status",
            ["method", "status"],
            registry=r,
        )
