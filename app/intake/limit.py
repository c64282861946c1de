"""How much intake holds in memory at once: requests waiting for their answer, and their bodies.

Every request intake holds is in one of its buffers until its delivery is stored and it is
answered: queued for the intake process, in the pipe to it, awaiting its verdict, or in the
in-process writer's next batch. When the database stalls (a long transaction, a slow disk, a
failover) those buffers would grow with every request GitHub sends. ``PendingLimit`` counts
requests in as the webhook view takes them, before their bodies are read (by their
``Content-Length``), and out once they are answered; past either bound (``INTAKE_MAX_PENDING``
requests, ``INTAKE_MAX_PENDING_BYTES`` bytes of bodies) the view answers 503 with
``Retry-After`` at once, without reading the body. Nothing is lost that was acknowledged: a
request is answered 202 only once its delivery is stored, and one answered 503 can be
redelivered (from the App's advanced settings, or through the API).

A request is always let in when intake holds nothing, so a byte bound below GitHub's largest
payload (25 MB) delays such a delivery until intake is idle, but never refuses it for good.
"""

from __future__ import annotations

# What ``Retry-After`` says when intake is full: a stalled database rarely recovers sooner.
RETRY_AFTER_SECONDS = 5


class PendingLimit:
    """Counts of what intake holds, and the bounds on them; all on the event loop."""

    def __init__(self, *, max_requests: int, max_bytes: int) -> None:
        if max_requests < 1 or max_bytes < 1:
            raise ValueError("the bounds must be at least 1")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def admit(self, size: int) -> bool:
        """Count in a request with a body of ``size`` bytes, if there is room for it."""
        if self.requests and (
            self.requests >= self.max_requests or self.bytes + size > self.max_bytes
        ):
            return False
        self.requests += 1
        self.bytes += size
        return True

    def grow(self, size: int) -> bool:
        """Count ``size`` more bytes for a request already in (its body came without a
        ``Content-Length``, or longer than it said), if there is room for them."""
        if self.requests > 1 and self.bytes + size > self.max_bytes:
            return False
        self.bytes += size
        return True

    def release(self, size: int) -> None:
        """A request counted in with ``size`` bytes (all it grew by included) was answered."""
        self.requests -= 1
        self.bytes -= size
