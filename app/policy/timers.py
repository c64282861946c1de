"""What the acting stage does on a timer, not only when an event arrives.

Events are the fast path, but GitHub may not send the one that matters: a required check that
turns green through a path that sends no ``status``/``check_suite`` event to this App, a GitHub
outage during the action, a process that died mid-send. So two jobs run every few seconds:

- ``send_due_actions``: every outbox action whose backoff has ended, or whose sender vanished;
- ``recheck_idle_intents``: every merge intent still waiting that no event has touched for a
  while, re-examined as a check event would (fresh facts, green checks, then merge).

Both act through the installation stored with the row, so they need no event to know it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from app.config_loader import ConfigLoader
from app.policy.actions import Acting, ActionRecord, advance_intent, send
from app.policy.decisions import ActionTaken, DecisionStore
from app.services import Services

__all__ = ["recheck_idle_intents", "send_due_actions"]

log = logging.getLogger(__name__)


def _acting(services: Services) -> Acting:
    return Acting(
        store=DecisionStore(services.db, claim_seconds=services.settings.lease_seconds),
        identity=services.auth,
        configs=services.config_loader or ConfigLoader(),
        log=log,
        notice_grace=timedelta(seconds=services.settings.notice_grace_seconds),
    )


async def send_due_actions(
    services: Services, *, limit: int = 50, now: datetime | None = None
) -> list[ActionRecord]:
    """Send the outbox actions that are due; returns what was done (for logs and tests)."""
    acting = _acting(services)
    done: list[ActionRecord] = []
    for action in await acting.outbox.due(limit=limit, now=now):
        if action.installation_id is None:
            log.warning("action %s has no installation to act through; skipped", action.id)
            continue
        gh = services.github_for(action.installation_id)
        try:
            record = await send(gh, action.id, acting=acting, now=now)
        except Exception:  # one action's surprise must not stop the others
            log.exception("sending action %s failed", action.id)
            continue
        if record is not None:
            done.append(record)
    return done


async def recheck_idle_intents(
    services: Services, *, idle: timedelta = timedelta(minutes=2), limit: int = 50
) -> list[tuple[int, ActionTaken]]:
    """Look again at merge intents that have waited ``idle`` without an event."""
    acting = _acting(services)
    results: list[tuple[int, ActionTaken]] = []
    for intent in await acting.store.stale_intents(idle=idle, limit=limit):
        assert intent.installation_id is not None
        gh = services.github_for(intent.installation_id)
        await acting.store.touch_intent(intent.id)
        try:
            outcome = await advance_intent(gh, intent, acting=acting)
        except Exception:
            log.exception("re-examining merge intent %s failed", intent.id)
            continue
        if outcome.action is not ActionTaken.MERGE_PENDING:
            await acting.store.settle_pending_decision(
                intent.repository, intent.pr_number, intent.head_sha, outcome.action, outcome.reason
            )
        results.append((intent.id, outcome.action))
    return results
