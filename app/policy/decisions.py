"""What the acting stage remembers: decisions, merge intents and once-per-head notices.

Three tables, three jobs:

- ``decisions``: every autonomy decision and what was done about it, written once the action
  finished, so the feedback loop can later ask "what did the bot let through, and what happened".
- ``merge_intents``: a merge the bot means to make for one pull-request head. The row is what
  makes a merge happen *at most once*: a worker must move it from ``pending`` to ``merging``
  (an atomic ``UPDATE … WHERE status = 'pending'``) before it may call GitHub, so two events for
  the same green head racing each other cannot both merge. A claim carries a deadline, so a worker
  that died mid-merge does not block the intent for ever. An event that finds the intent claimed
  sets ``recheck`` instead of giving up, and the holder may only put the intent back to
  ``pending`` while ``recheck`` is unset (``release``); otherwise it looks again. Without that, a
  holder that read the checks a moment before they turned green would put the intent back to
  sleep, and the event announcing the green check would be lost.
- ``pr_notices``: comments that must be posted at most once per head (a refused merge, nobody to
  ask for a review). Inserting the row claims the right to comment; ``forget_notice`` gives it back
  when posting failed, so a retry can try again.

Everything here is plain SQL that behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.policy.autonomy import AutonomyDecision
from app.store.db import Database
from app.store.tables import decisions, merge_intents, pr_notices
from app.store.types import utcnow

__all__ = [
    "CLAIM_SECONDS",
    "ActionTaken",
    "DecisionFields",
    "DecisionRow",
    "DecisionStore",
    "IntentStatus",
    "MergeIntent",
    "guards_json",
]

#: How long a worker may hold an intent in ``merging`` before another may take it over.
CLAIM_SECONDS: Final = 300.0


#: Built once; the values are passed at execution (see ``DecisionStore.record_in``).
_INSERT_DECISION = decisions.insert().returning(decisions.c.id)


class ActionTaken(StrEnum):
    """What the acting stage did about a decision (the ``decisions.action_taken`` column)."""

    PENDING = "pending"  # decided and queued in the outbox, not carried out yet
    MERGED = "merged"
    MERGE_PENDING = "merge_pending"  # waiting for checks or for GitHub's mergeability
    MERGE_DROPPED = "merge_dropped"  # head moved, checks failed, pull request closed
    MERGE_REFUSED = "merge_refused"  # GitHub or the pull request's state said no
    MERGE_CANCELLED = "merge_cancelled"  # fresh facts lowered the decision before the merge
    CANCELLED = "cancelled"  # fresh facts stopped an escalation before it happened
    ESCALATED = "escalated"
    LEFT_FOR_HUMAN = "left_for_human"
    OPENED_PR = "opened_pr"
    APPROVAL_REFUSED = "approval_refused"
    NOTHING = "nothing"  # shadow mode, autonomy off, or the no-automation label
    ERROR = "error"


class IntentStatus(StrEnum):
    PENDING = "pending"
    MERGING = "merging"
    MERGED = "merged"
    DROPPED = "dropped"
    REFUSED = "refused"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class MergeIntent:
    id: int
    repository: str
    pr_number: int
    head_sha: str
    merge_method: str
    commit_title: str
    commit_message: str
    requested_by: str | None
    status: IntentStatus
    reason: str | None
    basis: str | None = None  # JSON ``DecisionBasis``; None for a merge a person asked for
    installation_id: int | None = None


@dataclass(frozen=True, slots=True)
class DecisionRow:
    id: int
    repository: str
    pr_number: int
    head_sha: str
    tier: str | None
    confidence: float | None
    matrix_decision: str | None
    decision: str
    guards: tuple[dict[str, str], ...]
    mode: str
    act: bool
    action_taken: str
    result: str | None
    check_run_id: int | None
    actor: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DecisionFields:
    """The decision columns of a ``decisions`` row, from a review or from an earlier row."""

    tier: str | None
    confidence: float | None
    matrix_decision: str | None
    decision: str
    guards: str  # JSON text
    mode: str
    act: bool

    @classmethod
    def of(cls, decision: AutonomyDecision) -> DecisionFields:
        return cls(
            tier=decision.tier.value,
            confidence=decision.confidence,
            matrix_decision=decision.matrix_decision.value,
            decision=decision.decision.value,
            guards=guards_json(decision),
            mode=decision.mode.value,
            act=decision.act,
        )

    @classmethod
    def copy_of(cls, row: DecisionRow) -> DecisionFields:
        return cls(
            tier=row.tier,
            confidence=row.confidence,
            matrix_decision=row.matrix_decision,
            decision=row.decision,
            guards=json.dumps(list(row.guards), separators=(",", ":")),
            mode=row.mode,
            act=row.act,
        )


def guards_json(decision: AutonomyDecision) -> str:
    """The guards that applied, as the JSON text stored in ``decisions.guards``."""
    return json.dumps(
        [
            {"guard": g.guard.value, "effect": g.effect.value, "reason": g.reason}
            for g in decision.guards
        ],
        separators=(",", ":"),
    )


def _intent(row: Any) -> MergeIntent:
    return MergeIntent(
        id=row.id,
        repository=row.repository,
        pr_number=row.pr_number,
        head_sha=row.head_sha,
        merge_method=row.merge_method,
        commit_title=row.commit_title,
        commit_message=row.commit_message,
        requested_by=row.requested_by,
        status=IntentStatus(row.status),
        reason=row.reason,
        basis=row.basis,
        installation_id=row.installation_id,
    )


_DECISION_BY_ID = select(decisions).where(decisions.c.id == bindparam("id"))


def _decision(row: Any) -> DecisionRow:
    return DecisionRow(
        id=row.id,
        repository=row.repository,
        pr_number=row.pr_number,
        head_sha=row.head_sha,
        tier=row.tier,
        confidence=row.confidence,
        matrix_decision=row.matrix_decision,
        decision=row.decision,
        guards=tuple(json.loads(row.guards or "[]")),
        mode=row.mode,
        act=bool(row.act),
        action_taken=row.action_taken,
        result=row.result,
        check_run_id=row.check_run_id,
        actor=row.actor,
        created_at=row.created_at,
    )


class DecisionStore:
    """Decisions, merge intents and notices in the application database."""

    def __init__(self, db: Database, *, claim_seconds: float = CLAIM_SECONDS) -> None:
        self.db = db
        self.claim_seconds = claim_seconds
        self._claim = timedelta(seconds=claim_seconds)

    # ------------------------------------------------------------------------- decisions

    async def record(
        self,
        *,
        repository: str,
        pr_number: int,
        head_sha: str,
        fields: DecisionFields,
        action_taken: ActionTaken,
        result: str | None,
        check_run_id: int | None = None,
        actor: str | None = None,
    ) -> int:
        """Store one decision and what was done about it; return the row id."""
        async with self.db.write() as conn:
            return await self.record_in(
                conn,
                repository=repository,
                pr_number=pr_number,
                head_sha=head_sha,
                fields=fields,
                action_taken=action_taken,
                result=result,
                check_run_id=check_run_id,
                actor=actor,
            )

    async def record_in(
        self,
        conn: AsyncConnection,
        *,
        repository: str,
        pr_number: int,
        head_sha: str,
        fields: DecisionFields,
        action_taken: ActionTaken,
        result: str | None,
        check_run_id: int | None = None,
        actor: str | None = None,
    ) -> int:
        """``record`` inside the caller's transaction (with the review's outcome and its action)."""
        inserted = await conn.execute(
            _INSERT_DECISION,
            {
                "repository": repository,
                "pr_number": pr_number,
                "head_sha": head_sha,
                "tier": fields.tier,
                "confidence": fields.confidence,
                "matrix_decision": fields.matrix_decision,
                "decision": fields.decision,
                "guards": fields.guards,
                "mode": fields.mode,
                "act": fields.act,
                "action_taken": action_taken.value,
                "result": result,
                "check_run_id": check_run_id,
                "actor": actor,
                "created_at": utcnow(),
            },
        )
        return int(inserted.scalar_one())

    async def update_action(self, decision_id: int, action_taken: ActionTaken, result: str) -> None:
        """What was finally done about a decision queued as ``pending``."""
        async with self.db.write() as conn:
            await conn.execute(
                update(decisions)
                .where(decisions.c.id == decision_id)
                .values(action_taken=action_taken.value, result=result[:4000])
            )

    async def get(self, decision_id: int) -> DecisionRow | None:
        async with self.db.read() as conn:
            row = (await conn.execute(_DECISION_BY_ID, {"id": decision_id})).first()
        return _decision(row) if row is not None else None

    async def settle_pending_decision(
        self,
        repository: str,
        pr_number: int,
        head_sha: str,
        action_taken: ActionTaken,
        result: str | None,
    ) -> None:
        """Record how a deferred merge ended on the decisions that were left waiting for it."""
        async with self.db.write() as conn:
            await conn.execute(
                update(decisions)
                .where(
                    decisions.c.repository == repository,
                    decisions.c.pr_number == pr_number,
                    decisions.c.head_sha == head_sha,
                    decisions.c.action_taken == ActionTaken.MERGE_PENDING.value,
                )
                .values(action_taken=action_taken.value, result=result)
            )

    async def decisions_for(self, repository: str, pr_number: int) -> list[DecisionRow]:
        """Every stored decision for a pull request, oldest first."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(decisions)
                .where(decisions.c.repository == repository, decisions.c.pr_number == pr_number)
                .order_by(decisions.c.id)
            )
            return [_decision(r) for r in rows]

    async def for_heads(self, heads: Collection[tuple[str, int, str]]) -> list[DecisionRow]:
        """The bot's own decisions on these (repository, pull request, head SHA), oldest first."""
        if not heads:
            return []
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(decisions)
                .where(
                    decisions.c.repository.in_({h[0] for h in heads}),
                    decisions.c.pr_number.in_({h[1] for h in heads}),
                    decisions.c.head_sha.in_({h[2] for h in heads}),
                    decisions.c.actor.is_(None),
                )
                .order_by(decisions.c.id)
            )
            wanted = set(heads)
            return [_decision(r) for r in rows if (r.repository, r.pr_number, r.head_sha) in wanted]

    async def latest_for_check_run(self, repository: str, check_run_id: int) -> DecisionRow | None:
        """The bot's own (not a human's) latest decision published on ``check_run_id``."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(decisions)
                    .where(
                        decisions.c.repository == repository,
                        decisions.c.check_run_id == check_run_id,
                        decisions.c.actor.is_(None),
                    )
                    .order_by(decisions.c.id.desc())
                    .limit(1)
                )
            ).first()
        return _decision(row) if row is not None else None

    # ------------------------------------------------------------------------- merge intents

    async def upsert_intent(
        self,
        *,
        repository: str,
        pr_number: int,
        head_sha: str,
        merge_method: str,
        commit_title: str,
        commit_message: str,
        requested_by: str | None,
        basis: str | None = None,
        installation_id: int | None = None,
    ) -> MergeIntent:
        """The intent to merge this head, made ``pending`` again unless it already merged.

        A new decision to merge the same head (a re-review, a human's approval) is an explicit
        request to try again, so a ``dropped`` or ``refused`` intent is revived; a ``merging`` one
        is left to its worker, and a ``merged`` one stays merged.
        """
        now = utcnow()
        stmt = (
            self.db.insert(merge_intents)
            .values(
                repository=repository,
                pr_number=pr_number,
                head_sha=head_sha,
                merge_method=merge_method,
                commit_title=commit_title,
                commit_message=commit_message,
                requested_by=requested_by,
                basis=basis,
                installation_id=installation_id,
                status=IntentStatus.PENDING.value,
                recheck=False,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[
                    merge_intents.c.repository,
                    merge_intents.c.pr_number,
                    merge_intents.c.head_sha,
                ]
            )
        )
        key = and_(
            merge_intents.c.repository == repository,
            merge_intents.c.pr_number == pr_number,
            merge_intents.c.head_sha == head_sha,
        )
        async with self.db.write() as conn:
            await conn.execute(stmt)
            await conn.execute(
                update(merge_intents)
                .where(
                    key,
                    merge_intents.c.status.in_(
                        [
                            IntentStatus.PENDING.value,
                            IntentStatus.DROPPED.value,
                            IntentStatus.REFUSED.value,
                            IntentStatus.CANCELLED.value,
                        ]
                    ),
                )
                .values(
                    merge_method=merge_method,
                    commit_title=commit_title,
                    commit_message=commit_message,
                    requested_by=requested_by,
                    basis=basis,
                    status=IntentStatus.PENDING.value,
                    reason=None,
                    updated_at=now,
                )
            )
            row = (await conn.execute(select(merge_intents).where(key))).one()
        return _intent(row)

    async def get_intent(self, intent_id: int) -> MergeIntent | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(merge_intents).where(merge_intents.c.id == intent_id))
            ).first()
        return _intent(row) if row is not None else None

    async def intent_for(
        self, repository: str, pr_number: int, head_sha: str
    ) -> MergeIntent | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(merge_intents).where(
                        merge_intents.c.repository == repository,
                        merge_intents.c.pr_number == pr_number,
                        merge_intents.c.head_sha == head_sha,
                    )
                )
            ).first()
        return _intent(row) if row is not None else None

    async def intents_for_sha(
        self, repository: str, head_sha: str, *, statuses: Sequence[IntentStatus] | None = None
    ) -> list[MergeIntent]:
        """The intents for a commit (default: those still waiting), oldest first."""
        wanted = [s.value for s in statuses or (IntentStatus.PENDING, IntentStatus.MERGING)]
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(merge_intents)
                .where(
                    merge_intents.c.repository == repository,
                    merge_intents.c.head_sha == head_sha,
                    merge_intents.c.status.in_(wanted),
                )
                .order_by(merge_intents.c.id)
            )
            return [_intent(r) for r in rows]

    async def release_claims(self) -> int:
        """Put every intent a worker was merging back to waiting (the SQLite process restarted)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(merge_intents)
                .where(merge_intents.c.status == IntentStatus.MERGING.value)
                .values(status=IntentStatus.PENDING.value, claimed_until=None, recheck=False)
            )
            return int(result.rowcount)

    async def stale_intents(self, *, idle: timedelta, limit: int = 50) -> list[MergeIntent]:
        """Waiting intents no event has looked at for ``idle``, oldest first (for the timer)."""
        cutoff = utcnow() - idle
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(merge_intents)
                .where(
                    or_(
                        and_(
                            merge_intents.c.status == IntentStatus.PENDING.value,
                            merge_intents.c.updated_at < cutoff,
                        ),
                        # A claim whose holder died (another replica, killed mid-merge).
                        and_(
                            merge_intents.c.status == IntentStatus.MERGING.value,
                            merge_intents.c.claimed_until < utcnow(),
                        ),
                    ),
                    merge_intents.c.installation_id.is_not(None),
                )
                .order_by(merge_intents.c.updated_at)
                .limit(limit)
            )
            return [_intent(r) for r in rows]

    async def touch_intent(self, intent_id: int) -> None:
        """Note that the intent was looked at, so the timer waits before looking again."""
        async with self.db.write() as conn:
            await conn.execute(
                update(merge_intents)
                .where(merge_intents.c.id == intent_id)
                .values(updated_at=utcnow())
            )

    async def claim(self, intent_id: int) -> bool:
        """Move a pending intent (or one whose claim ran out) to ``merging``; True if we got it."""
        now = utcnow()
        async with self.db.write() as conn:
            result = await conn.execute(
                update(merge_intents)
                .where(
                    merge_intents.c.id == intent_id,
                    or_(
                        merge_intents.c.status == IntentStatus.PENDING.value,
                        and_(
                            merge_intents.c.status == IntentStatus.MERGING.value,
                            merge_intents.c.claimed_until < now,
                        ),
                    ),
                )
                .values(
                    status=IntentStatus.MERGING.value,
                    claimed_until=now + self._claim,
                    recheck=False,
                    updated_at=now,
                )
            )
            return bool(result.rowcount == 1)

    async def request_recheck(self, intent_id: int) -> bool:
        """Ask the worker holding the intent to look again; False if nobody holds it now."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(merge_intents)
                .where(
                    merge_intents.c.id == intent_id,
                    merge_intents.c.status == IntentStatus.MERGING.value,
                )
                .values(recheck=True)
            )
            return bool(result.rowcount == 1)

    async def release(self, intent_id: int, reason: str | None) -> bool:
        """Put a claimed intent back to ``pending``, unless someone asked for a recheck.

        Returns False (and clears the request, keeping the claim) when a recheck was asked for:
        the caller must look at the pull request and its checks again.
        """
        async with self.db.write() as conn:
            result = await conn.execute(
                update(merge_intents)
                .where(merge_intents.c.id == intent_id, merge_intents.c.recheck.is_(False))
                .values(
                    status=IntentStatus.PENDING.value,
                    reason=reason,
                    claimed_until=None,
                    updated_at=utcnow(),
                )
            )
            if result.rowcount == 1:
                return True
            await conn.execute(
                update(merge_intents)
                .where(merge_intents.c.id == intent_id)
                .values(recheck=False, claimed_until=utcnow() + self._claim)
            )
            return False

    async def settle(self, intent_id: int, status: IntentStatus, reason: str | None) -> None:
        """End a claim: back to ``pending`` (keep waiting) or to a final status."""
        async with self.db.write() as conn:
            await conn.execute(
                update(merge_intents)
                .where(merge_intents.c.id == intent_id)
                .values(status=status.value, reason=reason, claimed_until=None, updated_at=utcnow())
            )

    # ------------------------------------------------------------------------- notices

    async def claim_notice(self, repository: str, pr_number: int, head_sha: str, kind: str) -> bool:
        """True the first time (repository, PR, head, kind) is seen: the caller may comment."""
        stmt = (
            self.db.insert(pr_notices)
            .values(
                repository=repository,
                pr_number=pr_number,
                head_sha=head_sha,
                kind=kind[:100],
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        async with self.db.write() as conn:
            result = await conn.execute(stmt)
            return bool(result.rowcount == 1)

    async def notice_claimed_at(
        self, repository: str, pr_number: int, head_sha: str, kind: str
    ) -> datetime | None:
        """When the notice was claimed, or None if it never was."""
        async with self.db.read() as conn:
            return (
                await conn.execute(
                    select(pr_notices.c.created_at).where(
                        pr_notices.c.repository == repository,
                        pr_notices.c.pr_number == pr_number,
                        pr_notices.c.head_sha == head_sha,
                        pr_notices.c.kind == kind[:100],
                    )
                )
            ).scalar_one_or_none()

    async def forget_notice(
        self, repository: str, pr_number: int, head_sha: str, kind: str
    ) -> None:
        """Give a claimed notice back (its comment could not be posted)."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(pr_notices).where(
                    pr_notices.c.repository == repository,
                    pr_notices.c.pr_number == pr_number,
                    pr_notices.c.head_sha == head_sha,
                    pr_notices.c.kind == kind[:100],
                )
            )
