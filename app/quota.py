"""Budgets, reservations and the cost ledger: nothing the bot does costs more than a repository allows.

Each repository may set three budgets in its config (``quota:``), capped by the server operator:

* ``daily_usd``: the UTC calendar day (resets at 00:00 UTC);
* ``weekly_usd``: the ISO week (resets on Monday at 00:00 UTC);
* ``per_pr_usd``: every push of one pull request, all time (never resets).

**Reserve, call, settle.** Before a model call the caller reserves the call's *maximum* cost
(:func:`estimate_call_cost`: prompt tokens counted, output at its cap, the repair round included).
The reservation is granted only if, in every window that applies, settled actual costs plus the
amounts still held by open reservations plus this amount stay within the budget. After the call
the reservation is settled with what the provider billed, which releases the rest. Because money
is held *before* it can be spent, concurrent reviews can never overspend together: each one sees
the others' calls in flight at their maximum.

**Atomicity.** The check and the insert are one write transaction per reservation:

* on PostgreSQL, the transaction first takes ``pg_advisory_xact_lock`` keyed by the repository, so
  reservations for one repository are serialised across every process and connection pool, while
  different repositories never wait for each other; under READ COMMITTED each statement after the
  lock sees every reservation committed before it;
* on SQLite, :class:`~app.store.db.Database` queues writers of one process on a lock, and the
  reservation is *inserted first* and checked after (deleted again when it does not fit): the
  insert takes SQLite's write lock before anything is read, so even a second process on the same
  file cannot read a stale total and overspend.

**Reservations a crash left open** (the process died between reserving and settling) would
hold their full amount for good; the sweeper (``app.sweep.reservations``) settles those older
than ``RESERVATION_TIMEOUT_SECONDS`` at what the ledger recorded against them
(:meth:`QuotaLedger.release_stale`).

**What counts as spend** in a window: reservations created in it (settled at their actual cost,
open at their full amount), plus ledger rows that carry a cost but no reservation (a call someone
made without reserving must still be paid for). Ledger rows with a reservation are not added again.
Once reconciliation (``app.ledger``) has stored the gateway's own cost for a row, that cost counts
instead of the estimate: for a reserved row, as the difference added in its reservation's window.

**Unpriced models.** :func:`estimate_call_cost` returns None for a model with no price. Such a
call cannot be budgeted, so for a repository with any budget the planner never keeps it: with
``downgrade`` it steps down to a priced model of the ladder, with ``skip`` (or when no priced model
fits) the review is skipped. A repository without budgets may use any model; its calls are
recorded with their tokens and no cost.

**How the pipeline uses this** (wired by the pipeline, not here)::

    report = await ledger.spend(repo, pr_number=pr, budget=quota)
    plan = plan_models(wanted=models, estimate=review_cost, remaining=report.remaining_usd,
                       on_exhausted=quota.on_exhausted, limiting=report.limiting_label)
    if plan.skip: record "refused" ledger rows, complete the check run neutral with
                  format_spend_report(report), and comment only if should_notify_exhausted(...)
    else: granted = await ledger.reserve(...)      # a Refusal here means a concurrent review won
          call the models; await ledger.record_model_call(...); await ledger.settle(...)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    union,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from app.gateway.clients import CallMetadata
from app.gateway.pricing import PRICES, ModelPrice, max_cost
from app.repo_config import OnExhausted, QuotaConfig, RepoConfig, apply_operator_ceilings
from app.review.tokens import estimate_tokens
from app.store.db import Database
from app.store.tables import ledger, ledger_logs, quota_budgets, quota_notices, reservations
from app.store.types import utcnow

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = [
    "DEFAULT_LADDERS",
    "DEFAULT_OVERHEAD_TOKENS",
    "EPSILON_USD",
    "PR_WINDOW_KEY",
    "REPAIR_SLACK_TOKENS",
    "BilledCall",
    "BudgetKind",
    "BudgetStatus",
    "CallOutcome",
    "Downgrade",
    "LedgerEntry",
    "Plan",
    "QuotaLedger",
    "Refusal",
    "Reservation",
    "SpendReport",
    "StaleRelease",
    "Window",
    "day_window",
    "estimate_call_cost",
    "format_spend_report",
    "format_usd",
    "plan_calls",
    "plan_models",
    "purpose_of",
    "week_window",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: Float sums of cents are not exact: a call that fits to the last nano-dollar must not be refused.
EPSILON_USD: Final = 1e-9
#: Input tokens a call sends besides the prompt text: the output schema as a tool definition
#: (about 720 tokens for ``review-output.schema.json``) and message framing.
DEFAULT_OVERHEAD_TOKENS: Final = 1000
#: The repair round's own words (the validation problem and the request to fix it).
REPAIR_SLACK_TOKENS: Final = 400
#: ``pg_advisory_xact_lock(class, key)``: the two-key space never meets the one-key space used
#: by migrations, and ``class`` keeps quota locks apart from any other two-key user.
_PG_LOCK_CLASS: Final = 0x71756F74  # "quot"

#: Model ladders, most to least capable. The planner only ever steps *down* from the configured
#: model; an operator can pass other ladders (e.g. when a provider renames its models).
DEFAULT_LADDERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "anthropic": ("claude-opus-4-1", "claude-sonnet-4-6", "claude-haiku-4-5"),
        "openai": ("gpt-5", "gpt-5-mini", "gpt-5-nano"),
    }
)


# ---------------------------------------------------------------------------------- windows


class BudgetKind(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    PER_PR = "per_pr"

    @property
    def label(self) -> str:
        """How a sentence names it: ``"daily budget"``, ``"per-PR budget"``."""
        return {"daily": "daily budget", "weekly": "weekly budget", "per_pr": "per-PR budget"}[
            self.value
        ]


@dataclass(frozen=True, slots=True)
class Window:
    """A budget window ``[start, end)`` and its key (``"day:2026-11-24"``, ``"week:2026-W48"``)."""

    kind: BudgetKind
    start: datetime
    end: datetime
    key: str


def day_window(now: datetime) -> Window:
    """The UTC calendar day containing ``now`` (an aware datetime)."""
    start = _utc_midnight(now)
    return Window(BudgetKind.DAILY, start, start + timedelta(days=1), f"day:{start.date()}")


def week_window(now: datetime) -> Window:
    """The ISO week containing ``now``: Monday 00:00 UTC to the next Monday."""
    start = _utc_midnight(now) - timedelta(days=now.astimezone(UTC).weekday())
    year, week, _ = start.isocalendar()
    return Window(BudgetKind.WEEKLY, start, start + timedelta(days=7), f"week:{year}-W{week:02d}")


PR_WINDOW_KEY: Final = "pr"


def _utc_midnight(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; use aware UTC")
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money held for one call (or one review) until it is settled."""

    id: int
    repository: str
    pr_number: int | None
    amount_usd: float
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StaleRelease:
    """A reservation left open by a review that never settled it, released by the sweeper:
    what it held, and what the ledger recorded against it (now its actual cost)."""

    id: int
    repository: str
    pr_number: int | None
    created_at: datetime
    amount_usd: float
    recorded_usd: float


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget's window: its limit (None: unlimited), what is spent or held in it, its reset."""

    kind: BudgetKind
    limit_usd: float | None
    spent_usd: float
    window_key: str
    resets_at: datetime | None  # None: never (per-PR budgets)

    @property
    def remaining_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self.spent_usd)

    @property
    def exhausted(self) -> bool:
        return self.limit_usd is not None and self.spent_usd >= self.limit_usd - EPSILON_USD

    @property
    def label(self) -> str:
        return self.kind.label


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was not granted: the budget that blocks it and when it frees up.

    ``budget`` is the blocking budget that resets last (``per_pr`` never does), because the
    review cannot run before every blocking budget has reset; ``also`` names the others.
    """

    budget: BudgetKind
    limit_usd: float
    spent_usd: float
    requested_usd: float
    window_key: str
    resets_at: datetime | None
    also: tuple[BudgetKind, ...] = ()

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.limit_usd - self.spent_usd)

    @property
    def message(self) -> str:
        return (
            f"the {self.budget.label} of {format_usd(self.limit_usd)} cannot cover "
            f"{format_usd(self.requested_usd)}: {format_usd(self.spent_usd)} is spent or reserved, "
            f"{format_usd(self.remaining_usd)} remains; {_resets_phrase(self.resets_at)}"
        )


@dataclass(frozen=True, slots=True)
class SpendReport:
    """Spend against each budget of one repository (and one PR when ``pr_number`` is given)."""

    repository: str
    pr_number: int | None
    at: datetime
    daily: BudgetStatus
    weekly: BudgetStatus
    per_pr: BudgetStatus | None

    @property
    def budgets(self) -> tuple[BudgetStatus, ...]:
        return (self.daily, self.weekly) + ((self.per_pr,) if self.per_pr is not None else ())

    @property
    def limiting(self) -> BudgetStatus | None:
        """The limited budget with the least left (ties: the one that resets last)."""
        limited = [b for b in self.budgets if b.remaining_usd is not None]
        if not limited:
            return None
        return min(limited, key=lambda b: (b.remaining_usd, -_reset_order(b.resets_at)))

    @property
    def remaining_usd(self) -> float | None:
        """What every budget still allows; None when no budget is set."""
        binding = self.limiting
        return None if binding is None else binding.remaining_usd

    @property
    def limiting_label(self) -> str:
        binding = self.limiting
        return binding.label if binding is not None else "budget"

    @property
    def has_budget(self) -> bool:
        return self.limiting is not None


class CallOutcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    REFUSED = "refused"  # refused by a budget: no request was sent


class BilledCall(Protocol):
    """What the ledger reads of a finished model call: ``ReviewCall`` and ``AnswerCall`` fit."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def log_id(self) -> str | None: ...
    @property
    def log_ids(self) -> Sequence[str]: ...
    @property
    def ok(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    at: datetime
    installation_id: int | None
    repository: str
    pr_number: int | None
    delivery_id: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float | None
    log_id: str | None
    outcome: CallOutcome
    reservation_id: int | None
    purpose: str = "review"
    gateway_cost_usd: float | None = None
    reconciled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DailySpend:
    """What one repository's model calls cost on one UTC day (refused calls cost nothing)."""

    repository: str
    day: date
    cost_usd: float
    calls: int
    #: The same calls at the gateway's own cost where reconciliation has found it (``app.ledger``),
    #: at the estimate elsewhere; and how many of them were reconciled.
    reconciled_usd: float = 0.0
    reconciled_calls: int = 0


@dataclass(frozen=True, slots=True)
class KnownBudget:
    """The budgets last applied to a repository's reservations, and when (``quota_budgets``)."""

    repository: str
    daily_usd: float | None
    weekly_usd: float | None
    per_pr_usd: float | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class _Limits:
    daily: float | None
    weekly: float | None
    per_pr: float | None

    @classmethod
    def of(cls, budget: QuotaConfig) -> _Limits:
        return cls(budget.daily_usd, budget.weekly_usd, budget.per_pr_usd)

    def any_for(self, pr_number: int | None) -> bool:
        return (
            self.daily is not None
            or self.weekly is not None
            or (self.per_pr is not None and pr_number is not None)
        )


# ---------------------------------------------------------------------------------- the ledger


class QuotaLedger:
    """Reservations, settlements, ledger rows and exhaustion notices, on SQLite or PostgreSQL."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    # ---------------------------------------------------------------- reserving

    async def reserve(
        self,
        *,
        repository: str,
        pr_number: int | None,
        amount_usd: float,
        budget: QuotaConfig,
    ) -> Reservation | Refusal:
        """Hold ``amount_usd`` against every budget that applies, or say which one cannot pay.

        A repository without budgets is always granted (the reservation is still recorded, so
        spend reports and a budget added later see the money). ``budget`` is the effective
        quota (after :func:`~app.repo_config.apply_operator_ceilings`).
        """
        if not math.isfinite(amount_usd) or amount_usd < 0:
            raise ValueError(f"amount_usd must be a finite number >= 0, not {amount_usd!r}")
        now = self._clock()
        limits = _Limits.of(budget)
        async with self._db.write() as conn:
            if self._db.is_postgres and limits.any_for(pr_number):
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                    {"cls": _PG_LOCK_CLASS, "key": _lock_key(repository)},
                )
            # Insert before reading: on SQLite this takes the write lock first (see the module
            # docstring); the totals below then include this reservation.
            reservation_id = (
                await conn.execute(
                    _INSERT_RESERVATION,
                    {
                        "repository": repository,
                        "pr_number": pr_number,
                        "created_at": now,
                        "amount_usd": amount_usd,
                        "settled": False,
                    },
                )
            ).scalar_one()
            await self._remember_budget(conn, repository, limits, now)
            if limits.any_for(pr_number):
                report = await self._report(conn, repository, pr_number, now, limits)
                blocked = [
                    b
                    for b in report.budgets
                    if b.limit_usd is not None and b.spent_usd > b.limit_usd + EPSILON_USD
                ]
                if blocked:
                    await conn.execute(
                        delete(reservations).where(reservations.c.id == reservation_id)
                    )
                    return _refusal(blocked, amount_usd)
        return Reservation(
            id=reservation_id,
            repository=repository,
            pr_number=pr_number,
            amount_usd=amount_usd,
            created_at=now,
        )

    async def settle(self, reservation: Reservation | int, *, actual_usd: float) -> bool:
        """Replace the held amount by what the call cost; False if it was already settled.

        The actual cost may exceed the reservation (the estimate is a rule of thumb); it is
        recorded as billed, and the next reservation sees it.
        """
        if not math.isfinite(actual_usd) or actual_usd < 0:
            raise ValueError(f"actual_usd must be a finite number >= 0, not {actual_usd!r}")
        reservation_id = reservation if isinstance(reservation, int) else reservation.id
        if (
            isinstance(reservation, Reservation)
            and actual_usd > reservation.amount_usd + EPSILON_USD
        ):
            logger.warning(
                "a call cost more than its reservation",
                extra={
                    "repository": reservation.repository,
                    "reserved_usd": reservation.amount_usd,
                    "actual_usd": actual_usd,
                },
            )
        async with self._db.write() as conn:
            result = await conn.execute(
                _SETTLE_RESERVATION,
                {
                    "_id": reservation_id,
                    "settled": True,
                    "settled_at": self._clock(),
                    "actual_usd": actual_usd,
                },
            )
            return bool(result.rowcount)

    async def release(self, reservation: Reservation | int) -> bool:
        """Give the whole amount back: the call failed before anything was billed."""
        return await self.settle(reservation, actual_usd=0.0)

    async def release_stale(
        self, *, older_than: timedelta, batch_size: int = 500
    ) -> list[StaleRelease]:
        """Settle every reservation open for longer than ``older_than`` at what the ledger
        recorded for it; return what was released.

        A process that dies between reserving and settling leaves its reservation open, and an
        open reservation counts at its full amount for good: the repository's budget shrinks
        with every crash. ``older_than`` must exceed the longest review, since a reservation
        settled here can no longer be settled by its review. What the ledger recorded against
        the reservation was billed, so that much stays spent; the rest is released. Safe to
        run from several replicas at once: a reservation is released by one of them.
        """
        cutoff = self._clock() - older_than
        r = reservations
        recorded = (
            select(func.coalesce(func.sum(ledger.c.cost_usd), 0.0))
            .where(
                ledger.c.reservation_id == r.c.id,
                ledger.c.outcome != CallOutcome.REFUSED.value,
            )
            .scalar_subquery()
        )
        still_open = and_(r.c.settled.is_(False), r.c.created_at < cutoff)
        oldest = select(r.c.id).where(still_open).order_by(r.c.created_at, r.c.id).limit(batch_size)
        statement = (
            update(r)
            .where(r.c.id.in_(oldest.scalar_subquery()), still_open)
            .values(settled=True, settled_at=self._clock(), actual_usd=recorded)
            .returning(
                r.c.id,
                r.c.repository,
                r.c.pr_number,
                r.c.created_at,
                r.c.amount_usd,
                r.c.actual_usd,
            )
        )
        released: list[StaleRelease] = []
        while True:
            async with self._db.write() as conn:
                rows = (await conn.execute(statement)).all()
            released += [
                StaleRelease(
                    id=row.id,
                    repository=row.repository,
                    pr_number=row.pr_number,
                    created_at=row.created_at,
                    amount_usd=row.amount_usd,
                    recorded_usd=float(row.actual_usd or 0.0),
                )
                for row in rows
            ]
            if len(rows) < batch_size:
                return sorted(released, key=lambda item: (item.created_at, item.id))

    # ---------------------------------------------------------------- the ledger

    async def record_call(
        self,
        *,
        repository: str,
        pr_number: int | None,
        installation_id: int | None,
        delivery_id: str | None,
        provider: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        cost_usd: float | None,
        log_id: str | None = None,
        outcome: CallOutcome | str,
        reservation_id: int | None = None,
        log_ids: Sequence[str] = (),
        purpose: str | None = None,
    ) -> int:
        """One ledger row per model call, refused ones included (zero tokens); returns its id.

        ``cost_usd`` None means the model has no price. A row with a cost and no
        ``reservation_id`` counts towards the budgets by itself. ``log_ids`` are every gateway
        log of the call (a repair round or a retry is a request of its own), ``log_id`` the
        last; reconciliation (``app.ledger``) matches the gateway's logs to the row by them.
        ``purpose`` (review, ask, api) defaults to what the delivery id tells
        (``ask:``/``api:`` prefixes).
        """
        async with self._db.write() as conn:
            row = {
                "purpose": purpose or purpose_of(delivery_id),
                "at": self._clock(),
                "installation_id": installation_id,
                "repository": repository,
                "pr_number": pr_number,
                "delivery_id": delivery_id,
                "provider": provider,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_input_tokens": cached_input_tokens,
                "cost_usd": cost_usd,
                "log_id": log_id,
                "outcome": CallOutcome(outcome).value,
                "reservation_id": reservation_id,
            }
            ledger_id = int((await conn.execute(_INSERT_LEDGER_ROW, row)).scalar_one())
            logs = list(dict.fromkeys([*log_ids, *([log_id] if log_id else [])]))
            if logs:
                await conn.execute(
                    self._db.insert_or_skip(ledger_logs),
                    [{"log_id": log[:200], "ledger_id": ledger_id} for log in logs],
                )
            return ledger_id

    async def record_model_call(
        self,
        call: BilledCall,
        *,
        metadata: CallMetadata,
        reservation_id: int | None = None,
        delivery_id: str | None = None,
    ) -> int:
        """:meth:`record_call` for a finished ``review()`` or ``answer()``: ok when it answered.

        ``metadata`` is the one sent with the call, so the ledger and the gateway's logs agree;
        ``delivery_id`` replaces its delivery in the row where the ledger marks what the call
        was for (``ask:`` rows, see :func:`purpose_of`).
        """
        return await self.record_call(
            repository=metadata.repository or "",
            pr_number=metadata.pr,
            installation_id=metadata.installation,
            delivery_id=delivery_id or metadata.delivery,
            provider=call.provider,
            model=call.model,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cached_input_tokens=call.cached_input_tokens,
            cost_usd=call.cost_usd,
            log_id=call.log_id,
            log_ids=call.log_ids,
            outcome=CallOutcome.OK if call.ok else CallOutcome.ERROR,
            reservation_id=reservation_id,
        )

    async def record_refused(
        self,
        metadata: CallMetadata,
        wanted: Mapping[str, str],
        *,
        delivery_id: str | None = None,
    ) -> None:
        """One ``refused`` row (no tokens, no cost) per wanted model (provider → model): what a
        budget that refused the calls leaves, so the ledger shows what was not sent."""
        for provider, model in wanted.items():
            await self.record_call(
                repository=metadata.repository or "",
                pr_number=metadata.pr,
                installation_id=metadata.installation,
                delivery_id=delivery_id or metadata.delivery,
                provider=provider,
                model=model,
                cost_usd=0.0,
                outcome=CallOutcome.REFUSED,
            )

    async def entries(
        self, repository: str | None = None, *, limit: int = 100
    ) -> list[LedgerEntry]:
        """The newest ledger rows first, of one repository or all."""
        query = select(ledger).order_by(ledger.c.at.desc(), ledger.c.id.desc()).limit(limit)
        if repository is not None:
            query = query.where(ledger.c.repository == repository)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LedgerEntry(
                id=row.id,
                at=row.at,
                installation_id=row.installation_id,
                repository=row.repository,
                pr_number=row.pr_number,
                delivery_id=row.delivery_id,
                provider=row.provider,
                model=row.model,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                cached_input_tokens=row.cached_input_tokens,
                cost_usd=row.cost_usd,
                log_id=row.log_id,
                outcome=CallOutcome(row.outcome),
                reservation_id=row.reservation_id,
                purpose=row.purpose,
                gateway_cost_usd=row.gateway_cost_usd,
                reconciled_at=row.reconciled_at,
            )
            for row in rows
        ]

    # ---------------------------------------------------------------- reporting

    async def spend(
        self,
        repository: str,
        *,
        pr_number: int | None = None,
        now: datetime | None = None,
        budget: QuotaConfig | None = None,
    ) -> SpendReport:
        """Spend (settled + held) against each budget; the per-PR line only with ``pr_number``.

        ``budget`` gives the limits; without it, the limits last used to reserve for this
        repository are shown (what ``python -m app quota`` has without reading any config).
        """
        at = now or self._clock()
        async with self._db.read() as conn:
            limits = (
                _Limits.of(budget)
                if budget is not None
                else await self._last_budget(conn, repository)
            )
            return await self._report(conn, repository, pr_number, at, limits)

    async def spend_all(self, *, now: datetime | None = None) -> list[SpendReport]:
        """One report per repository that has ever reserved, spent or had a budget, by name."""
        at = now or self._clock()
        names = union(
            select(reservations.c.repository),
            select(ledger.c.repository),
            select(quota_budgets.c.repository),
        ).subquery()
        async with self._db.read() as conn:
            repositories = list(
                (await conn.execute(select(names.c.repository).order_by(names.c.repository)))
                .scalars()
                .all()
            )
            reports = []
            for repository in repositories:
                limits = await self._last_budget(conn, repository)
                reports.append(await self._report(conn, repository, None, at, limits))
        return reports

    async def repositories(self) -> list[str]:
        """Every repository that has ever reserved, spent or had a budget, by name."""
        names = union(
            select(reservations.c.repository),
            select(ledger.c.repository),
            select(quota_budgets.c.repository),
        ).subquery()
        async with self._db.read() as conn:
            query = select(names.c.repository).order_by(names.c.repository)
            return [str(name) for name in (await conn.execute(query)).scalars()]

    async def daily_spend(
        self,
        *,
        since: datetime,
        until: datetime,
        repositories: Collection[str] | None = None,
    ) -> list[DailySpend]:
        """Ledger costs per repository and UTC day in ``[since, until)`` (None: every repository).

        What the providers billed, as recorded per call; money held by open reservations is not
        spend yet and is not counted here.
        """
        day: ColumnElement[Any] = (
            func.date(ledger.c.at)
            if self._db.is_sqlite
            else func.date(func.timezone("UTC", ledger.c.at))
        )
        query = (
            select(
                ledger.c.repository,
                day.label("day"),
                func.coalesce(func.sum(ledger.c.cost_usd), 0.0),
                func.count(),
                func.coalesce(
                    func.sum(func.coalesce(ledger.c.gateway_cost_usd, ledger.c.cost_usd)), 0.0
                ),
                func.count(ledger.c.reconciled_at),
            )
            .where(
                ledger.c.at >= since,
                ledger.c.at < until,
                ledger.c.outcome != CallOutcome.REFUSED.value,
            )
            .group_by(ledger.c.repository, day)
            .order_by(ledger.c.repository, day)
        )
        if repositories is not None:
            query = query.where(ledger.c.repository.in_(list(repositories)))
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DailySpend(
                repository=row[0],
                day=row[1] if isinstance(row[1], date) else date.fromisoformat(str(row[1])),
                cost_usd=float(row[2]),
                reconciled_usd=float(row[4]),
                reconciled_calls=int(row[5]),
                calls=int(row[3]),
            )
            for row in rows
        ]

    async def known_budgets(
        self, repositories: Collection[str] | None = None
    ) -> dict[str, KnownBudget]:
        """The budgets last applied per repository (see :class:`KnownBudget`)."""
        query = select(quota_budgets)
        if repositories is not None:
            query = query.where(quota_budgets.c.repository.in_(list(repositories)))
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.repository: KnownBudget(
                row.repository, row.daily_usd, row.weekly_usd, row.per_pr_usd, row.updated_at
            )
            for row in rows
        }

    # ---------------------------------------------------------------- notices

    async def should_notify_exhausted(
        self, repository: str, pr_number: int | None, window_key: str
    ) -> bool:
        """True the first time it is asked for this (repository, PR, window), False after.

        Persisted, so a restart or a second replica does not comment again; ask it only when
        about to post, since a True is spent at once.
        """
        statement = (
            self._db.insert(quota_notices)
            .values(
                repository=repository,
                pr_number=pr_number or 0,
                window_key=window_key,
                notified_at=self._clock(),
            )
            .on_conflict_do_nothing()
            .returning(quota_notices.c.window_key)
        )
        async with self._db.write() as conn:
            return (await conn.execute(statement)).first() is not None

    # ---------------------------------------------------------------- internals

    async def _remember_budget(
        self, conn: AsyncConnection, repository: str, limits: _Limits, now: datetime
    ) -> None:
        values = {
            "repository": repository,
            "daily_usd": limits.daily,
            "weekly_usd": limits.weekly,
            "per_pr_usd": limits.per_pr,
            "updated_at": now,
        }
        await conn.execute(self._db.statement("quota_budgets.upsert", _upsert_budget), values)

    async def _last_budget(self, conn: AsyncConnection, repository: str) -> _Limits:
        row = (
            await conn.execute(
                select(quota_budgets).where(quota_budgets.c.repository == repository)
            )
        ).first()
        if row is None:
            return _Limits(None, None, None)
        return _Limits(row.daily_usd, row.weekly_usd, row.per_pr_usd)

    async def _report(
        self,
        conn: AsyncConnection,
        repository: str,
        pr_number: int | None,
        now: datetime,
        limits: _Limits,
    ) -> SpendReport:
        day, week = day_window(now), week_window(now)
        day_spent, week_spent, pr_spent = await _sums(conn, repository, pr_number, day, week)
        per_pr = None
        if pr_number is not None:
            per_pr = BudgetStatus(BudgetKind.PER_PR, limits.per_pr, pr_spent, PR_WINDOW_KEY, None)
        return SpendReport(
            repository=repository,
            pr_number=pr_number,
            at=now,
            daily=BudgetStatus(BudgetKind.DAILY, limits.daily, day_spent, day.key, day.end),
            weekly=BudgetStatus(BudgetKind.WEEKLY, limits.weekly, week_spent, week.key, week.end),
            per_pr=per_pr,
        )


async def _sums(
    conn: AsyncConnection,
    repository: str,
    pr_number: int | None,
    day: Window,
    week: Window,
) -> tuple[float, float, float]:
    """Spend in the day, the week and the PR: reservations plus unreserved ledger costs.

    One statement, built once (:func:`_sums_statement`), in one round trip: every review and
    every model call asks for these sums, often dozens at once.
    """
    params: dict[str, Any] = {
        "repository": repository,
        "day_start": day.start,
        "day_end": day.end,
        "week_start": week.start,
        "week_end": week.end,
    }
    if pr_number is not None:
        params["pr_number"] = pr_number
    totals = [0.0, 0.0, 0.0]
    for row in await conn.execute(_sums_statement(pr_number is not None), params):
        for index, value in enumerate(row):
            totals[index] += float(value or 0.0)
    return totals[0], totals[1], totals[2]


@functools.cache
def _sums_statement(per_pr: bool) -> CompoundSelect[Any]:
    """The spend sums as a UNION ALL of three sources, a row each: the day's, the week's and
    (``per_pr``) the PR's sum in its columns.

    - reservations: a settled one counts its calls' estimated costs, an open one its amount;
    - ledger costs of calls made without a reservation (refused calls are not billed);
    - once reconciliation (``app.ledger``) has stored the gateway's own cost for a reserved call,
      the difference between the two, in the reservation's window, so budgets count what the
      gateway recorded.
    """
    r = reservations
    repository: BindParameter[str] = bindparam("repository")
    charge = case((r.c.settled.is_(True), func.coalesce(r.c.actual_usd, 0.0)), else_=r.c.amount_usd)
    cost = func.coalesce(ledger.c.gateway_cost_usd, ledger.c.cost_usd)
    billed = ledger.c.outcome != CallOutcome.REFUSED.value
    sources = (
        (r.c.created_at, charge, r.c.pr_number, r.c.repository == repository, None),
        (
            ledger.c.at,
            func.coalesce(cost, 0.0),
            ledger.c.pr_number,
            and_(
                ledger.c.repository == repository,
                ledger.c.reservation_id.is_(None),
                cost.is_not(None),
                billed,
            ),
            None,
        ),
        (
            r.c.created_at,
            ledger.c.gateway_cost_usd - func.coalesce(ledger.c.cost_usd, 0.0),
            r.c.pr_number,
            and_(
                r.c.repository == repository,
                r.c.settled.is_(True),
                ledger.c.gateway_cost_usd.is_not(None),
                billed,
            ),
            ledger.join(r, ledger.c.reservation_id == r.c.id),
        ),
    )
    queries = []
    for at, amount, pr_column, base, joined in sources:
        windows: list[ColumnElement[bool]] = [
            and_(at >= bindparam("day_start"), at < bindparam("day_end")),
            and_(at >= bindparam("week_start"), at < bindparam("week_end")),
        ]
        if per_pr:
            windows.append(pr_column == bindparam("pr_number"))
        query = select(*(_sum_if(window, amount) for window in windows)).where(base, or_(*windows))
        if joined is not None:
            query = query.select_from(joined)
        queries.append(query)
    return union_all(*queries)


def purpose_of(delivery_id: str | None) -> str:
    """What a call was for, by the ledger's delivery id: ``ask:`` and ``api:`` prefixes mark
    the ``ask`` command's and the service API's calls; anything else is a review."""
    prefix = (delivery_id or "").partition(":")[0]
    return prefix if prefix in {"ask", "api"} and ":" in (delivery_id or "") else "review"


#: Built once (values are passed at execution; see ``record_call``).
_INSERT_LEDGER_ROW = insert(ledger).returning(ledger.c.id)


def _upsert_budget(db: Database) -> Any:
    stmt = db.insert(quota_budgets)
    return stmt.on_conflict_do_update(
        index_elements=[quota_budgets.c.repository],
        set_={
            name: stmt.excluded[name]
            for name in ("daily_usd", "weekly_usd", "per_pr_usd", "updated_at")
        },
    )


_INSERT_RESERVATION = insert(reservations).returning(reservations.c.id)
_SETTLE_RESERVATION = update(reservations).where(
    reservations.c.id == bindparam("_id"), reservations.c.settled.is_(False)
)


def _sum_if(condition: ColumnElement[bool], amount: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, amount), else_=0.0)), 0.0)


def _lock_key(repository: str) -> int:
    """A stable signed 32-bit hash of the repository (Python's ``hash`` differs per process)."""
    digest = hashlib.blake2b(repository.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _reset_order(resets_at: datetime | None) -> float:
    return math.inf if resets_at is None else resets_at.timestamp()


def _refusal(blocked: Sequence[BudgetStatus], amount_usd: float) -> Refusal:
    ordered = sorted(blocked, key=lambda b: _reset_order(b.resets_at), reverse=True)
    main = ordered[0]
    assert main.limit_usd is not None
    return Refusal(
        budget=main.kind,
        limit_usd=main.limit_usd,
        spent_usd=max(0.0, main.spent_usd - amount_usd),
        requested_usd=amount_usd,
        window_key=main.window_key,
        resets_at=main.resets_at,
        also=tuple(b.kind for b in ordered[1:]),
    )


# ---------------------------------------------------------------------------------- estimates


def estimate_call_cost(
    model: str,
    *,
    prompt_text: str,
    max_output_tokens: int,
    prices: Mapping[str, ModelPrice] = PRICES,
    rounds: int = 2,
    overhead_tokens: int = DEFAULT_OVERHEAD_TOKENS,
) -> float | None:
    """The most one ``Reviewer.review()`` can cost, or None when ``model`` has no price.

    ``prompt_text`` is everything sent as text (system prompt and user prompt). Every input token
    is priced uncached and the output at its cap. ``rounds=2`` because a review that does not
    validate gets one repair round, which re-sends the prompt plus the first answer: reserving
    for one round only would let a repaired call overspend.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    prompt = estimate_tokens(prompt_text) + overhead_tokens
    input_tokens = prompt + (rounds - 1) * (prompt + max_output_tokens + REPAIR_SLACK_TOKENS)
    return max_cost(
        model,
        input_tokens=input_tokens,
        max_output_tokens=max_output_tokens * rounds,
        prices=prices,
    ).usd


# ---------------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class Downgrade:
    provider: str
    from_model: str
    to_model: str
    reason: str

    def __str__(self) -> str:
        return f"{self.from_model} → {self.to_model}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Plan:
    """The models to call (provider → model), or a skip with its reason."""

    models: Mapping[str, str] = field(default_factory=dict)
    estimated_usd: float | None = None
    downgrades: tuple[Downgrade, ...] = ()
    skip_reason: str | None = None

    @property
    def skip(self) -> bool:
        return self.skip_reason is not None

    @property
    def notes(self) -> list[str]:
        """Lines for the review body: each downgrade, or why the review was skipped."""
        if self.skip_reason is not None:
            return [f"Review skipped: {self.skip_reason}."]
        return [f"Model downgraded ({d.provider}): {d}." for d in self.downgrades]


def plan_models(
    *,
    wanted: Mapping[str, str],
    estimate: Callable[[str], float | None],
    remaining: float | None,
    on_exhausted: OnExhausted,
    ladders: Mapping[str, Sequence[str]] = DEFAULT_LADDERS,
    limiting: str = "budget",
) -> Plan:
    """Which models this review can afford, from what remains of the tightest budget.

    ``wanted`` maps each provider to its configured model; ``estimate(model)`` is the whole
    review's maximum cost on that model (every slice), None when the model has no price;
    ``remaining`` is what every budget still allows (None: no budget); ``limiting`` names the
    budget for messages (``"daily budget"``).

    * No budget: the configured models, priced or not.
    * The configured models fit: keep them.
    * Otherwise with ``skip``: skip.
    * With ``downgrade``: each provider may step down its ladder, from below the configured
      model (or from the top when the model is not on it), never to a model that costs more
      than the configured one and never to an unpriced one. Of the combinations that fit, the
      plan takes the fewest steps down in total, then the highest estimate (the most capable
      use of the money), then the first provider's better model. None fits: skip.

    An unpriced configured model never runs against a budget: its cost cannot be held.
    """
    costs: dict[str, float | None] = {}

    def cost_of(model: str) -> float | None:
        if model not in costs:
            costs[model] = estimate(model)
        return costs[model]

    wanted_costs = [cost_of(model) for model in wanted.values()]
    wanted_total = None if None in wanted_costs else sum(c for c in wanted_costs if c is not None)
    if remaining is None:
        return Plan(models=dict(wanted), estimated_usd=wanted_total)
    if wanted_total is not None and wanted_total <= remaining + EPSILON_USD:
        return Plan(models=dict(wanted), estimated_usd=wanted_total)

    unpriced = [model for model in wanted.values() if cost_of(model) is None]
    if unpriced:
        why = (
            f"no price for {', '.join(unpriced)}, so its cost cannot be held against the {limiting}"
        )
    else:
        assert wanted_total is not None
        why = (
            f"the estimated {format_usd(wanted_total)} exceeds the {format_usd(remaining)} "
            f"left of the {limiting}"
        )
    if on_exhausted is OnExhausted.SKIP:
        return Plan(estimated_usd=wanted_total, skip_reason=f"{why} (on_exhausted: skip)")

    providers = list(wanted)
    options: list[list[tuple[int, str, float]]] = []
    for provider in providers:
        model = wanted[provider]
        own = cost_of(model)
        ladder = list(ladders.get(provider, ()))
        below = ladder[ladder.index(model) + 1 :] if model in ladder else ladder
        choices: list[tuple[int, str, float]] = [] if own is None else [(0, model, own)]
        for step, tier in enumerate(below, start=1):
            tier_cost = cost_of(tier)
            if tier_cost is None or (own is not None and tier_cost > own):
                continue
            choices.append((step, tier, tier_cost))
        if not choices:
            return Plan(
                skip_reason=f"{why}, and no cheaper priced model is on the {provider} ladder"
            )
        options.append(choices)

    fitting = [
        combo
        for combo in itertools.product(*options)
        if sum(c for _, _, c in combo) <= remaining + EPSILON_USD
    ]
    if not fitting:
        cheapest = sum(min(c for _, _, c in choices) for choices in options)
        return Plan(
            estimated_usd=wanted_total,
            skip_reason=(
                f"even the cheapest models would cost an estimated {format_usd(cheapest)}, "
                f"more than the {format_usd(remaining)} left of the {limiting}"
            ),
        )
    best = min(
        fitting,
        key=lambda combo: (sum(s for s, _, _ in combo), -sum(c for _, _, c in combo)),
    )
    downgrades = tuple(
        Downgrade(
            provider=provider,
            from_model=wanted[provider],
            to_model=model,
            reason=limiting
            if cost_of(wanted[provider]) is not None
            else f"no price for {wanted[provider]}",
        )
        for provider, (_, model, _) in zip(providers, best, strict=True)
        if model != wanted[provider]
    )
    return Plan(
        models={provider: model for provider, (_, model, _) in zip(providers, best, strict=True)},
        estimated_usd=sum(c for _, _, c in best),
        downgrades=downgrades,
    )


def plan_calls(
    settings: Settings,
    *,
    wanted: Mapping[str, str],
    report: SpendReport,
    budget: QuotaConfig,
    prompt_text: str,
    max_output_tokens: int,
    rounds: int = 2,
) -> Plan:
    """:func:`plan_models` as reviews, ``ask`` and the service API all plan: every model's most
    for ``prompt_text`` (:func:`estimate_call_cost` over ``rounds``), against what ``report``
    leaves, with the repository's ``on_exhausted`` and the operator's model ladders."""

    def estimate(model: str) -> float | None:
        return estimate_call_cost(
            model, prompt_text=prompt_text, max_output_tokens=max_output_tokens, rounds=rounds
        )

    return plan_models(
        wanted=wanted,
        estimate=estimate,
        remaining=report.remaining_usd,
        on_exhausted=budget.on_exhausted,
        ladders={
            "anthropic": settings.model_ladder_anthropic,
            "openai": settings.model_ladder_openai,
        },
        limiting=report.limiting_label,
    )


# ---------------------------------------------------------------------------------- formatting


def format_usd(value: float) -> str:
    """Dollars to the cent, or to a hundredth of a cent below one cent (single calls are cheap)."""
    if value != 0 and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def _resets_phrase(resets_at: datetime | None) -> str:
    if resets_at is None:
        return "it never resets"
    return f"it resets {_when(resets_at)}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M UTC")


def format_spend_report(report: SpendReport, *, this_review_usd: float | None = None) -> str:
    """A Markdown table of spend against each budget, for the check-run summary and the CLI.

    Markdown because the check run renders it and a terminal reads it as plain text.
    """
    title = f"Spend for {report.repository}"
    if report.pr_number is not None:
        title += f" (PR #{report.pr_number})"
    lines = [f"**{title}**", ""]
    if this_review_usd is not None:
        lines += [f"This review: {format_usd(this_review_usd)}", ""]
    lines += [
        "| budget | window | spent | limit | remaining | resets |",
        "|---|---|---|---|---|---|",
    ]
    for status in report.budgets:
        window = status.window_key.partition(":")[2] or "all pushes"
        limit = "no limit" if status.limit_usd is None else format_usd(status.limit_usd)
        remaining = status.remaining_usd
        left = "—" if remaining is None else format_usd(remaining)
        if status.exhausted:
            left += " (exhausted)"
        resets = "never" if status.resets_at is None else _when(status.resets_at)
        lines.append(
            f"| {status.kind.value} | {window} | {format_usd(status.spent_usd)} | {limit} "
            f"| {left} | {resets} |"
        )
    if not report.has_budget:
        lines += ["", "No budget is set for this repository."]
    return "\n".join(lines)


def repository_budget(settings: Settings, config: RepoConfig) -> QuotaConfig:
    """The budgets a repository's reviews are held to: its own, else the operator's defaults,
    never above the operator's ceilings (reviews, commands and reports all read it here)."""
    return apply_operator_ceilings(
        config.quota,
        daily_max=settings.quota_daily_max_usd,
        weekly_max=settings.quota_weekly_max_usd,
        per_pr_max=settings.quota_per_pr_max_usd,
        daily_default=settings.quota_daily_default_usd,
        weekly_default=settings.quota_weekly_default_usd,
        per_pr_default=settings.quota_per_pr_default_usd,
    )
