"""Intake on SQLite: the intake process verifies, decides and stores; answers come back in order.

These run the real process (``python -m app.intake.process``) against a database file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from sqlalchemy.dialects import sqlite as sqlite_dialect

from app.intake.accept import IntakeResult, ProcessIntake
from app.intake.process import FrameReader, encode_frame
from app.intake.routes import RecordingRouter
from app.intake.rows import sqlite_time
from app.queue import DONE, QUEUED, DeliveryQueue
from app.store import migrate
from app.store.db import Database
from app.store.tables import deliveries
from tests.fakes.webhooks import sign, signed_delivery

SECRET = "intake-secret"


async def _handler(*_: Any, **__: Any) -> None:
    return None


def routes() -> RecordingRouter:
    router = RecordingRouter()
    router.add(_handler, "pull_request", action="opened")
    router.add(_handler, "push")
    return router


def pr_opened(number: int = 1, sha: str = "a" * 40) -> dict[str, Any]:
    return {
        "action": "opened",
        "number": number,
        "pull_request": {"number": number, "head": {"sha": sha}},
        "installation": {"id": 7},
        "repository": {"full_name": "octo/demo"},
    }


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


@pytest.fixture
async def intake(db: Database) -> AsyncIterator[ProcessIntake]:
    commits: list[int] = []
    process_intake = ProcessIntake(
        DeliveryQueue(db, lease_seconds=30),
        secret=lambda: SECRET,
        routes=routes().table(),
        on_commit=commits.append,
    )
    process_intake.start()
    yield process_intake
    await process_intake.stop()


async def post(
    intake: ProcessIntake,
    event: str,
    payload: Any,
    *,
    delivery_id: str,
    secret: str = SECRET,
    form: bool = False,
    drop: tuple[str, ...] = (),
) -> IntakeResult:
    headers, body = signed_delivery(event, payload, secret, form=form, delivery_id=delivery_id)
    for name in drop:
        headers.pop(name)
    content_type = headers.get("Content-Type", "application/octet-stream")
    return await intake.accept(CIMultiDict(headers), body, content_type=content_type, charset=None)


def rows(db: Database) -> list[tuple[Any, ...]]:
    assert db.sqlite_path is not None
    with sqlite3.connect(db.sqlite_path) as conn:
        return conn.execute(
            "SELECT id, event, action, installation_id, repository, pr_key, status, attempts,"
            " received_at = next_attempt_at, finished_at IS NULL FROM deliveries ORDER BY id"
        ).fetchall()


async def test_new_deliveries_are_stored_and_redeliveries_recognised(
    intake: ProcessIntake, db: Database
) -> None:
    first = await post(intake, "pull_request", pr_opened(sha="b" * 40), delivery_id="d-1")
    assert (first.status, first.body) == (202, {"ok": True, "delivery": "d-1"})
    assert (first.event, first.pr_key, first.head) == ("pull_request", "octo/demo#1", "b" * 40)
    again, other, same_batch = await asyncio.gather(
        post(intake, "pull_request", pr_opened(), delivery_id="d-1"),
        post(intake, "pull_request", pr_opened(2), delivery_id="d-2"),
        post(intake, "pull_request", pr_opened(2), delivery_id="d-2"),
    )
    assert (again.status, again.body) == (200, {"ok": True, "duplicate": True, "delivery": "d-1"})
    assert other.status == 202
    assert same_batch.status == 200  # twice in one batch: the first one counts
    assert rows(db) == [
        ("d-1", "pull_request", "opened", 7, "octo/demo", "octo/demo#1", QUEUED, 0, 1, 1),
        ("d-2", "pull_request", "opened", 7, "octo/demo", "octo/demo#2", QUEUED, 0, 1, 1),
    ]
    stored = await DeliveryQueue(db, lease_seconds=30).get("d-1")
    assert stored is not None and json.loads(stored.payload)["pull_request"]["number"] == 1


async def test_deliveries_no_handler_wants_are_stored_done(
    intake: ProcessIntake, db: Database
) -> None:
    closed = {**pr_opened(), "action": "closed"}
    assert (await post(intake, "pull_request", closed, delivery_id="c-1")).status == 202
    assert (await post(intake, "star", {"action": "created"}, delivery_id="s-1")).status == 202
    assert (await post(intake, "push", {"ref": "x"}, delivery_id="p-1")).status == 202
    status = {row[0]: (row[6], row[9]) for row in rows(db)}
    assert status == {"c-1": (DONE, 0), "s-1": (DONE, 0), "p-1": (QUEUED, 1)}


async def test_form_encoded_deliveries_are_stored_as_json(
    intake: ProcessIntake, db: Database
) -> None:
    result = await post(intake, "pull_request", pr_opened(), delivery_id="f-1", form=True)
    assert result.status == 202
    stored = await DeliveryQueue(db, lease_seconds=30).get("f-1")
    assert stored is not None and json.loads(stored.payload) == pr_opened()


async def test_bad_requests_get_their_status_and_nothing_is_stored(
    intake: ProcessIntake, db: Database
) -> None:
    forged = await post(intake, "pull_request", pr_opened(), delivery_id="x-1", secret="other")
    assert forged.status == 401 and "signature" in forged.body["error"]
    unsigned = await post(
        intake,
        "pull_request",
        pr_opened(),
        delivery_id="x-2",
        drop=("X-Hub-Signature-256", "X-Hub-Signature"),
    )
    assert unsigned.status == 401
    nameless = await post(
        intake, "pull_request", pr_opened(), delivery_id="x-3", drop=("X-GitHub-Event",)
    )
    assert nameless.status == 400
    body = b"not json"
    headers = CIMultiDict(
        {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "x-4",
            "X-Hub-Signature-256": sign(body, SECRET),
        }
    )
    not_json = await intake.accept(headers, body, content_type="application/json", charset=None)
    assert not_json.status == 400
    text = await intake.accept(headers, body, content_type="text/plain", charset=None)
    assert text.status == 415
    ping = await post(intake, "ping", {"zen": "Keep it logically awesome."}, delivery_id="x-5")
    assert (ping.status, ping.body) == (200, {"ok": True, "zen": "Keep it logically awesome."})
    assert rows(db) == []


async def test_a_batch_that_cannot_be_stored_fails_alone(
    intake: ProcessIntake, db: Database
) -> None:
    assert db.sqlite_path is not None
    with sqlite3.connect(db.sqlite_path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON deliveries WHEN NEW.id = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    failed = await post(intake, "push", {"ref": "x"}, delivery_id="poison")
    assert failed.status == 503 and "poisoned" in str(failed.error)
    assert "poisoned" not in json.dumps(failed.body)  # the reason stays in the log
    assert (await post(intake, "push", {"ref": "x"}, delivery_id="fine")).status == 202
    assert [row[0] for row in rows(db)] == ["fine"]


async def test_a_killed_intake_process_fails_its_requests_and_is_restarted(
    intake: ProcessIntake, db: Database
) -> None:
    assert (await post(intake, "push", {"ref": "x"}, delivery_id="before")).status == 202
    pid = intake.process_id
    assert pid is not None
    assert db.sqlite_path is not None
    blocker = sqlite3.connect(db.sqlite_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the process's insert waits behind this
    try:
        stuck = asyncio.create_task(post(intake, "push", {"ref": "x"}, delivery_id="stuck"))
        await asyncio.sleep(0.3)
        assert not stuck.done()
        os.kill(pid, signal.SIGKILL)
        result = await asyncio.wait_for(stuck, timeout=10)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.status == 503 and "exited" in str(result.error)
    after = await post(intake, "push", {"ref": "x"}, delivery_id="after")
    assert after.status == 202
    assert intake.process_id not in (None, pid)
    assert [row[0] for row in rows(db)] == ["after", "before"]


async def test_stopping_answers_what_is_in_flight(intake: ProcessIntake, db: Database) -> None:
    assert db.sqlite_path is not None
    await post(intake, "push", {"ref": "x"}, delivery_id="warm")
    blocker = sqlite3.connect(db.sqlite_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    in_flight = asyncio.create_task(post(intake, "push", {"ref": "x"}, delivery_id="in-flight"))
    await asyncio.sleep(0.3)
    stopping = asyncio.create_task(intake.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waiting for the answer, not abandoning the request
    blocker.execute("ROLLBACK")
    blocker.close()
    await asyncio.wait_for(stopping, timeout=30)
    assert (await in_flight).status == 202
    assert intake.process_id is None
    late = await post(intake, "push", {"ref": "x"}, delivery_id="late")
    assert late.status == 503


async def test_intake_keeps_the_write_lock_while_requests_keep_coming(
    intake: ProcessIntake, db: Database
) -> None:
    """A background write that asks during a burst runs once the burst's deliveries are stored."""
    assert db.sqlite_path is not None
    await post(intake, "push", {"ref": "x"}, delivery_id="warm")
    blocker = sqlite3.connect(db.sqlite_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the first batch in the process
    seen_by_background: list[int] = []

    async def background() -> None:
        async with db.write():
            seen_by_background.append(len(rows(db)))

    try:
        burst = [
            asyncio.create_task(post(intake, "push", {"ref": "x"}, delivery_id=f"b{i}"))
            for i in range(30)
        ]
        await asyncio.sleep(0.3)
        waiting = asyncio.create_task(background())
        more = [
            asyncio.create_task(post(intake, "push", {"ref": "x"}, delivery_id=f"c{i}"))
            for i in range(30)
        ]
        await asyncio.sleep(0.3)
        blocker.execute("ROLLBACK")
        results = await asyncio.wait_for(asyncio.gather(*burst, *more), timeout=30)
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        blocker.close()
    assert {r.status for r in results} == {202}
    assert seen_by_background == [61]


async def test_the_process_gets_no_secret_in_its_environment(intake: ProcessIntake) -> None:
    await post(intake, "push", {"ref": "x"}, delivery_id="e-1")
    pid = intake.process_id
    assert pid is not None
    environ, cmdline = process_files(pid)
    names = {entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry}
    assert names <= {b"PATH", b"PYTHONPATH"}
    assert SECRET.encode() not in environ + cmdline


def process_files(pid: int) -> tuple[bytes, bytes]:
    proc = Path("/proc") / str(pid)
    return (proc / "environ").read_bytes(), (proc / "cmdline").read_bytes()


def test_frames_survive_any_split() -> None:
    values = [("ready"), ({"a": "b"}, "application/json", None, b"x" * 70000), [1, 2, 3]]
    stream = b"".join(encode_frame(v) for v in values)
    for step in (1, 3, 4096, len(stream)):
        reader = FrameReader()
        out: list[Any] = []
        for i in range(0, len(stream), step):
            out += reader.feed(stream[i : i + step])
        assert out == values


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(2026, 12, 2, 1, 2, 3, 0, tzinfo=UTC),
    ],
)
def test_intake_times_are_written_as_sqlalchemy_writes_them(moment: datetime) -> None:
    dialect = sqlite_dialect.dialect()
    processor = deliveries.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    assert sqlite_time(moment) == processor(moment)


