"""What the pipeline remembers between runs: its reviews and the comments it posted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.policy.carry import ReviewFacts
from app.store.db import Database
from app.store.tables import of_pull, posted_comments, reviews
from app.store.types import utcnow

RUNNING = "running"
PUBLISHED = "published"
SUPERSEDED = "superseded"
SKIPPED = "skipped"
FAILED = "failed"

# Built once: a statement's values passed as parameters at execution cost a fraction of
# building ``.values(...)`` anew each time, and the compiled form is cached by its keys.
_INSERT_REVIEW = reviews.insert().returning(*reviews.c)
#: The columns in the parameters are set (``_id`` is the review's id).
_UPDATE_REVIEW = update(reviews).where(reviews.c.id == bindparam("_id"))
_NEWEST_FOR_HEAD = (
    select(reviews).where(of_pull(reviews, head=True)).order_by(reviews.c.id.desc()).limit(1)
)
_POSTED_FINGERPRINTS = select(posted_comments.c.fingerprint).where(of_pull(posted_comments))


@dataclass(frozen=True, slots=True)
class ReviewRow:
    id: int
    repository: str
    pr_number: int
    head_sha: str
    status: str
    check_run_id: int | None
    confidence: float | None
    conclusion: str | None
    outcomes: str | None = None  # the model answers of an interrupted run, to resume from
    delivery_id: str | None = None
    resumed: bool = False  # an earlier attempt at this head stopped before publishing


@dataclass(frozen=True, slots=True)
class FinishedReview:
    """A finished review run as an overview lists it."""

    id: int
    repository: str
    pr_number: int
    head_sha: str
    status: str
    confidence: float | None
    conclusion: str | None
    cost_usd: float
    started_at: datetime
    finished_at: datetime | None


def _newest(
    repository: str,
    pr_number: int,
    *conditions: ColumnElement[bool],
    columns: tuple[Any, ...] = (reviews,),
    limit: int = 1,
) -> Select[Any]:
    """A pull request's reviews that meet ``conditions``, newest first (the last ``limit``)."""
    return (
        select(*columns)
        .where(reviews.c.repository == repository, reviews.c.pr_number == pr_number, *conditions)
        .order_by(reviews.c.id.desc())
        .limit(limit)
    )


