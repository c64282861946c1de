"""What intake holds in memory is bounded: past the bound ``/webhook`` answers 503, and nothing
acknowledged is lost.

The database is the edge faked here: a transaction of the test's own holds the deliveries table
(``BEGIN IMMEDIATE`` on the SQLite file, ``LOCK TABLE`` on PostgreSQL), so the requests intake
lets in wait for it, in intake's buffers, for as long as the test likes. No timing is involved:
the requests past the bound are answered while the others still wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.engine.url import make_url

from app.intake.limit import RETRY_AFTER_SECONDS, PendingLimit
from app.server import METRICS, PENDING, SERVICES, create_app
from tests.conftest import WEBHOOK_SECRET, SettingsFactory
from tests.fakes.webhooks import delivery_headers, encode_json, pull_request_payload

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

BURST = 20
ROOM = 4  # requests the bound leaves room for, in both of its forms
STUCK_S = 60.0  # only ever waited for in full when the bound does not hold: a failure


@contextlib.asynccontextmanager
async def deliveries_locked(db_url: str) -> AsyncIterator[None]:
    """No one else writes a delivery until the block ends."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        connection = sqlite3.connect(url.database, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    pg = await asyncpg.connect(dsn)
    try:
        async with pg.transaction():
            await pg.execute("LOCK TABLE deliveries IN SHARE MODE")
            yield
    finally:
        await pg.close()


async def post(client: TestClient[Any, Any], body: bytes) -> tuple[int, str | None, str]:
    delivery_id = str(uuid.uuid4())
    headers = delivery_headers("pull_request", body, WEBHOOK_SECRET, delivery_id=delivery_id)
    response = await client.post("/webhook", data=body, headers=headers)
    await response.read()
    return response.status, response.headers.get("Retry-After"), delivery_id


@pytest.mark.parametrize("bound", ["requests", "bytes"])
async def test_a_burst_past_the_bound_is_shed_with_503_and_nothing_acknowledged_is_lost(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory, db_url: str, bound: str
) -> None:
    body = encode_json(pull_request_payload("opened"))
    limits = (
        {"intake_max_pending": ROOM}
        if bound == "requests"
        else {"intake_max_pending_bytes": ROOM * len(body)}
    )
    app = create_app(make_settings(database_url=db_url, **limits), run_workers=False)
    client = await aiohttp_client(app)
    pending: PendingLimit = app[PENDING]
    assert (await post(client, body))[0] == 202  # intake is up, its process started

    async with deliveries_locked(db_url):
        tasks = [asyncio.create_task(post(client, body)) for _ in range(BURST)]
        # Everything past the bound is answered while the rest waits for the database.
        answered: set[asyncio.Task[tuple[int, str | None, str]]] = set()
        while len(answered) < BURST - ROOM:
            done, _ = await asyncio.wait(
                [t for t in tasks if t not in answered],
                timeout=STUCK_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert done, (
                f"{len(answered)} answered; the rest wait (intake holds {pending.requests})"
            )
            answered |= done
        assert len(answered) == BURST - ROOM
        for task in answered:
            status, retry_after, _ = task.result()
            assert (status, retry_after) == (503, str(RETRY_AFTER_SECONDS))
        assert (pending.requests, pending.bytes) == (ROOM, ROOM * len(body))

    results = await asyncio.gather(*tasks)
    acknowledged = {delivery_id for status, _, delivery_id in results if status == 202}
    shed = {delivery_id for status, _, delivery_id in results if status == 503}
    assert (len(acknowledged), len(shed)) == (ROOM, BURST - ROOM)
    stored = {d.id for d in await app[SERVICES].queue.recent(limit=100)}
    assert acknowledged <= stored and not shed & stored
    assert (pending.requests, pending.bytes) == (0, 0)
    registry = app[METRICS].registry
    assert registry.get_sample_value("aigateway_webhook_shed_total") == BURST - ROOM
    assert registry.get_sample_value("aigateway_intake_pending_requests") == 0
    assert registry.get_sample_value("aigateway_intake_pending_bytes") == 0


def test_a_request_is_let_in_whatever_its_size_when_nothing_is_held() -> None:
    limit = PendingLimit(max_requests=10, max_bytes=100)
    assert limit.admit(1_000)  # alone: a 25 MB payload is never refused for good
    assert not limit.admit(1)
    limit.release(1_000)
    assert limit.admit(60) and not limit.admit(41) and limit.admit(40)
    assert not limit.grow(1)  # a body longer than its Content-Length counts too
    limit.release(60)
    limit.release(40)
    assert (limit.requests, limit.bytes) == (0, 0)
