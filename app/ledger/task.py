"""One reconciliation run, the server's timer for it, and what ``/healthz`` and the metrics say.

A run reads the gateway's logs from where the last run ended (less :data:`OVERLAP`, so a log
written late is still seen; the first run reaches back :data:`FIRST_LOOKBACK`), matches them to
ledger rows (``reconcile``), stores the outcome (``store``), then writes settled outcomes back
(``writeback``) unless that is off. Without ``CF_API_TOKEN`` none of this exists.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from app.ledger.cf_logs import GatewayLogsClient, Sleep, insecure_base, resolve_target
from app.ledger.reconcile import Kind, reconcile
from app.ledger.store import LedgerReconcileStore
from app.ledger.writeback import OutcomeWriter, WritebackReport
from app.metrics import Metrics
from app.settings import Settings
from app.store.db import Database
from app.store.types import utcnow
from app.sweep.periodic import Periodic

__all__ = ["ReconcileReport", "Reconciler", "build_reconciler", "ledger_health", "running"]

logger = logging.getLogger(__name__)

#: How far back a run reaches before where the last one ended.
OVERLAP: Final = timedelta(hours=1)
#: How far back the first run reaches.
FIRST_LOOKBACK: Final = timedelta(days=1)
#: Calls younger than this are not called missing yet: logs and rows are written after a call.
SETTLE_DELAY: Final = timedelta(minutes=10)
#: Logs are read from this long before the range's rows: a log is written before its row.
LOG_MARGIN: Final = timedelta(minutes=30)
#: The key of :meth:`Database.exclusive` a run holds.
RECONCILE_LOCK_KEY: Final = 1


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    since: datetime
    until: datetime
    logs_seen: int
    corrected: int
    differing: int
    new_discrepancies: int
    open_discrepancies: dict[Kind, int]
    writeback: WritebackReport | None = None

    def lines(self) -> list[str]:
        lines = [
            f"logs {self.since.isoformat()} .. {self.until.isoformat()}: {self.logs_seen} read",
            f"ledger rows reconciled: {self.corrected} ({self.differing} differed from the "
            "estimate)",
            f"new discrepancies: {self.new_discrepancies}; open: "
            + ", ".join(f"{kind.value} {n}" for kind, n in self.open_discrepancies.items()),
        ]
        if self.writeback is not None:
            wb = self.writeback
            lines.append(
                f"outcomes written back: {wb.outcomes} ({wb.logs} logs)"
                + (f"; off: {wb.stopped}" if wb.stopped else "")
                + (f"; stopped early: {wb.error}" if wb.error else "")
            )
        return lines


class Reconciler:
    def __init__(
        self,
        db: Database,
        client: GatewayLogsClient,
        *,
        writeback: bool = True,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.store = LedgerReconcileStore(db, clock=clock)
        self.client = client
        self.clock = clock
        self.metrics = metrics
        self.writer = OutcomeWriter(db, client, clock=clock) if writeback else None

    async def run(self, *, since: datetime | None = None) -> ReconcileReport:
        """Reconcile from ``since`` (else where the last run ended) until now, then write back.

        One run at a time among the replicas sharing the database: each would read the same
        logs and write the same corrections, spending the logs API's requests twice. A run
        another replica has under way is waited for.
        """
        async with self.db.exclusive(RECONCILE_LOCK_KEY, wait=True):
            return await self._run(since=since)

    async def run_unless_running(self) -> ReconcileReport | None:
        """The server's timer: a run another replica has under way is left to it (None)."""
        async with self.db.exclusive(RECONCILE_LOCK_KEY, wait=False) as mine:
            if not mine:
                logger.info("ledger reconciliation: another replica is running it")
                return None
            return await self._run(since=None)

    async def _run(self, *, since: datetime | None) -> ReconcileReport:
        started = until = self.clock()
        if since is None:
            last = await self.store.last_until()
            since = last - OVERLAP if last is not None else until - FIRST_LOOKBACK
        logs = await self.client.list_logs(since=since - LOG_MARGIN, until=until)
        calls = await self.store.calls_for([log.id for log in logs], since=since, until=until)
        result = reconcile(logs, calls, settled_before=until - SETTLE_DELAY)
        new = await self.store.apply(
            result, started_at=started, since=since, until=until, logs_seen=len(logs)
        )
        fresh = [c for c in result.corrections if c.first]
        differing = sum(1 for c in fresh if c.differs)
        counts = await self.store.open_counts()
        if self.metrics is not None:
            self.metrics.ledger_corrections.inc(differing)
            set_discrepancy_gauge(self.metrics, counts)
        if new:
            logger.warning(
                "the ledger and the gateway's logs disagree: %d new discrepancies "
                "(python -m app ledger discrepancies)",
                new,
            )
        writeback = await self.writer.run() if self.writer is not None else None
        return ReconcileReport(
            since=since,
            until=until,
            logs_seen=len(logs),
            corrected=len(fresh),
            differing=differing,
            new_discrepancies=new,
            open_discrepancies=counts,
            writeback=writeback,
        )