def _row(r: Any, *, resumed: bool = False) -> ReviewRow:
    return ReviewRow(
        id=r.id,
        repository=r.repository,
        pr_number=r.pr_number,
        head_sha=r.head_sha,
        status=r.status,
        check_run_id=r.check_run_id,
        confidence=r.confidence,
        conclusion=r.conclusion,
        outcomes=r.outcomes,
        delivery_id=r.delivery_id,
        resumed=resumed,
    )


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(
        self,
        *,
        repository: str,
        pr_number: int,
        head_sha: str,
        base_sha: str | None,
        delivery_id: str | None,
        incremental_from: str | None,
    ) -> ReviewRow:
        """A new running review, or the unfinished one an earlier attempt left for this head.

        An attempt that crashed (``running``) or failed (``failed``) is resumed, not repeated: its
        check run and any model answers it stored are reused, so a retry neither opens a second
        check run nor pays for the models again.
        """
        async with self.db.write() as conn:
            existing = (
                await conn.execute(
                    _NEWEST_FOR_HEAD,
                    {"repository": repository, "pr_number": pr_number, "head_sha": head_sha},
                )
            ).first()
            if existing is not None and existing.status in {RUNNING, FAILED}:
                await conn.execute(
                    update(reviews)
                    .where(reviews.c.id == existing.id)
                    .values(
                        status=RUNNING,
                        delivery_id=delivery_id,
                        incremental_from=incremental_from,
                        finished_at=None,
                    )
                )
                return _row(existing, resumed=True)
            result = await conn.execute(
                _INSERT_REVIEW,
                {
                    "repository": repository,
                    "pr_number": pr_number,
                    "head_sha": head_sha,
                    "base_sha": base_sha,
                    "delivery_id": delivery_id,
                    "status": RUNNING,
                    "incremental_from": incremental_from,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost_usd": 0.0,
                    "started_at": utcnow(),
                },
            )
            return _row(result.one())

    async def save_outcomes(self, review_id: int, outcomes: str) -> None:
        """The model answers, kept before anything is published (see ``start``)."""
        async with self.db.write() as conn:
            await conn.execute(_UPDATE_REVIEW, {"_id": review_id, "outcomes": outcomes})

    async def set_check_run(self, review_id: int, check_run_id: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(_UPDATE_REVIEW, {"_id": review_id, "check_run_id": check_run_id})

    async def finish(
        self,
        review_id: int,
        *,
        status: str,
        confidence: float | None = None,
        conclusion: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        summary: str | None = None,
        facts: ReviewFacts | None = None,
        also: Callable[[AsyncConnection], Awaitable[object]] | None = None,
    ) -> None:
        """End the review; ``also`` writes what follows from it in the same transaction."""
        async with self.db.write() as conn:
            await conn.execute(
                _UPDATE_REVIEW,
                {
                    "_id": review_id,
                    "status": status,
                    "confidence": confidence,
                    "conclusion": conclusion,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cost_usd": cost_usd,
                    "summary": summary,
                    "facts": facts.to_json() if facts is not None else None,
                    "finished_at": utcnow(),
                },
            )
            if also is not None:
                await also(conn)

    async def last_published(self, repository: str, pr_number: int) -> ReviewRow | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(_newest(repository, pr_number, reviews.c.status == PUBLISHED))
            ).first()
        return _row(row) if row is not None else None

    async def history(
        self, repository: str, pr_number: int, *, limit: int = 200
    ) -> list[ReviewFacts]:
        """The facts of the pull request's published reviews, newest first (``policy/carry``)."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                _newest(
                    repository,
                    pr_number,
                    reviews.c.status == PUBLISHED,
                    reviews.c.facts.is_not(None),
                    columns=(reviews.c.facts, reviews.c.incremental_from, reviews.c.cleared_by),
                    limit=limit,
                )
            )
            return [
                ReviewFacts.from_json(
                    r.facts, full=r.incremental_from is None, cleared_by=r.cleared_by
                )
                for r in rows
            ]

    async def recent(
        self,
        *,
        since: datetime,
        until: datetime,
        repositories: Collection[str] | None = None,
        limit: int = 50,
    ) -> list[FinishedReview]:
        """Finished reviews started in ``[since, until)``, newest first (None: every repository)."""
        query = (
            select(reviews)
            .where(
                reviews.c.status != RUNNING,
                reviews.c.started_at >= since,
                reviews.c.started_at < until,
            )
            .order_by(reviews.c.started_at.desc(), reviews.c.id.desc())
            .limit(limit)
        )
        if repositories is not None:
            query = query.where(reviews.c.repository.in_(list(repositories)))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FinishedReview(
                id=r.id,
                repository=r.repository,
                pr_number=r.pr_number,
                head_sha=r.head_sha,
                status=r.status,
                confidence=r.confidence,
                conclusion=r.conclusion,
                cost_usd=float(r.cost_usd or 0.0),
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
            for r in rows
        ]

    async def clear(self, repository: str, pr_number: int, head_sha: str, *, by: str) -> bool:
        """A person vouched for ``head_sha``: earlier findings are no longer carried past it."""
        async with self.db.write() as conn:
            latest = _newest(
                repository,
                pr_number,
                reviews.c.head_sha == head_sha,
                reviews.c.status == PUBLISHED,
                columns=(reviews.c.id,),
            ).scalar_subquery()
            result = await conn.execute(
                update(reviews).where(reviews.c.id == latest).values(cleared_by=by[:100])
            )
            return bool(result.rowcount)

    async def latest_for_head(
        self, repository: str, pr_number: int, head_sha: str
    ) -> ReviewRow | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    _NEWEST_FOR_HEAD,
                    {"repository": repository, "pr_number": pr_number, "head_sha": head_sha},
                )
            ).first()
        return _row(row) if row is not None else None

    async def posted_fingerprints(self, repository: str, pr_number: int) -> frozenset[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                _POSTED_FINGERPRINTS, {"repository": repository, "pr_number": pr_number}
            )
            return frozenset(r[0] for r in rows)

    async def record_posted(
        self, repository: str, pr_number: int, head_sha: str, fingerprints: Iterable[str]
    ) -> None:
        values = [
            {
                "repository": repository,
                "pr_number": pr_number,
                "fingerprint": fp,
                "head_sha": head_sha,
                "posted_at": utcnow(),
            }
            for fp in set(fingerprints)
        ]
        if not values:
            return
        stmt = self.db.insert_or_skip(posted_comments)
        async with self.db.write() as conn:
            await conn.execute(stmt, values)
