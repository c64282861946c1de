"""The change registry: every decided pull request, its merge, its commits and its effects.

One change per pull request, holding the bot's last decision on it: the decision that the merge
(if any) is measured against. The pipeline registers it in the transaction that records the
decision, so no decided change is missing; the merge adds the merge commit, the pull request's
commits, the lines it wrote and the checks that passed on its head. After a merge the change is
frozen. Effects are rows of their own, unique per (change, kind, evidence), so a redelivered
event is counted once.

Outcomes and the tightening are not stored: they are computed from these rows and the clock
(``outcomes.settle``, ``tightening.evaluate``), so there is no state to drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.feedback.outcomes import ChangeRecord, EffectRecord, settle
from app.feedback.report import build_report, summary_line
from app.feedback.signals import Effect, Ranges
from app.feedback.tightening import DEFAULT_RULES, Rules, Tightening, evaluate
from app.store.db import Database
from app.store.tables import autonomy_resets, change_commits, change_effects, changes, ledger
from app.store.types import utcnow

__all__ = ["MIN_SHA_PREFIX", "ChangeRef", "FeedbackStore", "MergeFacts"]

#: The shortest commit abbreviation a revert message may use and still be matched.
MIN_SHA_PREFIX: Final = 7
#: How many would-be automatic merges the tightening reads back at most.
HISTORY_LIMIT: Final = 2000
#: How long a repository's feedback summary line is reused before it is read again.
SUMMARY_TTL: Final = timedelta(seconds=60)


@dataclass(slots=True)
class _Summary:
    at: datetime
    line: asyncio.Future[str]

    def __post_init__(self) -> None:
        # A failed read is read again by the next review; nobody need be left to see it fail.
        self.line.add_done_callback(lambda f: f.cancelled() or f.exception())

    def usable(self, at: datetime) -> bool:
        if not timedelta(0) <= at - self.at < SUMMARY_TTL:
            return False
        return not self.line.done() or (not self.line.cancelled() and not self.line.exception())


#: Per database, per repository: the summary line last read (or being read). Shared by every
#: FeedbackStore on the database, so a write through any of them drops what it changes.
_summaries: weakref.WeakKeyDictionary[Database, dict[str, _Summary]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class ChangeRef:
    """A registered change as the signals need it."""

    id: int
    repository: str
    pr_number: int
    head_sha: str
    decision: str
    state: str
    merge_sha: str | None
    merged_at: datetime | None
    window_ends_at: datetime | None
    touched: Ranges
    passed_checks: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeFacts:
    """What a merged pull request adds to its change, fetched by the handler."""

    repository: str
    pr_number: int
    head_sha: str
    merge_sha: str | None
    merged_at: datetime
    merged_by_bot: bool
    commits: tuple[str, ...]
    touched: Ranges
    passed_checks: tuple[str, ...]
    window: timedelta


def _ref(row: Any) -> ChangeRef:
    touched = json.loads(row.touched) if row.touched else {}
    return ChangeRef(
        id=int(row.id),
        repository=row.repository,
        pr_number=int(row.pr_number),
        head_sha=row.head_sha,
        decision=row.decision,
        state=row.state,
        merge_sha=row.merge_sha,
        merged_at=row.merged_at,
        window_ends_at=row.window_ends_at,
        touched={p: tuple((int(a), int(b)) for a, b in r) for p, r in touched.items()},
        passed_checks=tuple(json.loads(row.passed_checks) if row.passed_checks else ()),
    )


class FeedbackStore:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    @contextlib.asynccontextmanager
    async def _changing_outcomes(self, repository: str | None = None) -> AsyncIterator[None]:
        """Around a write that may change outcomes (a merge, a close, an effect): once it has
        committed (or failed), the summary lines it may change are read again, including one
        whose read began meanwhile."""
        try:
            yield
        finally:
            cached = _summaries.get(self.db, {})
            if repository is None:
                cached.clear()
            else:
                cached.pop(repository, None)

    # ------------------------------------------------------------------ registration

    async def register_in(
        self,
        conn: AsyncConnection,
        *,
        repository: str,
        pr_number: int,
        head_sha: str,
        decision_id: int | None,
        tier: str | None,
        confidence: float | None,
        decision: str,
        untightened_decision: str,
        acted: bool,
    ) -> None:
        """Register (or update) the pull request's change, in the caller's transaction.

        A merged change keeps the decision it was merged under; a closed one that is decided
        again (it was reopened) is open again.
        """
        values = {
            "repository": repository,
            "pr_number": pr_number,
            "decision_id": decision_id,
            "head_sha": head_sha,
            "tier": tier,
            "confidence": confidence,
            "decision": decision,
            "untightened_decision": untightened_decision,
            "acted": acted,
            "decided_at": self.clock(),
            "state": "open",
        }
        await conn.execute(self.db.statement("changes.register", _register_change), values)

    async def record_merge(self, facts: MergeFacts) -> ChangeRef | None:
        """Add the merge to the pull request's change; None when the bot never decided on it."""
        async with self._changing_outcomes(facts.repository), self.db.write() as conn:
            row = (
                await conn.execute(
                    select(changes).where(
                        changes.c.repository == facts.repository,
                        changes.c.pr_number == facts.pr_number,
                    )
                )
            ).first()
            if row is None:
                return None
            if row.state != "merged":
                await conn.execute(
                    update(changes)
                    .where(changes.c.id == row.id)
                    .values(
                        state="merged",
                        merged_at=facts.merged_at,
                        merge_sha=facts.merge_sha,
                        merged_by_bot=facts.merged_by_bot,
                        touched=json.dumps(
                            {p: [list(r) for r in rs] for p, rs in sorted(facts.touched.items())}
                        ),
                        passed_checks=json.dumps(sorted(set(facts.passed_checks))),
                        window_ends_at=facts.merged_at + facts.window,
                    )
                )
                shas = {s.lower() for s in (*facts.commits, facts.merge_sha or "") if s}
                if shas:
                    await conn.execute(
                        self.db.insert_or_skip(change_commits),
                        [
                            {"change_id": row.id, "sha": sha, "repository": facts.repository}
                            for sha in sorted(shas)
                        ],
                    )
            fresh = (await conn.execute(select(changes).where(changes.c.id == row.id))).one()
        return _ref(fresh)

    async def record_closed(self, repository: str, pr_number: int) -> None:
        """A pull request closed without merging: its change is not judged (unless affected)."""
        async with self._changing_outcomes(repository), self.db.write() as conn:
            await conn.execute(
                update(changes)
                .where(
                    changes.c.repository == repository,
                    changes.c.pr_number == pr_number,
                    changes.c.state == "open",
                )
                .values(state="closed")
            )

    # ------------------------------------------------------------------ lookups

    async def change_for_pr(self, repository: str, pr_number: int) -> ChangeRef | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(changes).where(
                        changes.c.repository == repository, changes.c.pr_number == pr_number
                    )
                )
            ).first()
        return None if row is None else _ref(row)

    async def changes_by_commit(self, repository: str, shas: Iterable[str]) -> list[ChangeRef]:
        """The merged changes that own any of ``shas`` (full SHAs or abbreviations)."""
        wanted = sorted({s.lower() for s in shas if len(s) >= MIN_SHA_PREFIX})
        if not wanted:
            return []
        matches = [
            change_commits.c.sha == s if len(s) >= 40 else change_commits.c.sha.startswith(s)
            for s in wanted
        ]
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(changes)
                    .where(
                        changes.c.id.in_(
                            select(change_commits.c.change_id).where(
                                change_commits.c.repository == repository, or_(*matches)
                            )
                        )
                    )
                    .order_by(changes.c.id)
                )
            ).all()
        return [_ref(r) for r in rows]

    async def changes_by_merge_sha(self, repository: str, sha: str) -> list[ChangeRef]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(changes).where(
                        changes.c.repository == repository, changes.c.merge_sha == sha.lower()
                    )
                )
            ).all()
        return [_ref(r) for r in rows]

    async def merged_between(
        self, repository: str, start: datetime, end: datetime
    ) -> list[ChangeRef]:
        """Changes merged in [start, end): candidates for a follow-up fix merged at ``end``."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(changes)
                    .where(
                        changes.c.repository == repository,
                        changes.c.state == "merged",
                        changes.c.merged_at >= start,
                        changes.c.merged_at < end,
                    )
                    .order_by(changes.c.merged_at)
                )
            ).all()
        return [_ref(r) for r in rows]

    # ------------------------------------------------------------------ effects

    async def add_effect(
        self,
        change_id: int,
        kind: Effect,
        *,
        evidence: str,
        detail: str,
        observed_at: datetime | None = None,
    ) -> bool:
        """Record an effect once; False when this evidence was recorded already."""
        async with self._changing_outcomes(), self.db.write() as conn:
            result = await conn.execute(
                self.db.insert(change_effects)
                .values(
                    change_id=change_id,
                    kind=kind.value,
                    evidence=evidence[:300],
                    detail=detail,
                    observed_at=observed_at or self.clock(),
                )
                .on_conflict_do_nothing()
            )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ history

    async def records(
        self,
        repository: str,
        *,
        since: datetime | None = None,
        where: Any = None,
        limit: int | None = None,
        with_spend: bool = True,
    ) -> list[ChangeRecord]:
        """The repository's changes with their effects and spend, oldest decision first
        (``with_spend`` False: spend left at 0, for readers that only judge outcomes)."""
        query = select(changes).where(changes.c.repository == repository)
        if since is not None:
            query = query.where(changes.c.decided_at >= since)
        if where is not None:
            query = query.where(where)
        if limit is not None:
            query = query.order_by(changes.c.id.desc()).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            ids = [int(r.id) for r in rows]
            effects: dict[int, list[EffectRecord]] = {}
            spend: dict[int, float] = {}
            if ids:
                for e in (
                    await conn.execute(
                        select(change_effects)
                        .where(change_effects.c.change_id.in_(ids))
                        .order_by(change_effects.c.id)
                    )
                ).all():
                    effects.setdefault(int(e.change_id), []).append(
                        EffectRecord(Effect(e.kind), e.evidence, e.detail, e.observed_at)
                    )
            if ids and with_spend:
                numbers = {int(r.pr_number) for r in rows}
                for pr_number, total in (
                    await conn.execute(
                        select(ledger.c.pr_number, func.coalesce(func.sum(ledger.c.cost_usd), 0.0))
                        .where(ledger.c.repository == repository, ledger.c.pr_number.in_(numbers))
                        .group_by(ledger.c.pr_number)
                    )
                ).all():
                    spend[int(pr_number)] = float(total)
        records = [
            replace(
                _change(r),
                merged_at=r.merged_at,
                merge_sha=r.merge_sha,
                merged_by_bot=r.merged_by_bot,
                window_ends_at=r.window_ends_at,
                effects=tuple(effects.get(int(r.id), ())),
                spend_usd=spend.get(int(r.pr_number), 0.0),
            )
            for r in rows
        ]
        return sorted(records, key=lambda c: (c.decided_at, c.id))

    async def summary_line(self, repository: str, *, at: datetime) -> str:
        """The check run's feedback line for ``repository`` (``report.summary_line``).

        Every review shows it, and it reads the repository's whole history: the line is read
        once and reused for :data:`SUMMARY_TTL`, by every review that asks meanwhile (a burst
        of reviews shares one read). A merge, a close or an effect recorded through any
        FeedbackStore of this process drops it at once; another replica's, within the TTL.
        A new decision does not change it: an open change is not settled.
        """
        cached = _summaries.setdefault(self.db, {})
        entry = cached.get(repository)
        if entry is None or not entry.usable(at):
            entry = _Summary(at, asyncio.ensure_future(self._read_summary(repository, at)))
            cached[repository] = entry
        return await asyncio.shield(entry.line)

    async def _read_summary(self, repository: str, at: datetime) -> str:
        history = await self.records(repository, with_spend=False)
        return summary_line(build_report(repository, history, at=at))

    async def repositories(self) -> list[str]:
        """Every repository with a registered change, by name."""
        async with self.db.read() as conn:
            query = select(changes.c.repository).distinct().order_by(changes.c.repository)
            return [str(name) for name in (await conn.execute(query)).scalars()]

    async def open_with_decision(
        self, decision: str, repositories: Collection[str] | None = None, *, limit: int = 200
    ) -> list[ChangeRecord]:
        """Open pull requests whose last decision was ``decision``, oldest first (no effects:
        nothing is merged yet). ``escalate``: the escalations still waiting for a human."""
        query = (
            select(changes)
            .where(changes.c.decision == decision, changes.c.state == "open")
            .order_by(changes.c.decided_at, changes.c.id)
            .limit(limit)
        )
        if repositories is not None:
            query = query.where(changes.c.repository.in_(list(repositories)))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_change(r) for r in rows]

    async def tightening(
        self, repository: str, rules: Rules = DEFAULT_RULES, *, now: datetime | None = None
    ) -> Tightening:
        """Whether the repository's autonomy is stepped down now, from its history."""
        now = now or self.clock()
        history = await self.records(
            repository, where=_WOULD_BE_MERGES, limit=HISTORY_LIMIT, with_spend=False
        )
        outcomes: list[tuple[datetime, bool]] = []
        for change in history:
            settled = settle(change, now)
            if settled.outcome.settled and settled.since is not None and settled.since <= now:
                outcomes.append((settled.since, settled.outcome.bad))
        async with self.db.read() as conn:
            resets = (await conn.execute(_RESETS, {"repository": repository, "now": now})).scalars()
            reset_times: Sequence[datetime] = list(resets)
        return evaluate(outcomes, reset_times, rules)

    async def reset(self, repository: str, *, by: str) -> None:
        """An admin lifts the tightening; outcomes known before now no longer count."""
        async with self.db.write() as conn:
            await conn.execute(
                autonomy_resets.insert().values(
                    repository=repository, reset_by=by, reset_at=self.clock()
                )
            )