def wal_size(path: str) -> int:
    return Path(f"{path}-wal").stat().st_size


def checkpointed_ids(path: str) -> list[str]:
    """The deliveries in the database file itself, ignoring whatever is still only in the WAL."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM deliveries ORDER BY id")]
    finally:
        conn.close()


async def test_the_process_checkpoints_what_it_writes(intake: ProcessIntake, db: Database) -> None:
    """Every megabyte, and once intake is quiet, the WAL goes back into the database file, so
    the WAL stays small however long a burst lasts."""
    assert db.sqlite_path is not None
    pad = "x" * 20_000
    results = await asyncio.gather(
        *(
            post(intake, "push", {"ref": "x", "pad": pad}, delivery_id=f"w{i:03}")
            for i in range(150)
        )
    )
    assert {r.status for r in results} == {202}
    assert wal_size(db.sqlite_path) < 2_500_000  # 3 MB of payloads went through it
    for _ in range(100):  # quiet now: the rest is checkpointed within a moment
        await asyncio.sleep(0.05)
        if len(checkpointed_ids(db.sqlite_path)) == 150:
            break
    assert checkpointed_ids(db.sqlite_path) == [f"w{i:03}" for i in range(150)]


@pytest.mark.parametrize("turns", [0, 1, 3, 10])
async def test_stopping_while_the_process_starts_leaves_no_unread_error_and_no_open_pipe(
    db: Database, turns: int
) -> None:
    """``replay --file`` stops the server a moment after it started: the intake process is
    killed before it is ready. Its end is awaited, its pipes closed, and no error is left
    for asyncio to report as never retrieved."""
    import gc

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        process_intake = ProcessIntake(
            DeliveryQueue(db, lease_seconds=30),
            secret=lambda: SECRET,
            routes=routes().table(),
            on_commit=lambda _n: None,
        )
        process_intake.start()
        for _ in range(turns):
            await asyncio.sleep(0)
        await process_intake.stop()
        assert process_intake.process_id is None
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in reported] == []
