"""One sweep on a timer: run now, then every interval, as a tracked task until stopped.

A sweep tidies what crashes and time leave behind, so it runs at start (a restart after a crash is
when there is most to tidy) and then on its interval. A sweep that fails is logged and tried again
at the next tick: a database that is down for a minute must not end the timer for good. ``sleep``
is injectable so that a test steps the timer itself instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Periodic:
    """``sweep`` now and then every ``interval`` seconds, in one task named ``sweep:<name>``."""

    def __init__(
        self,
        name: str,
        sweep: Callable[[], Awaitable[object]],
        *,
        interval: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError("a sweep's interval must be positive")
        self.name = name
        self.interval = interval
        self._sweep = sweep
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # sweeps finished, failed ones included

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"sweep {self.name} is already running")
        self._task = asyncio.create_task(self._run(), name=f"sweep:{self.name}")

    async def stop(self) -> None:
        """Cancel the timer, and the sweep if one is under way (each sweep batch commits on
        its own, so a cut-off sweep leaves nothing half done), and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            try:
                await self._sweep()
            except Exception:
                log.exception("sweep %s failed; trying again in %.0f s", self.name, self.interval)
            self.runs += 1
            await self._sleep(self.interval)