def _register_change(db: Database) -> Any:
    """The upsert of a pull request's change (values as parameters): a merged change keeps the
    decision it was merged under."""
    stmt = db.insert(changes)
    return stmt.on_conflict_do_update(
        index_elements=[changes.c.repository, changes.c.pr_number],
        set_={
            name: stmt.excluded[name]
            for name in (
                "decision_id",
                "head_sha",
                "tier",
                "confidence",
                "decision",
                "untightened_decision",
                "acted",
                "decided_at",
                "state",
            )
        },
        where=changes.c.state != "merged",
    )


#: Changes the bot would have merged by itself, merged or with an effect: what the tightening
#: judges. Built once: every review asks.
_WOULD_BE_MERGES = and_(
    changes.c.untightened_decision == "auto_merge",
    or_(changes.c.state == "merged", changes.c.id.in_(select(change_effects.c.change_id))),
)


_RESETS = select(autonomy_resets.c.reset_at).where(
    autonomy_resets.c.repository == bindparam("repository"),
    autonomy_resets.c.reset_at <= bindparam("now"),
)


def _change(r: Any) -> ChangeRecord:
    """A ``changes`` row as the bot decided it; ``records`` adds what the merge added."""
    return ChangeRecord(
        id=int(r.id),
        repository=r.repository,
        pr_number=int(r.pr_number),
        head_sha=r.head_sha,
        tier=r.tier,
        confidence=r.confidence,
        decision=r.decision,
        acted=bool(r.acted),
        decided_at=r.decided_at,
        state=r.state,
    )
