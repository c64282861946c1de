"""Purges finished deliveries once they are older than the retention period.

Every delivery is stored with its payload (up to 25 MB) so that it survives a crash and can be
replayed; once handled (``done``) it is only history, and kept forever it would grow the database
without bound. This sweep deletes ``done`` deliveries finished more than
``DELIVERY_RETENTION_DAYS`` ago, in short batches. ``failed`` deliveries are kept: they wait for a
person to replay them, or to purge them with ``python -m app deliveries --purge-failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.queue import DONE, FAILED, PURGE_BATCH, DeliveryQueue
from app.store.types import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class DeliveryPurger:
    """One purge of old ``done`` deliveries."""

    name = "deliveries"

    def __init__(
        self,
        queue: DeliveryQueue,
        *,
        retention: timedelta,
        clock: Clock = utcnow,
        batch_size: int = PURGE_BATCH,
    ) -> None:
        self._queue = queue
        self._retention = retention
        self._clock = clock
        self._batch_size = batch_size

    async def sweep_once(self) -> int:
        cutoff = self._clock() - self._retention
        purged = await self._queue.purge(DONE, finished_before=cutoff, batch_size=self._batch_size)
        if purged:
            log.info(
                "purged %d done deliveries finished before %s",
                purged,
                cutoff.isoformat(timespec="seconds"),
            )
        return purged


async def purge_failed(
    queue: DeliveryQueue, *, older_than: timedelta | None, clock: Clock = utcnow
) -> int:
    """Delete ``failed`` deliveries, all or those finished more than ``older_than`` ago: by hand
    only, since each is work that never happened until someone replays it."""
    cutoff = None if older_than is None else clock() - older_than
    purged = await queue.purge(FAILED, finished_before=cutoff)
    log.info("purged %d failed deliveries", purged)
    return purged
