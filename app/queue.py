"""The durable delivery queue and the workers that drain it.

A delivery is acknowledged only after it is committed here, so nothing GitHub sent is lost when the
process dies. Work is taken by *claiming* a row with a lease: a worker that dies leaves its lease to
expire and another worker (or the same process after a restart) takes the delivery again. A
delivery whose handler raises is retried with exponential backoff and then kept as ``failed`` with
its error, for ``python -m app deliveries --failed`` and ``replay``.

A handler runs only while its lease holds: the lease is renewed every third of its length, and a
handler whose lease cannot be renewed (another worker holds it, renewals fail or hang) is
cancelled before it can run out, so two workers never run one delivery. Deliveries of one pull
request run one at a time; on PostgreSQL the claim takes the PR's advisory lock to make that hold
across replicas. Handled deliveries are purged after a while by ``app.sweep.deliveries``.

Intake uses group commit (``app.intake``): concurrent webhook requests are stored as a batch in
one transaction, and then every waiting request is answered. Each request still waits for its
own commit, but a burst of fifty deliveries costs one transaction, not fifty.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)

from app.intake import rows as intake_rows
from app.intake.rows import NewDelivery as NewDelivery
from app.intake.rows import store_deliveries
from app.store.db import Database
from app.store.tables import deliveries
from app.store.text import storable
from app.store.types import UTCDateTime, utcnow

log = logging.getLogger(__name__)

# A delivery's status; the two that intake stores are defined with the intake rows.
QUEUED = intake_rows.QUEUED
RUNNING = "running"
DONE = intake_rows.DONE
FAILED = "failed"
#: What the worker pool reports when it stopped a handler whose lease it could not keep.
LEASE_LOST = "lease_lost"

#: ``pg_try_advisory_xact_lock(class, key)`` for claims of one pull request: the two-key space
#: never meets the one-key space of migrations, and the class keeps it apart from the quota's.
PR_LOCK_CLASS: Final = 0x71756575  # "queu"
#: Candidates one PostgreSQL claim looks at before giving up until the next poll.
_MAX_PG_CANDIDATES: Final = 64
#: Finished deliveries deleted per transaction by a purge.
PURGE_BATCH: Final = 500
#: A handler stops when its lease, as last renewed, is this close (a fraction of the lease) to
#: ending unrenewed: room for clock skew between replicas and for the handler to unwind.
LEASE_SAFETY_MARGIN: Final = 0.2


#: A delivery's row, while this holder still holds its lease; the columns in the parameters are
#: set (``_id`` the delivery, ``_holder`` the lease holder). Built once: every delivery ends here.
_UPDATE_LEASED = update(deliveries).where(
    deliveries.c.id == bindparam("_id"), deliveries.c.leased_by == bindparam("_holder")
)


def pr_lock_key(pr_key: str) -> int:
    """A stable signed 32-bit hash of a PR key (Python's ``hash`` differs per process). Two PRs
    that collide only ever make one claim pass over the other's PR for a moment."""
    digest = hashlib.blake2b(pr_key.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    pr_key: str | None
    payload: str
    received_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    finished_at: datetime | None
    # When the lease that came with the claim ends, as the database holds it (None: not leased).
    lease_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(
            id=row.id,
            event=row.event,
            action=row.action,
            installation_id=row.installation_id,
            repository=row.repository,
            pr_key=row.pr_key,
            payload=row.payload,
            received_at=row.received_at,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            finished_at=row.finished_at,
            lease_expires_at=row.lease_expires_at,
        )


def _unique(batch: Sequence[NewDelivery]) -> list[NewDelivery]:
    """The batch without repeated ids (the first of each is kept)."""
    seen: set[str] = set()
    unique: list[NewDelivery] = []
    for item in batch:
        if item.id not in seen:
            seen.add(item.id)
            unique.append(item)
    return unique


class RetryLater(Exception):
    """Raised by a handler to reschedule its delivery at a given time (e.g. a rate-limit reset)."""

    def __init__(self, at: datetime, reason: str) -> None:
        super().__init__(reason)
        self.at = at
        self.reason = reason


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff after the ``attempt``-th failure: base, 2·base, 4·base, … up to cap."""
    return float(min(cap, base * (2 ** max(0, attempt - 1))))


class DeliveryQueue:
    """All queue statements, for SQLite and PostgreSQL alike."""

    def __init__(self, db: Database, *, lease_seconds: float) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self._is_pg = db.is_postgres
        # One process owns a SQLite file: its workers take turns claiming instead of racing for
        # the same rows (each lost race would be a wasted write transaction).
        self._claim_lock = asyncio.Lock()
        self._build_claim_statements()
        # Built once: a fixed statement run with many parameter sets is compiled once and cached.
        self._insert_stmt = (
            db.insert(deliveries)
            .on_conflict_do_nothing(index_elements=[deliveries.c.id])
            .returning(deliveries.c.id)
        )

    # ------------------------------------------------------------------ intake

    async def insert_batch(self, batch: Sequence[NewDelivery]) -> set[str]:
        """Insert deliveries not seen before; return the ids that were new."""
        if self.db.has_batch_writer:
            return await self.db.write_batch(lambda conn: self.store_on_sqlite(conn, batch))
        unique = _unique(batch)
        if not unique:
            return set()
        now = utcnow()
        rows = [
            {
                "id": item.id,
                "event": item.event,
                "action": item.action,
                "installation_id": item.installation_id,
                "repository": item.repository,
                "pr_key": item.pr_key,
                "payload": item.payload,
                "received_at": now,
                "status": QUEUED if item.needs_handling else DONE,
                "attempts": 0,
                "next_attempt_at": now,
                "finished_at": None if item.needs_handling else now,
            }
            for item in unique
        ]
        async with self.db.write(urgent=True) as conn:
            result = await conn.execute(self._insert_stmt, rows)
            return {row[0] for row in result}

    @staticmethod
    def store_on_sqlite(connection: sqlite3.Connection, batch: Sequence[NewDelivery]) -> set[str]:
        """``insert_batch`` with plain ``sqlite3``, for the SQLite writer's thread."""
        return set(store_deliveries(connection, [item.row() for item in batch]))

    # ------------------------------------------------------------------ claiming

    def _build_claim_statements(self) -> None:
        """The claim statements, built once: constructing and compiling them per call cost more
        than running them. Everything that varies is a bound parameter."""
        d = deliveries
        other = deliveries.alias("other")
        now = bindparam("now", type_=UTCDateTime())
        pr_busy = exists(
            select(other.c.id).where(
                other.c.pr_key == d.c.pr_key,
                other.c.status == RUNNING,
                other.c.lease_expires_at >= now,
                other.c.id != d.c.id,
            )
        )
        free = or_(d.c.pr_key.is_(None), ~pr_busy)
        due = and_(d.c.status == QUEUED, d.c.next_attempt_at <= now)
        abandoned = and_(d.c.status == RUNNING, d.c.lease_expires_at < now)
        take = {
            "status": RUNNING,
            "attempts": d.c.attempts + 1,
            "lease_expires_at": bindparam("lease_until", type_=UTCDateTime()),
            "leased_by": bindparam("worker"),
        }

        def candidates(kind: ColumnElement[bool], *, one: bool, limit: int) -> Select[tuple[str]]:
            # One kind at a time: ``status = … ORDER BY received_at`` walks the covering
            # (status, received_at, …) index and stops at the limit; an OR of both kinds would
            # read and sort every queued row, payloads included.
            stmt = select(d.c.id).where(kind, free).order_by(d.c.received_at, d.c.id).limit(limit)
            return stmt.where(d.c.id == bindparam("only_id")) if one else stmt

        kinds = (abandoned, due)  # work whose worker died first: it has waited longest
        self._candidates = {
            one: [candidates(k, one=one, limit=8) for k in kinds] for one in (False, True)
        }
        self._take_by_id = (
            update(d)
            .where(d.c.id == bindparam("delivery_id"), or_(due, abandoned), free)
            .values(**take)
            .returning(*d.c)
        )

        def pick_pg(kind: ColumnElement[bool], *, one: bool) -> Select[tuple[str, str | None]]:
            # One candidate at a time, row-locked so that concurrent claimers pass over it
            # (SKIP LOCKED), leaving out the pull requests this claim found another claimer
            # taking, and rows it could not take.
            not_skipped = and_(
                or_(
                    d.c.pr_key.is_(None),
                    d.c.pr_key.not_in(bindparam("skip_keys", expanding=True)),
                ),
                d.c.id.not_in(bindparam("skip_ids", expanding=True)),
            )
            stmt = candidates(kind, one=one, limit=1).where(not_skipped)
            return stmt.add_columns(d.c.pr_key).with_for_update(skip_locked=True, of=d)

        self._pick_pg = {one: [pick_pg(k, one=one) for k in kinds] for one in (False, True)}
        self._lock_pr = text("SELECT pg_try_advisory_xact_lock(:cls, :key)")

    async def claim(self, worker_id: str, *, only_id: str | None = None) -> Delivery | None:
        """Take the oldest runnable delivery and lease it to ``worker_id``.

        Runnable: queued and due, or running with an expired lease (its worker died). A delivery
        whose pull request already has a live running delivery waits, so two deliveries for one
        PR never run at once.

        On SQLite the candidates are found with a read (no write lock) and taken with a guarded
        update, one worker at a time (one process owns the file, and SQLite has one writer).
        On PostgreSQL replicas claim side by side: see :meth:`_claim_pg`.
        """
        now = utcnow()
        params: dict[str, Any] = {
            "now": now,
            "lease_until": now + self.lease,
            "worker": worker_id,
        }
        if only_id is not None:
            params["only_id"] = only_id
        if self._is_pg:
            return await self._claim_pg(params, one=only_id is not None)
        async with self._claim_lock:
            async with self.db.read() as conn:
                ids = [
                    r[0]
                    for stmt in self._candidates[only_id is not None]
                    for r in await conn.execute(stmt, params)
                ]
            for delivery_id in ids:
                async with self.db.write() as conn:
                    row = (
                        await conn.execute(self._take_by_id, {**params, "delivery_id": delivery_id})
                    ).first()
                if row is not None:
                    return Delivery.from_row(row)
        return None

    async def _claim_pg(self, params: dict[str, Any], *, one: bool) -> Delivery | None:
        """Claim on PostgreSQL, where "no other running delivery of this PR" needs a lock.

        Under READ COMMITTED two claimers each read the other's claim as not yet made, so an
        ``EXISTS`` check alone lets both take a delivery of one pull request. Each candidate is
        therefore row-locked with ``SKIP LOCKED`` (claimers of different rows never wait for each
        other), then its PR's advisory lock is tried (``pg_try_advisory_xact_lock``, held until
        this transaction commits), and only then is it taken by an update whose own ``EXISTS``
        runs on a snapshot taken after the lock: it sees every claim committed by an earlier
        holder. A PR whose lock another claimer holds is being claimed right now: it is passed
        over at once instead of waited for, so claims of other PRs go ahead in parallel.
        """
        skip_keys: list[str] = []
        skip_ids: list[str] = []
        async with self.db.write() as conn:
            for pick in self._pick_pg[one]:
                for _ in range(_MAX_PG_CANDIDATES):
                    skips = {"skip_keys": skip_keys, "skip_ids": skip_ids}
                    candidate = (await conn.execute(pick, {**params, **skips})).first()
                    if candidate is None:
                        break
                    delivery_id, pr_key = candidate.id, candidate.pr_key
                    if pr_key is not None:
                        lock = {"cls": PR_LOCK_CLASS, "key": pr_lock_key(pr_key)}
                        if not (await conn.execute(self._lock_pr, lock)).scalar_one():
                            skip_keys.append(pr_key)
                            continue
                    row = (
                        await conn.execute(self._take_by_id, {**params, "delivery_id": delivery_id})
                    ).first()
                    if row is not None:
                        return Delivery.from_row(row)
                    # Its PR got a running delivery since the candidate was read.
                    skip_ids.append(delivery_id)
        return None

    async def renew_lease(self, delivery_id: str, worker_id: str) -> bool:
        """Extend the lease from now; False when the delivery is no longer leased to this worker.

        The lease runs from the moment the statement is built, not from when it commits, so a
        caller that notes the time before calling knows a moment the lease lasts at least until.
        """
        stmt = (
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.leased_by == worker_id)
            .where(deliveries.c.status == RUNNING)
            .values(lease_expires_at=utcnow() + self.lease)
        )
        async with self.db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def complete(self, delivery_id: str, worker_id: str) -> None:
        await self._finish(delivery_id, worker_id, status=DONE, error=None)

    async def fail(self, delivery_id: str, worker_id: str, error: str) -> None:
        await self._finish(delivery_id, worker_id, status=FAILED, error=error)

    async def _finish(
        self, delivery_id: str, worker_id: str, *, status: str, error: str | None
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                _UPDATE_LEASED,
                {
                    "_id": delivery_id,
                    "_holder": worker_id,
                    "status": status,
                    "finished_at": utcnow(),
                    "lease_expires_at": None,
                    "leased_by": None,
                    "last_error": error,
                },
            )

    async def retry_at(self, delivery_id: str, worker_id: str, at: datetime, error: str) -> None:
        stmt = (
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.leased_by == worker_id)
            .values(
                status=QUEUED,
                next_attempt_at=at,
                lease_expires_at=None,
                leased_by=None,
                last_error=error,
            )
        )
        async with self.db.write() as conn:
            await conn.execute(stmt)

    async def release(self, delivery_id: str, worker_id: str) -> bool:
        """Give a claimed delivery back unfinished (shutdown): queued again at once, the attempt
        its claim counted taken back. False when it was no longer this worker's."""
        d = deliveries
        stmt = (
            update(d)
            .where(d.c.id == delivery_id, d.c.leased_by == worker_id, d.c.status == RUNNING)
            .values(
                status=QUEUED,
                attempts=func.max(d.c.attempts - 1, 0)
                if not self._is_pg
                else func.greatest(d.c.attempts - 1, 0),
                next_attempt_at=utcnow(),
                lease_expires_at=None,
                leased_by=None,
            )
        )
        async with self.db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def release_all_leases(self) -> int:
        """Put every running delivery back in the queue (one process owns a SQLite file)."""
        stmt = (
            update(deliveries)
            .where(deliveries.c.status == RUNNING)
            .values(status=QUEUED, lease_expires_at=None, leased_by=None, next_attempt_at=utcnow())
        )
        async with self.db.write() as conn:
            return (await conn.execute(stmt)).rowcount

    # ------------------------------------------------------------------ inspection

    async def requeue(self, delivery_id: str) -> bool:
        stmt = (
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.status != RUNNING)
            .values(
                status=QUEUED,
                attempts=0,
                next_attempt_at=utcnow(),
                last_error=None,
                finished_at=None,
            )
        )
        async with self.db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def get(self, delivery_id: str) -> Delivery | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))
            ).first()
        return Delivery.from_row(row) if row is not None else None

    async def recent(self, *, status: str | None = None, limit: int = 50) -> list[Delivery]:
        stmt = select(deliveries).order_by(deliveries.c.received_at.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(deliveries.c.status == status)
        async with self.db.read() as conn:
            return [Delivery.from_row(row) for row in await conn.execute(stmt)]

    async def recent_installations(self, limit: int = 20) -> list[int]:
        """The installations of the latest deliveries, newest first: whose tokens to fetch
        ahead of time at start."""
        d = deliveries
        latest = func.max(d.c.received_at)
        stmt = (
            select(d.c.installation_id)
            .where(d.c.installation_id.is_not(None))
            .group_by(d.c.installation_id)
            .order_by(latest.desc())
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [int(row[0]) for row in await conn.execute(stmt)]

    async def depth(self) -> int:
        """Deliveries waiting or in progress."""
        stmt = select(func.count()).where(deliveries.c.status.in_((QUEUED, RUNNING)))
        async with self.db.read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def counts(self) -> dict[str, int]:
        stmt = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        async with self.db.read() as conn:
            return {status: int(n) for status, n in await conn.execute(stmt)}

    async def purge(
        self, status: str, *, finished_before: datetime | None, batch_size: int = PURGE_BATCH
    ) -> int:
        """Delete ``done`` or ``failed`` deliveries (payloads and all) finished before a moment
        (None: whenever); return how many.

        In batches of ``batch_size``, each its own short transaction, so that a purge of a
        year's deliveries never holds the table (or SQLite's one writer) for long: intake and
        the workers write between batches. Never touches queued or running deliveries.
        """
        if status not in (DONE, FAILED):
            raise ValueError(f"only finished deliveries are purged, not {status!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        d = deliveries
        finished = [d.c.status == status]
        if finished_before is not None:
            # A delivery is received before it finishes: the bound on ``received_at`` lets the
            # (status, received_at) index find the old rows without reading every finished one.
            finished += [d.c.received_at < finished_before, d.c.finished_at < finished_before]
        batch = select(d.c.id).where(*finished).order_by(d.c.received_at, d.c.id).limit(batch_size)
        stmt = delete(d).where(d.c.id.in_(batch.scalar_subquery()))
        purged = 0
        while True:
            async with self.db.write() as conn:
                count = (await conn.execute(stmt)).rowcount
            purged += count
            if count < batch_size:
                return purged
            await asyncio.sleep(0)  # let waiting writers go first


_Waiting = tuple[NewDelivery, "asyncio.Future[bool]"]


class IntakeWriter:
    """Group commit through SQLAlchemy: many waiting requests, one transaction.

    The intake of the server's own process (PostgreSQL; see ``app.intake``): requests queue
    their rows and one task stores whatever has queued up as one batch, then the next.
    """

    def __init__(
        self, queue: DeliveryQueue, *, on_commit: Callable[[int], None], max_batch: int = 200
    ):
        self._queue = queue
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._pending: deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="intake-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail(self._pending, RuntimeError("server is shutting down"))
        self._pending.clear()

    async def submit(self, item: NewDelivery) -> bool:
        """Store one delivery durably; True when it is new, False for a redelivery."""
        if self._task is None or self._task.done():
            raise RuntimeError("intake writer is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                pending = self._pending
                batch = [pending.popleft() for _ in range(min(len(pending), self._max_batch))]
                try:
                    self._settle(batch, await self._queue.insert_batch([i for i, _ in batch]))
                except asyncio.CancelledError:
                    # Stopping: the batch may or may not be stored; a 503 makes GitHub
                    # redeliver it, and a stored one is then recognised as a redelivery.
                    self._fail(batch, RuntimeError("server is shutting down"))
                    raise
                except Exception as exc:  # the database is down: fail these, keep serving
                    log.exception("could not store %d deliveries", len(batch))
                    self._fail(batch, exc)

    def _settle(self, batch: list[_Waiting], new_ids: set[str]) -> None:
        claimed: set[str] = set()
        for item, future in batch:
            is_new = item.id in new_ids and item.id not in claimed
            claimed.add(item.id)
            if not future.done():
                future.set_result(is_new)
        queued = sum(1 for item, _ in batch if item.id in new_ids and item.needs_handling)
        if queued:
            self._on_commit(queued)

    @staticmethod
    def _fail(batch: Iterable[_Waiting], error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)


Handler = Callable[[Delivery], Awaitable[None]]


class WorkerPool:
    """Claims deliveries and handles up to ``count`` of them at once, each in a task of its own.

    Handling a delivery is mostly waiting on the network (two models, GitHub), so the number of
    deliveries in hand is a bound on concurrent work, not a number of threads: ``count`` slots
    (``MAX_CONCURRENT_REVIEWS``) and ``claimers`` loops that fill them. A claimer takes a slot
    first and claims second, so a process never holds a lease it has no room to work on, and
    the rest of the queue stays claimable by other replicas.
    """

    def __init__(
        self,
        queue: DeliveryQueue,
        handle: Handler,
        *,
        count: int,
        max_attempts: int,
        retry_base_seconds: float,
        retry_max_seconds: float,
        poll_interval: float,
        claimers: int = 1,
        on_outcome: Callable[[Delivery, str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self._handle = handle
        self._clock = clock  # seconds, monotonic: how the lease keeper tells time
        self._count = count
        self._claimers = max(1, min(claimers, count)) if count > 0 else 0
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._poll = poll_interval
        self._on_outcome = on_outcome
        self._wakeup = asyncio.Condition()
        self._slots = asyncio.Semaphore(max(count, 1))
        self._tasks: list[asyncio.Task[None]] = []
        self._handling: dict[asyncio.Task[None], tuple[Delivery, str]] = {}
        self._stopping = False
        self._stopped = asyncio.Event()
        self._claims = itertools.count()
        self.instance = f"{uuid.uuid4().hex[:12]}"

    @property
    def in_hand(self) -> int:
        """Deliveries being handled right now."""
        return len(self._handling)

    @property
    def capacity(self) -> int:
        return self._count

    def notify(self, count: int = 1) -> None:
        """New work was committed: wake that many idle claimers now rather than at the next poll."""

        async def _notify() -> None:
            async with self._wakeup:
                self._wakeup.notify(count)

        if self._tasks and not self._stopping:
            task = asyncio.get_running_loop().create_task(_notify())
            task.add_done_callback(_log_task_error)

    def start(self) -> None:
        for n in range(self._claimers):
            worker_id = f"{self.instance}-{n}"
            self._tasks.append(asyncio.create_task(self._run(worker_id), name=f"claimer-{n}"))

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; give the deliveries in hand a grace period, then release them.

        A handler still running when the grace period ends is cancelled and its delivery put
        back in the queue at once (its attempt not counted), for another replica or the next
        start to take; were the release to fail, the lease would run out and the delivery be
        taken then. Nothing is lost either way.
        """
        self._stopping = True
        self._stopped.set()
        async with self._wakeup:
            self._wakeup.notify_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        handling = dict(self._handling)
        if not handling:
            return
        _, pending = await asyncio.wait(handling, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            delivery, worker_id = handling[task]
            try:
                released = await self.queue.release(delivery.id, worker_id)
            except Exception:
                log.exception(
                    "could not release delivery %s; it is taken again when its lease ends",
                    delivery.id,
                )
                continue
            if released:
                log.warning(
                    "released delivery %s unfinished at shutdown",
                    delivery.id,
                    extra={"delivery_id": delivery.id, "event": delivery.event},
                )

    async def _take_slot(self) -> bool:
        """Wait for room to handle one more delivery; False when the pool stops first."""
        if self._slots.locked():
            acquire = asyncio.ensure_future(self._slots.acquire())
            stopped = asyncio.ensure_future(self._stopped.wait())
            await asyncio.wait((acquire, stopped), return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
                return False
        else:
            await self._slots.acquire()
        if self._stopping:
            self._slots.release()
            return False
        return True

    async def _run(self, worker_id: str) -> None:
        while not self._stopping:
            if not await self._take_slot():
                return
            # Each claim leases under a name of its own: two deliveries in hand in one process
            # never answer to the same lease holder.
            lease_holder = f"{worker_id}.{next(self._claims)}"
            try:
                delivery = await self.queue.claim(lease_holder)
            except Exception:
                log.exception("claiming a delivery failed")
                delivery = None
            if delivery is None:
                self._slots.release()
                async with self._wakeup:
                    if self._stopping:
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll)
                continue
            if self._stopping:  # claimed while stopping: give it straight back
                self._slots.release()
                with contextlib.suppress(Exception):
                    await self.queue.release(delivery.id, lease_holder)
                return
            task = asyncio.create_task(
                self.process(delivery, lease_holder), name=f"deliver:{delivery.id}"
            )
            self._handling[task] = (delivery, lease_holder)
            task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.pop(task, None)
        self._slots.release()
        _log_task_error(task)

    async def run_one(self, delivery_id: str) -> Delivery | None:
        """Claim and handle one given delivery in this process (``replay --file``)."""
        worker_id = f"{self.instance}-cli"
        delivery = await self.queue.claim(worker_id, only_id=delivery_id)
        if delivery is None:
            return None
        await self.process(delivery, worker_id)
        return await self.queue.get(delivery_id)

    async def process(self, delivery: Delivery, worker_id: str) -> None:
        """Handle one claimed delivery and record how it went, for as long as its lease holds.

        The handler runs in a task of its own beside the lease keeper (:meth:`_keep_lease`),
        which cancels it when the lease cannot be kept. Then nothing is recorded: the delivery
        is no longer this worker's, and whoever claims it next handles it.
        """
        if delivery.attempts > self._max_attempts:
            # Claimed again after its worker died more often than a handler may fail.
            await self.queue.fail(
                delivery.id, worker_id, "abandoned: its worker stopped during every attempt"
            )
            self._report(delivery, FAILED, 0.0)
            return
        started = time.perf_counter()
        handler = asyncio.create_task(self._call(delivery), name=f"handle:{delivery.id}")
        keeper = asyncio.create_task(
            self._keep_lease(delivery, worker_id, handler), name=f"lease:{delivery.id}"
        )
        try:
            await handler
        except RetryLater as exc:
            await self.queue.retry_at(delivery.id, worker_id, exc.at, storable(exc.reason))
            self._report(delivery, "retry", time.perf_counter() - started)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this worker is stopping; the handler was cancelled with it
            # The keeper stopped the handler: the lease is gone, or about to go.
            self._report(delivery, LEASE_LOST, time.perf_counter() - started)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            # A message quoting a payload may hold a NUL or a lone surrogate, which would make
            # recording the failure fail too (and the worker with it): store it cleaned.
            error = storable(f"{type(exc).__name__}: {exc}"[:2000])
            if delivery.attempts >= self._max_attempts:
                log.error(
                    "delivery failed for good after %d attempts: %s",
                    delivery.attempts,
                    error,
                    extra={"delivery_id": delivery.id, "event": delivery.event},
                )
                await self.queue.fail(delivery.id, worker_id, error)
                self._report(delivery, FAILED, elapsed)
            else:
                delay = backoff_seconds(
                    delivery.attempts, base=self._retry_base, cap=self._retry_max
                )
                log.warning(
                    "delivery attempt %d failed, retrying in %.1fs: %s",
                    delivery.attempts,
                    delay,
                    error,
                    extra={"delivery_id": delivery.id, "event": delivery.event},
                )
                await self.queue.retry_at(
                    delivery.id, worker_id, utcnow() + timedelta(seconds=delay), error
                )
                self._report(delivery, "retry", elapsed)
        else:
            await self.queue.complete(delivery.id, worker_id)
            self._report(delivery, DONE, time.perf_counter() - started)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _call(self, delivery: Delivery) -> None:
        await self._handle(delivery)

    def _report(self, delivery: Delivery, outcome: str, elapsed: float) -> None:
        if self._on_outcome is not None:
            self._on_outcome(delivery, outcome, elapsed)

    async def _keep_lease(
        self, delivery: Delivery, worker_id: str, handler: asyncio.Task[None]
    ) -> None:
        """Renew the lease every third of it, and cancel the handler before the lease can lapse.

        Another worker may claim the delivery as soon as its lease ends, so a handler must never
        outlive its lease: two workers would act on one delivery (two reviews, two merges). A
        renewal extends the lease from the moment it was sent. The handler is cancelled at once
        when a renewal finds the delivery leased to someone else, and, when renewals fail or
        hang (or the process was suspended), as soon as the lease as last renewed is within the
        safety margin of its end. A renewal still pending then is abandoned.
        """
        lease = self.queue.lease.total_seconds()
        every = lease / 3
        margin = lease * LEASE_SAFETY_MARGIN
        now = self._clock()
        held_until = now + _lease_left(delivery, lease)
        next_renewal = now + every
        while True:
            now = self._clock()
            give_up_at = held_until - margin
            if now >= give_up_at:
                _stop(handler, delivery, "its lease could not be renewed in time")
                return
            if now < next_renewal:
                await asyncio.sleep(min(next_renewal, give_up_at) - now)
                continue
            # A task of its own, waited for with a timeout: a renewal stuck on a lock may take
            # long to unwind once cancelled, and the handler must not wait for that.
            renewal = asyncio.create_task(
                self.queue.renew_lease(delivery.id, worker_id), name=f"renew:{delivery.id}"
            )
            try:
                await asyncio.wait((renewal,), timeout=give_up_at - now)
                if not renewal.done():
                    _stop(handler, delivery, "renewing its lease did not finish in time")
                    return
            finally:
                if not renewal.done():
                    renewal.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await renewal
            try:
                renewed = renewal.result()
            except Exception as exc:  # retried until the margin runs out
                log.warning(
                    "renewing a lease failed: %s",
                    _first_line(exc),
                    extra={"delivery_id": delivery.id, "event": delivery.event},
                )
                next_renewal = self._clock() + every / 3
                continue
            if not renewed:
                _stop(handler, delivery, "another worker holds its lease now")
                return
            held_until = now + lease
            next_renewal = now + every


def _first_line(exc: BaseException) -> str:
    """The error's type and the first line of its message (a database error quotes its SQL)."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0][:300] if message else ''}"


def _lease_left(delivery: Delivery, lease: float) -> float:
    """Seconds left of the lease the claim took, as the database holds it."""
    if delivery.lease_expires_at is None:
        return lease
    return min(lease, (delivery.lease_expires_at - utcnow()).total_seconds())


def _stop(handler: asyncio.Task[None], delivery: Delivery, why: str) -> None:
    log.warning(
        "stopping the handler of delivery %s: %s",
        delivery.id,
        why,
        extra={"delivery_id": delivery.id, "event": delivery.event},
    )
    handler.cancel()


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())
