"""The server's sweepers, built from its settings and started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from app.queue import DeliveryQueue
from app.quota import QuotaLedger
from app.settings import Settings
from app.store.db import Database
from app.sweep.deliveries import DeliveryPurger
from app.sweep.periodic import Periodic, Sleep
from app.sweep.reservations import ReservationSweeper

__all__ = ["Sweepers", "build_sweepers"]


class Sweepers:
    """The sweepers of one server, started and stopped together."""

    def __init__(self, timers: Sequence[Periodic]) -> None:
        self.timers = list(timers)

    def start(self) -> None:
        for timer in self.timers:
            timer.start()

    async def stop(self) -> None:
        for timer in self.timers:
            await timer.stop()


def build_sweepers(
    settings: Settings, db: Database, queue: DeliveryQueue, *, sleep: Sleep = asyncio.sleep
) -> Sweepers:
    """Every sweeper, on the intervals and bounds of ``settings``."""
    reservations = ReservationSweeper(
        QuotaLedger(db), timeout=timedelta(seconds=settings.reservation_timeout_seconds)
    )
    deliveries = DeliveryPurger(queue, retention=timedelta(days=settings.delivery_retention_days))
    return Sweepers(
        [
            Periodic(
                reservations.name,
                reservations.sweep_once,
                interval=settings.reservation_sweep_interval_seconds,
                sleep=sleep,
            ),
            Periodic(
                deliveries.name,
                deliveries.sweep_once,
                interval=settings.delivery_purge_interval_seconds,
                sleep=sleep,
            ),
        ]
    )
