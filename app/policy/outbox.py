"""The outbox: what the bot decided to do, written down before it is done.

A decision to merge or to escalate is worth as much as the paid review behind it, so it must not
be lost to a crash, a GitHub outage or a retried delivery, and must not be carried out twice.
The review's outcome, its decision row and the action row are written in one transaction
(``record_in``); a sender then claims the action row and carries it out (``actions.send``), with
bounded retries and backoff, and settles it. If the process dies at any point, the row is still
there: a retried delivery and a timer both pick it up; a claim that outlived its holder is taken
over. When the retries are spent the action ends ``failed``, the check run says what could not be
done, and ``python -m app actions --failed`` lists it (``actions retry ID`` queues it again).

Each action is idempotent on GitHub's side: a merge is pinned to the reviewed SHA and recorded
as a merge intent (at most one merge per head), labels and review requests are set, not added,
and comments carry a marker that is looked for before posting again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import and_, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import Database
from app.store.tables import actions, of_pull
from app.store.types import utcnow

__all__ = [
    "ACTION_MAX_ATTEMPTS",
    "ActionKind",
    "ActionStatus",
    "Outbox",
    "OutboxAction",
    "backoff",
]

#: Attempts before an action is given up as ``failed`` (each already retries GitHub's 5xx).
ACTION_MAX_ATTEMPTS: Final = 5
#: How long a sender may hold a claimed action before another may take it over.
CLAIM_SECONDS: Final = 300.0


# Read after every decision: built once.
_FOR_HEAD = select(actions).where(of_pull(actions, head=True)).order_by(actions.c.id)


class ActionKind(StrEnum):
    MERGE = "merge"
    ESCALATE = "escalate"


class ActionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxAction:
    id: int
    repository: str
    pr_number: int
    head_sha: str
    kind: ActionKind
    decision_id: int | None
    installation_id: int | None
    payload: dict[str, Any]
    status: ActionStatus
    attempts: int
    result: str | None
    last_error: str | None
    updated_at: datetime


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 10 s, 20 s, 40 s … at most 10 minutes."""
    return float(min(600, 10 * 2 ** max(attempts - 1, 0)))


def _action(row: Any) -> OutboxAction:
    return OutboxAction(
        id=row.id,
        repository=row.repository,
        pr_number=row.pr_number,
        head_sha=row.head_sha,
        kind=ActionKind(row.kind),
        decision_id=row.decision_id,
        installation_id=row.installation_id,
        payload=json.loads(row.payload),
        status=ActionStatus(row.status),
        attempts=row.attempts,
        result=row.result,
        last_error=row.last_error,
        updated_at=row.updated_at,
    )