def set_discrepancy_gauge(metrics: Metrics, counts: dict[Kind, int]) -> None:
    for kind, count in counts.items():
        metrics.ledger_discrepancies.labels(kind.value).set(count)


def build_client(settings: Settings, *, sleep: Sleep | None = None) -> GatewayLogsClient | str:
    """The logs client, or why reconciliation is off."""
    if settings.cf_api_token is None:
        return "CF_API_TOKEN is not set"
    insecure = insecure_base(settings.cf_api_base_url)
    if insecure is not None:
        return insecure
    target = resolve_target(settings)
    if isinstance(target, str):
        return target
    kwargs: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return GatewayLogsClient(
        base_url=settings.cf_api_base_url,
        token=settings.cf_api_token,
        target=target,
        **kwargs,
    )


def build_reconciler(
    settings: Settings, db: Database, *, metrics: Metrics | None = None
) -> Reconciler | str:
    client = build_client(settings)
    if isinstance(client, str):
        return client
    return Reconciler(db, client, writeback=settings.ledger_writeback, metrics=metrics)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, db: Database, metrics: Metrics, *, sleep: Sleep | None = None
) -> AsyncIterator[Reconciler | None]:
    """The server's reconciliation timer, while the context is open; None when it is off."""
    if settings.cf_api_token is None:
        yield None
        return
    reconciler = build_reconciler(settings, db, metrics=metrics)
    if isinstance(reconciler, str):
        logger.warning("ledger reconciliation is off: %s", reconciler)
        yield None
        return
    kwargs: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    timer = Periodic(
        "ledger-reconcile",
        reconciler.run_unless_running,
        interval=settings.ledger_reconcile_interval_seconds,
        **kwargs,
    )
    timer.start()
    try:
        yield reconciler
    finally:
        await timer.stop()
        await reconciler.client.aclose()


async def ledger_health(
    settings: Settings, db: Database, metrics: Metrics | None = None
) -> dict[str, Any] | None:
    """The health detail's ``ledger`` entry (None when reconciliation is off): open
    discrepancies, and a warning when they are above ``LEDGER_DISCREPANCY_WARN_THRESHOLD``."""
    if settings.cf_api_token is None:
        return None
    counts = await LedgerReconcileStore(db).open_counts()
    if metrics is not None:
        set_discrepancy_gauge(metrics, counts)
    total = sum(counts.values())
    detail: dict[str, Any] = {"open_discrepancies": {k.value: n for k, n in counts.items()}}
    threshold = settings.ledger_discrepancy_warn_threshold
    if total > threshold:
        detail["warning"] = (
            f"{total} open discrepancies between the ledger and the gateway's logs (more than "
            f"{threshold}); see python -m app ledger discrepancies"
        )
    return detail
