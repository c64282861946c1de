"""The reconciliation's rows: ledger rows and their logs in, corrections and discrepancies out."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.ledger.reconcile import Kind, LedgerCall, Reconciliation
from app.quota import CallOutcome
from app.store.db import Database
from app.store.tables import ledger, ledger_discrepancies, ledger_logs, ledger_reconciliations
from app.store.types import utcnow

__all__ = ["DiscrepancyRow", "LedgerReconcileStore", "SpendSides"]

#: Bound on the values of one ``IN (...)`` (SQLite allows 32766 parameters, asyncpg 32767).
_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class DiscrepancyRow:
    id: int
    kind: Kind
    log_id: str
    at: datetime
    ledger_id: int | None
    repository: str | None
    purpose: str | None
    model: str | None
    cost_usd: float | None
    detail: str
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class SpendSides:
    """A repository's ledger spend in a range: the estimates, and with the gateway's figures."""

    repository: str
    estimated_usd: float
    reconciled_usd: float
    calls: int
    reconciled_calls: int


class LedgerReconcileStore:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def calls_for(
        self, log_ids: Collection[str], *, since: datetime, until: datetime
    ) -> list[LedgerCall]:
        """The rows owning any of ``log_ids``, and the unreconciled rows with logs made in
        ``[since, until)``, each with all its log ids."""
        ids: set[int] = set()
        async with self.db.read() as conn:
            wanted = list(log_ids)
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                ids.update(
                    (
                        await conn.execute(
                            select(ledger_logs.c.ledger_id).where(ledger_logs.c.log_id.in_(chunk))
                        )
                    ).scalars()
                )
            ids.update(
                (
                    await conn.execute(
                        select(ledger.c.id)
                        .distinct()
                        .select_from(
                            ledger.join(ledger_logs, ledger_logs.c.ledger_id == ledger.c.id)
                        )
                        .where(
                            ledger.c.at >= since,
                            ledger.c.at < until,
                            ledger.c.reconciled_at.is_(None),
                            ledger.c.outcome != CallOutcome.REFUSED.value,
                        )
                    )
                ).scalars()
            )
            return await _calls(conn, sorted(ids))

    async def apply(
        self,
        result: Reconciliation,
        *,
        started_at: datetime,
        since: datetime,
        until: datetime,
        logs_seen: int,
    ) -> int:
        """Store the corrections and per-log figures, record new discrepancies and resolve the
        ones these logs answer, and the run itself; returns how many discrepancies are new."""
        now = self.clock()
        new = 0
        async with self.db.write() as conn:
            for correction in result.corrections:
                await conn.execute(
                    update(ledger)
                    .where(ledger.c.id == correction.ledger_id)
                    .values(
                        gateway_cost_usd=correction.cost_usd,
                        gateway_input_tokens=correction.input_tokens,
                        gateway_output_tokens=correction.output_tokens,
                        gateway_cached=correction.cached,
                        reconciled_at=now,
                    )
                )
            for _, log in result.matched:
                await conn.execute(
                    update(ledger_logs)
                    .where(ledger_logs.c.log_id == log.id)
                    .values(
                        cost_usd=log.cost,
                        input_tokens=log.tokens_in,
                        output_tokens=log.tokens_out,
                        cached=log.cached,
                        logged_at=log.created_at,
                        seen_at=now,
                    )
                )
            for d in result.discrepancies:
                inserted = (
                    await conn.execute(
                        self.db.insert(ledger_discrepancies)
                        .values(
                            kind=d.kind.value,
                            log_id=d.log_id[:200],
                            ledger_id=d.ledger_id,
                            repository=d.repository,
                            purpose=(d.purpose or "")[:16] or None,
                            provider=(d.provider or "")[:50] or None,
                            model=(d.model or "")[:200] or None,
                            at=d.at,
                            cost_usd=d.cost_usd,
                            detail=d.detail,
                            detected_at=now,
                        )
                        .on_conflict_do_nothing()
                        .returning(ledger_discrepancies.c.id)
                    )
                ).first()
                new += inserted is not None
            await _resolve(conn, [log.id for _, log in result.matched], now)
            await conn.execute(
                ledger_reconciliations.insert().values(
                    started_at=started_at,
                    since=since,
                    until=until,
                    logs_seen=logs_seen,
                    rows_corrected=sum(1 for c in result.corrections if c.first),
                    discrepancies=new,
                )
            )
        return new

    async def last_until(self) -> datetime | None:
        """Where the last run's range ended."""
        async with self.db.read() as conn:
            value: datetime | None = (
                await conn.execute(select(func.max(ledger_reconciliations.c.until)))
            ).scalar()
        return value

    async def open_discrepancies(self, *, limit: int = 100) -> list[DiscrepancyRow]:
        """Unresolved discrepancies, newest first."""
        d = ledger_discrepancies
        query = (
            select(d).where(d.c.resolved_at.is_(None)).order_by(d.c.at.desc(), d.c.id.desc())
        ).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DiscrepancyRow(
                id=row.id,
                kind=Kind(row.kind),
                log_id=row.log_id,
                at=row.at,
                ledger_id=row.ledger_id,
                repository=row.repository,
                purpose=row.purpose,
                model=row.model,
                cost_usd=row.cost_usd,
                detail=row.detail,
                detected_at=row.detected_at,
            )
            for row in rows
        ]

    async def open_counts(self) -> dict[Kind, int]:
        """Unresolved discrepancies by kind (every kind, zero included)."""
        d = ledger_discrepancies
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(d.c.kind, func.count())
                    .where(d.c.resolved_at.is_(None))
                    .group_by(d.c.kind)
                )
            ).all()
        counts = dict.fromkeys(Kind, 0)
        for kind, count in rows:
            counts[Kind(kind)] = int(count)
        return counts

    async def spend_sides(self, *, since: datetime, until: datetime) -> list[SpendSides]:
        """Per repository, the ledger's estimated and reconciled spend of calls in the range."""
        billed = ledger.c.outcome != CallOutcome.REFUSED.value
        query = (
            select(
                ledger.c.repository,
                func.coalesce(func.sum(ledger.c.cost_usd), 0.0),
                func.coalesce(
                    func.sum(func.coalesce(ledger.c.gateway_cost_usd, ledger.c.cost_usd)), 0.0
                ),
                func.count(),
                func.count(ledger.c.reconciled_at),
            )
            .where(billed, ledger.c.at >= since, ledger.c.at < until)
            .group_by(ledger.c.repository)
            .order_by(ledger.c.repository)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [SpendSides(str(r[0]), float(r[1]), float(r[2]), int(r[3]), int(r[4])) for r in rows]


async def _calls(conn: AsyncConnection, ids: Sequence[int]) -> list[LedgerCall]:
    calls: list[LedgerCall] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        logs: dict[int, list[str]] = {}
        for ledger_id, log_id in (
            await conn.execute(
                select(ledger_logs.c.ledger_id, ledger_logs.c.log_id)
                .where(ledger_logs.c.ledger_id.in_(chunk))
                .order_by(ledger_logs.c.log_id)
            )
        ).all():
            logs.setdefault(int(ledger_id), []).append(log_id)
        rows = (await conn.execute(select(ledger).where(ledger.c.id.in_(chunk)))).all()
        calls += [_call(row, logs.get(int(row.id), ())) for row in rows]
    return sorted(calls, key=lambda c: c.ledger_id)


def _call(row: Any, log_ids: Iterable[str]) -> LedgerCall:
    return LedgerCall(
        ledger_id=int(row.id),
        at=row.at,
        repository=row.repository,
        purpose=row.purpose,
        provider=row.provider,
        model=row.model,
        cost_usd=row.cost_usd,
        log_ids=tuple(log_ids),
        reconciled=row.reconciled_at is not None,
    )


async def _resolve(conn: AsyncConnection, log_ids: Sequence[str], now: datetime) -> None:
    """Logs now matched to a row answer both kinds of discrepancy about them."""
    d = ledger_discrepancies
    for start in range(0, len(log_ids), _CHUNK):
        chunk = list(log_ids[start : start + _CHUNK])
        await conn.execute(
            update(d)
            .where(and_(d.c.resolved_at.is_(None), d.c.log_id.in_(chunk)))
            .values(resolved_at=now)
        )
