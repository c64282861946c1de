"""What commands remember, on each database: a comment's line runs once; a pause holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from app.commands.state import CommandState
from app.store import migrate
from app.store.db import Database


@pytest.fixture
async def state(db_url: str) -> AsyncIterator[CommandState]:
    db = Database.from_url(db_url)
    await migrate.upgrade(db.engine)
    yield CommandState(db)
    await db.dispose()


async def test_a_command_line_is_claimed_once_even_by_racing_workers(state: CommandState) -> None:
    def claim(line: int) -> Coroutine[Any, Any, str | None]:
        return state.claim_run(
            comment_id=99,
            line=line,
            repository="octo/demo",
            pr_number=1,
            command="review",
            requested_by="maintainer",
        )

    first = await asyncio.gather(*(claim(1) for _ in range(6)))
    assert first.count("new") == 1 and first.count(None) == 5
    assert await claim(2)
    await state.release_run(99, 1)  # it failed: a retry may run it again
    assert await claim(1)


async def test_a_claim_cut_off_with_its_worker_is_its_deliverys_to_run_again(
    state: CommandState,
) -> None:
    def claim(line: int, delivery: str) -> Coroutine[Any, Any, str | None]:
        return state.claim_run(
            comment_id=7,
            line=line,
            repository="octo/demo",
            pr_number=1,
            command="ask",
            requested_by="maintainer",
            delivery_id=delivery,
        )

    assert await claim(1, "delivery-a") == "new"
    assert await claim(2, "delivery-a") == "new"
    # Worker A died mid-command: the queue hands delivery A out again, and line 1 runs again.
    assert await claim(1, "delivery-a") == "again"
    # A redelivery of the comment (another delivery id) never runs it.
    assert await claim(1, "delivery-b") is None
    # Once finished, not even its own delivery's retry runs it again.
    await state.finish_run(7, 2)
    assert await claim(2, "delivery-a") is None


async def test_pause_and_resume(state: CommandState) -> None:
    assert not await state.is_paused("octo/demo", 1)
    assert await state.pause("octo/demo", 1, by="maintainer")
    assert not await state.pause("octo/demo", 1, by="someone")
    assert await state.is_paused("octo/demo", 1) and not await state.is_paused("octo/demo", 2)
    assert await state.resume("octo/demo", 1)
    assert not await state.resume("octo/demo", 1)
    assert not await state.is_paused("octo/demo", 1)