class Outbox:
    def __init__(self, db: Database, *, claim_seconds: float = CLAIM_SECONDS) -> None:
        self.db = db
        self._claim = timedelta(seconds=claim_seconds)

    async def add_in(
        self,
        conn: AsyncConnection,
        *,
        repository: str,
        pr_number: int,
        head_sha: str,
        kind: ActionKind,
        decision_id: int | None,
        installation_id: int | None,
        payload: dict[str, Any],
    ) -> int:
        """Queue an action inside the caller's transaction; one per (head, kind)."""
        now = utcnow()
        key = and_(
            actions.c.repository == repository,
            actions.c.pr_number == pr_number,
            actions.c.head_sha == head_sha,
            actions.c.kind == kind.value,
        )
        existing = (await conn.execute(select(actions.c.id, actions.c.status).where(key))).first()
        values = {
            "decision_id": decision_id,
            "installation_id": installation_id,
            "payload": json.dumps(payload, sort_keys=True),
            "updated_at": now,
        }
        if existing is not None:
            # A new decision for the same head (a re-review) asks for the action again.
            if existing.status in {ActionStatus.DONE.value, ActionStatus.FAILED.value}:
                values.update(
                    status=ActionStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    result=None,
                    last_error=None,
                    claimed_until=None,
                )
            await conn.execute(update(actions).where(actions.c.id == existing.id).values(values))
            return int(existing.id)
        inserted = await conn.execute(
            actions.insert()
            .values(
                repository=repository,
                pr_number=pr_number,
                head_sha=head_sha,
                kind=kind.value,
                status=ActionStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                **values,
            )
            .returning(actions.c.id)
        )
        return int(inserted.scalar_one())

    async def get(self, action_id: int) -> OutboxAction | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(actions).where(actions.c.id == action_id))).first()
        return _action(row) if row is not None else None

    async def for_head(self, repository: str, pr_number: int, head_sha: str) -> list[OutboxAction]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                _FOR_HEAD, {"repository": repository, "pr_number": pr_number, "head_sha": head_sha}
            )
            return [_action(r) for r in rows]

    async def due(self, *, limit: int = 50, now: datetime | None = None) -> list[OutboxAction]:
        """Pending actions whose time has come, and running ones whose holder has gone."""
        now = now or utcnow()
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(actions)
                .where(
                    or_(
                        and_(
                            actions.c.status == ActionStatus.PENDING.value,
                            actions.c.next_attempt_at <= now,
                        ),
                        and_(
                            actions.c.status == ActionStatus.RUNNING.value,
                            actions.c.claimed_until < now,
                        ),
                    )
                )
                .order_by(actions.c.next_attempt_at, actions.c.id)
                .limit(limit)
            )
            return [_action(r) for r in rows]

    async def claim(
        self, action_id: int, *, now: datetime | None = None, early: bool = False
    ) -> OutboxAction | None:
        """Take the action for this sender, if it is due and nobody holds it; else None.

        ``early``: a pending action is taken before its backoff ends (a redelivered event is
        news that GitHub may be back, and is backed off by the queue already).
        """
        now = now or utcnow()
        due = true() if early else actions.c.next_attempt_at <= now
        async with self.db.write() as conn:
            result = await conn.execute(
                update(actions)
                .where(
                    actions.c.id == action_id,
                    or_(
                        and_(actions.c.status == ActionStatus.PENDING.value, due),
                        and_(
                            actions.c.status == ActionStatus.RUNNING.value,
                            actions.c.claimed_until < now,
                        ),
                    ),
                )
                .values(
                    status=ActionStatus.RUNNING.value,
                    claimed_until=now + self._claim,
                    attempts=actions.c.attempts + 1,
                    updated_at=now,
                )
            )
            if not result.rowcount:
                return None
            row = (await conn.execute(select(actions).where(actions.c.id == action_id))).one()
        return _action(row)

    async def done(self, action_id: int, result: str) -> None:
        await self._settle(action_id, ActionStatus.DONE, result=result[:4000])

    async def attempt_failed(
        self, action: OutboxAction, error: str, *, max_attempts: int = ACTION_MAX_ATTEMPTS
    ) -> ActionStatus:
        """Back off for another attempt, or give up as ``failed`` once attempts are spent."""
        if action.attempts >= max_attempts:
            await self._settle(action.id, ActionStatus.FAILED, last_error=error[:4000])
            return ActionStatus.FAILED
        await self._settle(
            action.id,
            ActionStatus.PENDING,
            last_error=error[:4000],
            next_attempt_at=utcnow() + timedelta(seconds=backoff(action.attempts)),
        )
        return ActionStatus.PENDING

    async def release_all(self) -> int:
        """Put every claimed action back (one process owns a SQLite file: its sender is gone)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(actions)
                .where(actions.c.status == ActionStatus.RUNNING.value)
                .values(status=ActionStatus.PENDING.value, claimed_until=None, updated_at=utcnow())
            )
            return int(result.rowcount)

    async def failed(self) -> list[OutboxAction]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(actions)
                .where(actions.c.status == ActionStatus.FAILED.value)
                .order_by(actions.c.id)
            )
            return [_action(r) for r in rows]

    async def retry(self, action_id: int) -> bool:
        """Queue a failed action again, now, with its attempts counted afresh."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(actions)
                .where(actions.c.id == action_id, actions.c.status == ActionStatus.FAILED.value)
                .values(
                    status=ActionStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=utcnow(),
                    claimed_until=None,
                    updated_at=utcnow(),
                )
            )
            return bool(result.rowcount)

    async def _settle(self, action_id: int, status: ActionStatus, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(actions)
                .where(actions.c.id == action_id)
                .values(status=status.value, claimed_until=None, updated_at=utcnow(), **values)
            )
