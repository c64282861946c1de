"""Supersession within one process: a newer push for a PR stops the review of the older head.

The webhook view tells the coordinator about every new head it accepts, before any worker picks
the delivery up; a review still running for an older head of that PR sees its ticket cancelled and
stops without publishing. Across processes the pipeline also re-reads the PR's head right before
publishing, so a replica that never saw the push still does not publish a stale review.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(eq=False)
class ReviewTicket:
    pr_key: str
    head_sha: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def superseded(self) -> bool:
        return self.cancelled.is_set()


class ReviewCoordinator:
    def __init__(self) -> None:
        self._latest: dict[str, str] = {}
        self._running: dict[str, set[ReviewTicket]] = {}

    def note_head(self, pr_key: str, head_sha: str) -> None:
        """A delivery for ``head_sha`` was accepted: older reviews of this PR are superseded."""
        self._latest[pr_key] = head_sha
        for ticket in self._running.get(pr_key, set()):
            if ticket.head_sha != head_sha:
                ticket.cancelled.set()
        if len(self._latest) > 50_000:  # bounded: forget the oldest half
            for key in list(self._latest)[:25_000]:
                del self._latest[key]

    def begin(self, pr_key: str, head_sha: str) -> ReviewTicket:
        ticket = ReviewTicket(pr_key, head_sha)
        latest = self._latest.setdefault(pr_key, head_sha)
        if latest != head_sha:
            ticket.cancelled.set()
        self._running.setdefault(pr_key, set()).add(ticket)
        return ticket

    def end(self, ticket: ReviewTicket) -> None:
        running = self._running.get(ticket.pr_key)
        if running is not None:
            running.discard(ticket)
            if not running:
                del self._running[ticket.pr_key]
