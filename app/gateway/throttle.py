"""One provider's calls in flight, and the pause a rate limit asks of all of them.

Every review in a process shares one :class:`ProviderGate` per provider. It bounds the calls in
flight (``ANTHROPIC_MAX_CONCURRENCY``, ``OPENAI_MAX_CONCURRENCY``), and when the provider answers
429 with ``retry-after`` it holds *every* call of the process until then: the other calls would
only earn their own 429s, each retried on its own, and a burst of reviews would keep the
provider's limit hit instead of waiting it out once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class ProviderGate:
    """A semaphore for calls in flight plus a shared "not before" time set by rate limits."""

    def __init__(
        self,
        provider: str,
        limit: int,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a provider gate needs room for at least one call")
        self.provider = provider
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._sleep = sleep
        self._clock = clock
        self._paused_until = 0.0
        self.in_flight = 0
        self.pauses = 0

    @property
    def paused_for(self) -> float:
        """Seconds until calls may start again (0 when they may now)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """The provider asked for ``seconds`` of quiet: no call of this process starts before."""
        until = self._clock() + seconds
        if until > self._paused_until:
            if self._paused_until <= self._clock():
                log.warning(
                    "pausing %s calls for %.1f s: the provider is rate limiting",
                    self.provider,
                    seconds,
                    extra={"provider": self.provider, "delay_s": round(seconds, 3)},
                )
                self.pauses += 1
            self._paused_until = until

    async def _wait_out_pause(self) -> None:
        # Wait until the pause as it stands ends; again only if it was extended meanwhile (an
        # injected sleep that does not move the clock cannot make this spin).
        waited_for = None
        while (until := self._paused_until) > self._clock() and until != waited_for:
            waited_for = until
            await self._sleep(until - self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one call's place: after any pause, within the limit of calls in flight."""
        await self._wait_out_pause()
        async with self._slots:
            # A call that queued for a slot while a pause began waits it out too.
            await self._wait_out_pause()
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1
