"""The outbox store: one row per head and kind, one sender at a time, bounded retries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.policy.outbox import ACTION_MAX_ATTEMPTS, ActionKind, ActionStatus, Outbox, backoff
from app.store import migrate
from app.store.db import Database
from app.store.types import utcnow


@pytest.fixture
async def outbox(db_url: str) -> AsyncIterator[Outbox]:
    db = Database.from_url(db_url)
    await migrate.upgrade(db.engine)
    yield Outbox(db, claim_seconds=60)
    await db.dispose()


async def _add(outbox: Outbox, sha: str = "a" * 40, kind: ActionKind = ActionKind.MERGE) -> int:
    async with outbox.db.write() as conn:
        return await outbox.add_in(
            conn,
            repository="octo/demo",
            pr_number=1,
            head_sha=sha,
            kind=kind,
            decision_id=7,
            installation_id=42,
            payload={"method": "squash"},
        )


async def test_one_row_per_head_and_kind(outbox: Outbox) -> None:
    first = await _add(outbox)
    assert await _add(outbox) == first
    other = await _add(outbox, kind=ActionKind.ESCALATE)
    assert other != first
    actions = await outbox.for_head("octo/demo", 1, "a" * 40)
    assert [(a.kind, a.status, a.payload) for a in actions] == [
        (ActionKind.MERGE, ActionStatus.PENDING, {"method": "squash"}),
        (ActionKind.ESCALATE, ActionStatus.PENDING, {"method": "squash"}),
    ]


async def test_only_one_sender_gets_a_claim(outbox: Outbox) -> None:
    action_id = await _add(outbox)
    claims = await asyncio.gather(*(outbox.claim(action_id) for _ in range(8)))
    held = [c for c in claims if c is not None]
    assert len(held) == 1 and held[0].attempts == 1 and held[0].status is ActionStatus.RUNNING
    # A claim whose holder vanished is taken over once it runs out, not before.
    assert await outbox.claim(action_id, now=utcnow() + timedelta(seconds=30)) is None
    again = await outbox.claim(action_id, now=utcnow() + timedelta(seconds=61))
    assert again is not None and again.attempts == 2


async def test_failed_attempts_back_off_then_give_up(outbox: Outbox) -> None:
    action_id = await _add(outbox)
    when = utcnow()
    for attempt in range(1, ACTION_MAX_ATTEMPTS + 1):
        claimed = await outbox.claim(action_id, now=when)
        assert claimed is not None and claimed.attempts == attempt
        status = await outbox.attempt_failed(claimed, f"boom {attempt}")
        expected = ActionStatus.FAILED if attempt == ACTION_MAX_ATTEMPTS else ActionStatus.PENDING
        assert status is expected
        if status is ActionStatus.PENDING:
            assert await outbox.claim(action_id) is None  # backing off
            assert [a.id for a in await outbox.due(now=utcnow() + timedelta(hours=1))] == [
                action_id
            ]
        when = utcnow() + timedelta(hours=attempt)
    [failed] = await outbox.failed()
    assert failed.last_error == f"boom {ACTION_MAX_ATTEMPTS}"
    assert await outbox.due(now=utcnow() + timedelta(days=1)) == []
    assert await outbox.retry(action_id)
    assert not await outbox.retry(action_id)  # pending now, not failed
    assert [a.attempts for a in await outbox.due()] == [0]


def test_backoff_grows_and_is_bounded() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, 80.0]
    assert backoff(30) == 600.0


def test_actions_cli_lists_and_retries_failed_actions(tmp_path: Path, sqlite_url: str) -> None:
    async def seed() -> int:
        db = Database.from_url(sqlite_url)
        await migrate.upgrade(db.engine)
        box = Outbox(db)
        action_id = await _add(box)
        for _ in range(ACTION_MAX_ATTEMPTS):
            claimed = await box.claim(action_id, now=utcnow() + timedelta(days=1))
            assert claimed is not None
            await box.attempt_failed(claimed, "GitHubBroken (502): Bad Gateway")
        await db.dispose()
        return action_id

    action_id = asyncio.run(seed())
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": sqlite_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = run("actions", "--failed", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["kind"], row["attempts"]) == (action_id, "merge", ACTION_MAX_ATTEMPTS)
    text = run("actions")
    assert "GitHubBroken (502)" in text.stdout and "actions retry ID" in text.stdout
    retried = run("actions", "retry", str(action_id))
    assert retried.returncode == 0 and "queued again" in retried.stdout
    assert run("actions", "retry", str(action_id)).returncode == 1
    assert run("actions").stdout.strip() == "no failed actions"
