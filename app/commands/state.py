"""What commands remember: which command lines ran, and which pull requests are paused.

A command line is claimed before it runs (an ``INSERT`` that does nothing on conflict), so a
redelivered delivery of the same comment finds the claim and runs nothing twice. A command that
fails gives its claim back, so the queue's retry of the delivery runs it again; one that
finishes is marked so. A claim neither finished nor given back was cut off with its worker
(killed, or its lease lost): it stays the claiming delivery's, and that delivery, handed out
again by the queue, runs the command again (its reply is found by its marker, not posted twice).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import delete, select, update

from app.store.db import Database
from app.store.tables import command_runs, of_pull, paused_pulls
from app.store.types import utcnow

__all__ = ["CommandState"]


# Asked before every pull request event is handled: built once.
_PAUSED = select(paused_pulls.c.pr_number).where(of_pull(paused_pulls))


class CommandState:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_run(
        self,
        *,
        comment_id: int,
        line: int,
        repository: str,
        pr_number: int,
        command: str,
        requested_by: str,
        delivery_id: str | None = None,
    ) -> Literal["new", "again"] | None:
        """True when the caller is to run the command: the first time this (comment, line) is
        seen, or again for the delivery that claimed it and never finished it."""
        statement = (
            self.db.insert(command_runs)
            .values(
                comment_id=comment_id,
                line=line,
                repository=repository,
                pr_number=pr_number,
                command=command[:40],
                requested_by=requested_by[:100],
                created_at=utcnow(),
                delivery_id=delivery_id,
            )
            .on_conflict_do_nothing()
        )
        async with self.db.write() as conn:
            result = await conn.execute(statement)
            if result.rowcount == 1:
                return "new"
            if delivery_id is None:
                return None
            cut_off = select(command_runs.c.comment_id).where(
                command_runs.c.comment_id == comment_id,
                command_runs.c.line == line,
                command_runs.c.delivery_id == delivery_id,
                command_runs.c.finished_at.is_(None),
            )
            return "again" if (await conn.execute(cut_off)).first() is not None else None

    async def finish_run(self, comment_id: int, line: int) -> None:
        """The command ran to its end (its reply posted): no retry runs it again."""
        async with self.db.write() as conn:
            await conn.execute(
                update(command_runs)
                .where(command_runs.c.comment_id == comment_id, command_runs.c.line == line)
                .values(finished_at=utcnow())
            )

    async def release_run(self, comment_id: int, line: int) -> None:
        """Give a claim back: the command failed before it finished."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(command_runs).where(
                    command_runs.c.comment_id == comment_id, command_runs.c.line == line
                )
            )

    async def pause(self, repository: str, pr_number: int, *, by: str) -> bool:
        """Stop automatic reviews of the pull request; False when they were stopped already."""
        statement = (
            self.db.insert(paused_pulls)
            .values(repository=repository, pr_number=pr_number, paused_by=by, paused_at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self.db.write() as conn:
            return bool((await conn.execute(statement)).rowcount == 1)

    async def resume(self, repository: str, pr_number: int) -> bool:
        """Restart automatic reviews; False when they were not paused."""
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(paused_pulls).where(
                    paused_pulls.c.repository == repository, paused_pulls.c.pr_number == pr_number
                )
            )
            return bool(result.rowcount == 1)

    async def is_paused(self, repository: str, pr_number: int) -> bool:
        async with self.db.read() as conn:
            found = (
                await conn.execute(_PAUSED, {"repository": repository, "pr_number": pr_number})
            ).first()
        return found is not None
