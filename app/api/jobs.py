"""Coding-agent jobs as rows: created ``queued``, ``running`` while a process holds them, then
``succeeded`` or ``failed``, with what the command printed, the diff it left and why it failed.

A job is never resumed: the checkout it worked in is gone with the process that ran it. So a
row left ``queued`` or ``running`` by a process that died is failed with ``interrupted``
(:meth:`JobStore.interrupt`): at start on SQLite, where one process owns the file and every such
row is an orphan, and on PostgreSQL when its heartbeat is older than a live runner leaves it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, insert, or_, select, update

from app.store.db import Database
from app.store.tables import api_jobs
from app.store.types import utcnow

__all__ = [
    "ACTIVE",
    "FAILED",
    "INTERRUPTED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "JobRow",
    "JobStore",
]

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
ACTIVE: Final = (QUEUED, RUNNING)
#: The error of a job whose process died or stopped before it finished.
INTERRUPTED: Final = "interrupted"


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    repository: str
    ref: str | None
    sandbox: str
    caller: str
    caller_owner: str | None
    status: str
    runner: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    output: str | None
    stderr: str | None
    diff: str | None
    error: str | None

    @classmethod
    def of(cls, row: Any) -> JobRow:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


class JobStore:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self,
        *,
        repository: str,
        ref: str | None,
        sandbox: str,
        caller: str,
        caller_owner: str | None,
        runner: str,
    ) -> JobRow:
        """A new ``queued`` job with an id nobody can guess (it is what a caller polls)."""
        job_id = str(uuid.uuid4())
        now = self._clock()
        async with self._db.write() as conn:
            await conn.execute(
                insert(api_jobs).values(
                    id=job_id,
                    repository=repository,
                    ref=ref,
                    sandbox=sandbox,
                    caller=caller[:300],
                    caller_owner=caller_owner,
                    status=QUEUED,
                    runner=runner,
                    created_at=now,
                    heartbeat_at=now,
                )
            )
        found = await self.get(job_id)
        assert found is not None
        return found

    async def get(self, job_id: str) -> JobRow | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(api_jobs).where(api_jobs.c.id == job_id))).first()
        return JobRow.of(row) if row is not None else None

    async def start(self, job_id: str) -> bool:
        """``queued`` → ``running``; False when the job is no longer queued."""
        now = self._clock()
        async with self._db.write() as conn:
            result = await conn.execute(
                update(api_jobs)
                .where(api_jobs.c.id == job_id, api_jobs.c.status == QUEUED)
                .values(status=RUNNING, started_at=now, heartbeat_at=now)
            )
        return bool(result.rowcount)

    async def finish(
        self,
        job_id: str,
        *,
        status: str,
        exit_code: int | None = None,
        output: str | None = None,
        stderr: str | None = None,
        diff: str | None = None,
        error: str | None = None,
    ) -> bool:
        """End an active job; False when it had ended already (it keeps its first ending)."""
        assert status in {SUCCEEDED, FAILED}
        async with self._db.write() as conn:
            result = await conn.execute(
                update(api_jobs)
                .where(api_jobs.c.id == job_id, api_jobs.c.status.in_(ACTIVE))
                .values(
                    status=status,
                    finished_at=self._clock(),
                    exit_code=exit_code,
                    output=output,
                    stderr=stderr,
                    diff=diff,
                    error=error,
                )
            )
        return bool(result.rowcount)

    async def heartbeat(self, job_ids: Iterable[str]) -> None:
        """The runner is alive and still holds these jobs."""
        ids = list(job_ids)
        if not ids:
            return
        async with self._db.write() as conn:
            await conn.execute(
                update(api_jobs)
                .where(api_jobs.c.id.in_(ids), api_jobs.c.status.in_(ACTIVE))
                .values(heartbeat_at=self._clock())
            )

    async def interrupt(self, *, stale_before: datetime | None = None) -> list[str]:
        """Fail every active job no live process holds; returns their ids.

        ``stale_before`` None fails every active job (SQLite at start: one process owns the
        file, so whatever is still active was cut off); otherwise only those whose heartbeat is
        older (PostgreSQL, where another replica's jobs are alive and beating).
        """
        where: ColumnElement[bool] = api_jobs.c.status.in_(ACTIVE)
        if stale_before is not None:
            where = and_(
                where,
                or_(api_jobs.c.heartbeat_at.is_(None), api_jobs.c.heartbeat_at < stale_before),
            )
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    update(api_jobs)
                    .where(where)
                    .values(status=FAILED, finished_at=self._clock(), error=INTERRUPTED)
                    .returning(api_jobs.c.id)
                )
            ).all()
        return sorted(str(row.id) for row in rows)
