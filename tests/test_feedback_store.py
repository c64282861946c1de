"""The change registry on both databases: registration, merges, effects once, the tightening."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from app.feedback.registry import SUMMARY_TTL, FeedbackStore, MergeFacts
from app.feedback.signals import Effect
from app.feedback.tightening import Rules
from app.quota import QuotaLedger
from app.store import migrate
from app.store.db import Database
from app.store.tables import change_effects

REPO = "octo/demo"
ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(db_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


async def _register(
    store: FeedbackStore,
    number: int,
    *,
    decision: str = "auto_merge",
    untightened: str | None = None,
    confidence: float = 0.95,
    head: str = "h",
) -> None:
    async with store.db.write() as conn:
        await store.register_in(
            conn,
            repository=REPO,
            pr_number=number,
            head_sha=f"{head}{number}".ljust(40, "0"),
            decision_id=None,
            tier="low",
            confidence=confidence,
            decision=decision,
            untightened_decision=untightened or decision,
            acted=True,
        )


async def _merge(store: FeedbackStore, number: int, at: datetime) -> None:
    await store.record_merge(
        MergeFacts(
            repository=REPO,
            pr_number=number,
            head_sha=f"h{number}".ljust(40, "0"),
            merge_sha=f"m{number}".ljust(40, "0"),
            merged_at=at,
            merged_by_bot=True,
            commits=(f"c{number}".ljust(40, "a"),),
            touched={"a.py": ((1, 2),)},
            passed_checks=("ci",),
            window=timedelta(days=14),
        )
    )


async def test_registration_follows_decisions_until_merged(db: Database) -> None:
    store = FeedbackStore(db)
    await _register(store, 1, decision="escalate", head="a")
    await _register(store, 1, decision="auto_merge", head="b")  # a later head, decided again
    change = await store.change_for_pr(REPO, 1)
    assert change is not None and change.decision == "auto_merge" and change.head_sha[0] == "b"

    await _merge(store, 1, T0)
    await _merge(store, 1, T0 + timedelta(days=1))  # a redelivered close changes nothing
    await _register(store, 1, decision="escalate")  # after the merge: frozen
    merged = await store.change_for_pr(REPO, 1)
    assert merged is not None
    assert (merged.state, merged.decision, merged.merged_at) == ("merged", "auto_merge", T0)
    assert merged.touched == {"a.py": ((1, 2),)} and merged.passed_checks == ("ci",)
    assert (
        await store.record_merge(
            MergeFacts(
                repository=REPO,
                pr_number=99,
                head_sha="x" * 40,
                merge_sha=None,
                merged_at=T0,
                merged_by_bot=False,
                commits=(),
                touched={},
                passed_checks=(),
                window=timedelta(days=14),
            )
        )
        is None
    )  # never decided on: nothing to register


async def test_closed_then_reopened_and_decided_again_is_open(db: Database) -> None:
    store = FeedbackStore(db)
    await _register(store, 2)
    await store.record_closed(REPO, 2)
    assert (await store.change_for_pr(REPO, 2)).state == "closed"  # type: ignore[union-attr]
    await _register(store, 2)
    assert (await store.change_for_pr(REPO, 2)).state == "open"  # type: ignore[union-attr]


async def test_commits_are_found_by_full_or_abbreviated_sha_and_effects_count_once(
    db: Database,
) -> None:
    store = FeedbackStore(db)
    await _register(store, 3)
    await _merge(store, 3, T0)
    [by_merge] = await store.changes_by_commit(REPO, ["m3".ljust(40, "0")])
    [by_short] = await store.changes_by_commit(REPO, ["c3aaaaa"])
    assert by_merge.id == by_short.id
    assert await store.changes_by_commit(REPO, ["c3aaa"]) == []  # too short to trust
    assert await store.changes_by_commit("other/repo", ["c3aaaaa"]) == []

    assert await store.add_effect(by_merge.id, Effect.REVERTED, evidence="commit:x", detail="d")
    assert not await store.add_effect(by_merge.id, Effect.REVERTED, evidence="commit:x", detail="d")
    [record] = await store.records(REPO)
    assert [e.kind for e in record.effects] == [Effect.REVERTED]


async def test_the_summary_line_is_read_once_per_burst_and_dropped_by_an_outcome(
    db: Database,
) -> None:
    """Every review shows the line; a burst shares one read of the history, and a merge, a
    close or an effect recorded in this process is shown by the next review at once."""
    store = FeedbackStore(db)
    for number in (1, 2):
        await _register(store, number)
        await _merge(store, number, T0)
    later = T0 + timedelta(days=15)  # both windows have ended: two clean changes

    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM changes" in statement:
            statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        lines = await asyncio.gather(
            *(FeedbackStore(db).summary_line(REPO, at=later) for _ in range(5))
        )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert set(lines) == {
        "Feedback so far in this repository: 0 of 2 settled changes went wrong (0%); "
        "Brier score 0.003."
    }

    # Written behind this process's back (as another replica would): seen after the TTL.
    first = await store.change_for_pr(REPO, 1)
    assert first is not None
    async with db.write() as conn:
        await conn.execute(
            change_effects.insert().values(
                change_id=first.id,
                kind=Effect.REVERTED.value,
                evidence="commit:elsewhere",
                detail="d",
                observed_at=T0 + timedelta(days=1),
            )
        )
    assert await store.summary_line(REPO, at=later + timedelta(seconds=30)) == lines[0]
    assert (await store.summary_line(REPO, at=later + SUMMARY_TTL)).startswith(
        "Feedback so far in this repository: 1 of 2 settled changes went wrong"
    )

    # Recorded through any store of this process: shown at once.
    second = await store.change_for_pr(REPO, 2)
    assert second is not None
    await FeedbackStore(db).add_effect(
        second.id, Effect.BROKE_CI, evidence="check:ci", detail="d", observed_at=T0
    )
    assert (await store.summary_line(REPO, at=later + SUMMARY_TTL)).startswith(
        "Feedback so far in this repository: 2 of 2 settled changes went wrong"
    )


async def test_spend_per_pull_request_comes_from_the_ledger(db: Database) -> None:
    store = FeedbackStore(db)
    await _register(store, 4)
    ledger = QuotaLedger(db)
    for cost in (0.25, 0.5):
        await ledger.record_call(
            repository=REPO,
            pr_number=4,
            installation_id=None,
            delivery_id=None,
            provider="anthropic",
            model="claude",
            input_tokens=10,
            output_tokens=10,
            cost_usd=cost,
            outcome="ok",
        )
    [record] = await store.records(REPO)
    assert record.spend_usd == pytest.approx(0.75)


async def test_tightening_from_history_lifts_after_a_clean_streak_and_on_reset(
    db: Database,
) -> None:
    clock = Clock()
    store = FeedbackStore(db, clock=clock)
    rules = Rules(lookback=20, max_bad_rate=0.10, clean_streak=3)
    await _register(store, 1)
    await _merge(store, 1, T0)
    clock.now = T0 + timedelta(hours=1)
    change = await store.change_for_pr(REPO, 1)
    assert change is not None
    await store.add_effect(change.id, Effect.BROKE_CI, evidence="check:ci@m", detail="d")
    assert (await store.tightening(REPO, rules)).active

    # Three would-be automatic merges (decided as auto_pr under the tightening) merge clean.
    for number in (2, 3, 4):
        clock.now = T0 + timedelta(days=1, hours=number)
        await _register(store, number, decision="auto_pr", untightened="auto_merge")
        await _merge(store, number, clock.now)
    # An escalated change that merges clean is no would-be automatic merge: it does not count.
    await _register(store, 5, decision="escalate")
    await _merge(store, 5, T0 + timedelta(days=1))

    inside = await store.tightening(REPO, rules, now=T0 + timedelta(days=15))
    assert inside.active and inside.streak == 0  # their windows are still open
    two = await store.tightening(REPO, rules, now=T0 + timedelta(days=15, hours=3, minutes=30))
    assert two.active and two.streak == 2
    assert not (await store.tightening(REPO, rules, now=T0 + timedelta(days=16))).active

    # An admin reset forgives what was known before it, so it does not tighten again.
    clock.now = T0 + timedelta(hours=2)
    await store.reset(REPO, by="owner")
    assert not (await store.tightening(REPO, rules, now=T0 + timedelta(hours=3))).active


async def test_the_report_command_prints_the_table_and_json(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    store = FeedbackStore(db)
    await _register(store, 1)
    await _merge(store, 1, T0)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CF_", "AIG_", "DATABASE_URL"))
    }
    env.update(
        DATABASE_URL=db_url,
        GITHUB_APP_ID="1",
        GITHUB_PRIVATE_KEY="unused",
        GITHUB_WEBHOOK_SECRET="s" * 32,
        PYTHONPATH=str(ROOT),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", "report", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )

    table = cli("--repo", REPO)
    assert table.returncode == 0, table.stderr
    assert "low" in table.stdout and "auto_merge" in table.stdout and "0/1" in table.stdout
    data = json.loads(cli("--repo", REPO, "--json").stdout)
    assert data["totals"]["changes"] == 1 and data["rows"][0]["outcomes"] == {"clean": 1}
    later = cli("--repo", REPO, "--since", "2099-01-01")
    assert "no registered changes" in later.stdout
    bad = cli("--repo", "not a repo")
    assert bad.returncode == 2 and "owner/name" in bad.stderr
    assert cli("--repo", REPO, "--since", "yesterday").returncode == 2
