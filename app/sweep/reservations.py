"""Releases budget reservations that no review will settle: their process died first.

A review reserves its maximum cost before calling the models and settles it after
(``app.quota``). A crash in between leaves the reservation open, and an open reservation counts
against the repository's budgets at its full amount, for good. Once a reservation is older than
the longest review could take (``RESERVATION_TIMEOUT_SECONDS``), this sweep settles it at what the
ledger recorded against it, which was billed, and logs each one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app.quota import QuotaLedger, StaleRelease, format_usd

log = logging.getLogger(__name__)


class ReservationSweeper:
    """One sweep of stale reservations; the clock is the ledger's."""

    name = "reservations"

    def __init__(self, ledger: QuotaLedger, *, timeout: timedelta) -> None:
        self._ledger = ledger
        self._timeout = timeout

    async def sweep_once(self) -> list[StaleRelease]:
        released = await self._ledger.release_stale(older_than=self._timeout)
        for item in released:
            log.warning(
                "released reservation %d of %s (PR %s), open since %s: %s held, %s recorded "
                "as spent",
                item.id,
                item.repository,
                item.pr_number if item.pr_number is not None else "-",
                item.created_at.isoformat(timespec="seconds"),
                format_usd(item.amount_usd),
                format_usd(item.recorded_usd),
                extra={
                    "repository": item.repository,
                    "reservation_id": item.id,
                    "reserved_usd": item.amount_usd,
                    "recorded_usd": item.recorded_usd,
                },
            )
        return released
