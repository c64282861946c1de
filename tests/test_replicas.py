"""Several ``python -m app serve`` processes on one PostgreSQL, as a deployment runs them.

Real server processes, a fake GitHub and a fake gateway in the test's process, the local
PostgreSQL server (CI provides it; without ``TEST_DATABASE_URL`` these tests are skipped with
that reason). What they show:

- 200 deliveries across 20 pull requests, sent to two replicas, one of them killed with SIGKILL
  midway: every delivery is handled, each command answered exactly once, no two deliveries of
  one pull request run at once (the fake gateway's own timestamps), and the shared budget is
  never overspent;
- a push taken by a web-only replica stops the outdated review running on a workers-only
  replica at once, before it posts or waits for the models;
- SIGTERM: work in hand finishes within the grace period and the process exits 0; work that
  cannot finish in time is given back, and another replica takes it at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from app.queue import DONE, QUEUED, DeliveryQueue
from app.review.render import CHECK_NAME
from app.store import migrate
from app.store.db import Database
from app.store.tables import ledger
from tests.conftest import WEBHOOK_SECRET, _postgres_database
from tests.fakes.gateway import FakeGateway, Outcome, Provider, RecordedRequest, Reply
from tests.fakes.github import FakeGitHub
from tests.fakes.webhooks import issue_comment_payload, pull_request_payload, signed_delivery
from tests.test_crash_recovery import APP_ID, INSTALLATION, Server, server_env, wait_until

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"),
    reason="replicas share a PostgreSQL server: set TEST_DATABASE_URL (CI does)",
)

REPO = "octo/replicas"
ASKER = "maintainer"
TAG = "<!-- aigateway:command:"


@dataclass
class Timed:
    """One model request as the fake gateway served it: which delivery, when it ran."""

    delivery: str
    pr: int
    start: float
    end: float


@dataclass
class Cluster:
    github: FakeGitHub
    gateway: FakeGateway
    db: Database
    queue: DeliveryQueue
    session: aiohttp.ClientSession
    env: dict[str, str]
    workdir: Path
    servers: list[Server] = field(default_factory=list)
    timed: list[Timed] = field(default_factory=list)

    async def start(self, name: str, **env: str) -> Server:
        server = Server({**self.env, **env}, self.workdir, name)
        self.servers.append(server)
        await server.start(self.session)
        return server

    def time_models(self, latency: float) -> None:
        """Every model call takes ``latency`` and is recorded with its delivery and PR."""

        def timed(provider: Provider) -> Any:
            async def respond(request: RecordedRequest) -> Outcome:
                start = time.monotonic()
                await asyncio.sleep(latency)
                meta = request.metadata if isinstance(request.metadata, dict) else {}
                self.timed.append(
                    Timed(
                        str(meta.get("delivery")), int(meta.get("pr", 0)), start, time.monotonic()
                    )
                )
                script = self.gateway.script(provider)
                return Reply(script.review, script.usage)

            return respond

        for provider in ("anthropic", "openai"):
            self.gateway.script(provider).respond_with(timed(provider))

    async def send(
        self, server: Server, event: str, payload: dict[str, Any], delivery: str
    ) -> None:
        headers, body = signed_delivery(event, payload, WEBHOOK_SECRET, delivery_id=delivery)
        async with self.session.post(f"{server.url}/webhook", data=body, headers=headers) as r:
            assert r.status == 202, await r.text()

    async def statuses(self) -> dict[str, str]:
        return {d.id: d.status for d in await self.queue.recent(limit=1000)}


@pytest.fixture
async def cluster(rsa_key: tuple[str, str], tmp_path: Path) -> AsyncIterator[Cluster]:
    async for url in _postgres_database():
        db = Database.from_url(url)
        await migrate.upgrade(db.engine)
        async with (
            FakeGitHub.serve(app_id=APP_ID) as github,
            FakeGateway() as gateway,
            aiohttp.ClientSession() as session,
        ):
            github.set_app_key(rsa_key[1], APP_ID)
            github.add_repo(REPO, installation_id=INSTALLATION)
            env = server_env(db_url=url, rsa_key=rsa_key, github=github, gateway=gateway)
            env.update(MAX_CONCURRENT_REVIEWS="64", LOG_LEVEL="WARNING")
            world = Cluster(
                github, gateway, db, DeliveryQueue(db, lease_seconds=300), session, env, tmp_path
            )
            try:
                yield world
            finally:
                for server in world.servers:
                    await server.stop()
                await db.dispose()


def overlapping(timed: list[Timed]) -> list[tuple[str, str]]:
    """Pairs of different deliveries of one pull request whose model calls overlapped."""
    by_pr: dict[int, list[Timed]] = defaultdict(list)
    for t in timed:
        by_pr[t.pr].append(t)
    found = []
    for calls in by_pr.values():
        calls.sort(key=lambda t: t.start)
        for i, a in enumerate(calls):
            for b in calls[i + 1 :]:
                if b.start >= a.end:
                    break
                if b.delivery != a.delivery:
                    found.append((a.delivery, b.delivery))
    return found


async def test_two_replicas_share_200_deliveries_and_survive_one_being_killed(
    cluster: Cluster,
) -> None:
    prs = range(1, 21)
    for number in prs:
        cluster.github.add_pull(REPO, number, files=[_patch(number)])
    cluster.github.set_permission(REPO, ASKER, "write")
    # One ask costs a few hundredths of a cent here: the day's budget holds most, not all.
    cluster.github.set_file(REPO, ".github/aigateway.yml", "version: 1\nquota:\n  daily_usd: 0.5\n")
    cluster.time_models(0.2)
    env = {"LEASE_SECONDS": "2"}
    first = await cluster.start("replica-1", **env)
    second = await cluster.start("replica-2", **env)

    comments: dict[str, int] = {}

    async def ask(server: Server, n: int) -> None:
        number = prs[n % len(prs)]
        body = f"/ask question {n}?"
        comment = int(cluster.github.add_issue_comment(REPO, number, body, user=ASKER)["id"])
        delivery = f"ask-{n:03d}"
        comments[delivery] = comment
        payload = issue_comment_payload(
            repo=REPO, number=number, body=body, user=ASKER, comment_id=comment
        )
        await cluster.send(server, "issue_comment", payload, delivery)

    for n in range(100):
        await ask(first if n % 2 else second, n)

    async def some_done() -> bool:
        return list((await cluster.statuses()).values()).count(DONE) >= 40

    await wait_until(some_done, "40 deliveries handled")
    assert first.proc is not None
    first.proc.kill()  # no shutdown: its claimed work is left with live leases
    await first.proc.wait()
    for n in range(100, 200):
        await ask(second, n)

    async def all_done() -> bool:
        statuses = await cluster.statuses()
        return len(statuses) == 200 and all(s == DONE for s in statuses.values())

    await wait_until(all_done, "all 200 deliveries handled")
    # The killed replica had work in hand, and the other one took it over.
    taken_over = [d for d in await cluster.queue.recent(limit=1000) if d.attempts > 1]
    assert taken_over, "replica-1 held nothing when it was killed: nothing was taken over"

    # Each command answered exactly once.
    replies: dict[int, int] = defaultdict(int)
    for number in prs:
        for c in cluster.github.comments_on(REPO, number):
            body = str(c["body"])
            if TAG in body:
                replies[int(body.split(TAG, 1)[1].split(":", 1)[0])] += 1
    assert sorted(replies) == sorted(comments.values())
    assert set(replies.values()) == {1}
    # No two deliveries of one pull request ran at once, on either replica.
    assert cluster.timed and overlapping(cluster.timed) == []
    # The shared budget held: spend recorded never passes it, and it did refuse some asks.
    async with cluster.db.read() as conn:
        spent = (await conn.execute(select(func.sum(ledger.c.cost_usd)))).scalar_one()
    assert 0 < float(spent) <= 0.5
    refused = [
        c
        for number in prs
        for c in cluster.github.comments_on(REPO, number)
        if TAG in str(c["body"]) and "budget" in str(c["body"]).lower()
    ]
    assert refused, "the budget never refused an ask: the test does not test it"


def _patch(number: int) -> dict[str, Any]:
    return {
        "filename": f"src/module_{number}.py",
        "status": "modified",
        "patch": "@@ -1,2 +1,3 @@\n a\n+value = compute()\n b",
    }


async def test_a_push_to_one_replica_stops_the_outdated_review_on_another(
    cluster: Cluster,
) -> None:
    release = asyncio.Event()

    async def held(request: RecordedRequest) -> Outcome:
        await release.wait()
        script = cluster.gateway.script(request.provider or "anthropic")
        return Reply(script.review, script.usage)

    cluster.gateway.anthropic.respond_with(held)
    cluster.gateway.openai.respond_with(held)
    pull = cluster.github.add_pull(REPO, 7, head_sha="a" * 40, files=[_patch(7)])
    web = await cluster.start("web", SERVE_ROLE="web")
    worker = await cluster.start("worker", SERVE_ROLE="workers")
    # The workers-only replica takes no webhooks.
    async with cluster.session.post(f"{worker.url}/webhook", data=b"{}") as r:
        assert r.status in (404, 405)
    opened = pull_request_payload(
        "opened", repo=REPO, number=7, head_sha="a" * 40, installation_id=INSTALLATION
    )
    await cluster.send(web, "pull_request", opened, "opened-a")

    async def models_asked() -> bool:
        return len(cluster.gateway.requests) >= 2

    await wait_until(models_asked, "the worker replica to ask the models about head a")
    cluster.github.move_head(REPO, 7, "b" * 40, files=[_patch(7)])
    pushed = pull_request_payload(
        "synchronize",
        repo=REPO,
        number=7,
        head_sha="b" * 40,
        before="a" * 40,
        installation_id=INSTALLATION,
    )
    await cluster.send(web, "pull_request", pushed, "pushed-b")

    async def superseded() -> bool:
        return (await cluster.statuses()).get("opened-a") == DONE

    # The models about head a have not answered (they are held): only the web replica's notice
    # can have stopped that review.
    await wait_until(superseded, "the review of head a to stop")
    assert not release.is_set()
    release.set()

    async def reviewed_b() -> bool:
        runs = cluster.github.check_runs_for(REPO, "b" * 40)
        return any(r.name == CHECK_NAME and r.status == "completed" for r in runs)

    await wait_until(reviewed_b, "head b to be reviewed")
    reviews = [r for r in pull.reviews if r["_user"] == cluster.github.bot_login]
    assert [r["commit_id"] for r in reviews] == ["b" * 40]
    runs_a = [r for r in cluster.github.check_runs_for(REPO, "a" * 40) if r.name == CHECK_NAME]
    assert all(r.status == "completed" and r.conclusion != "success" for r in runs_a)


async def test_sigterm_finishes_work_in_hand_within_the_grace_period(cluster: Cluster) -> None:
    cluster.gateway.anthropic.latency = cluster.gateway.openai.latency = 1.0
    cluster.github.add_pull(REPO, 3, head_sha="c" * 40, files=[_patch(3)])
    server = await cluster.start("draining", SHUTDOWN_GRACE_SECONDS="20")
    opened = pull_request_payload(
        "opened", repo=REPO, number=3, head_sha="c" * 40, installation_id=INSTALLATION
    )
    await cluster.send(server, "pull_request", opened, "drain-me")

    async def in_flight() -> bool:
        return len(cluster.gateway.requests) >= 2

    await wait_until(in_flight, "the review to reach the models")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 20) == 0
    assert (await cluster.statuses())["drain-me"] == DONE
    runs = [r for r in cluster.github.check_runs_for(REPO, "c" * 40) if r.name == CHECK_NAME]
    assert [r.status for r in runs] == ["completed"]


async def test_sigterm_gives_back_work_that_cannot_finish_in_time(cluster: Cluster) -> None:
    cluster.gateway.anthropic.latency = cluster.gateway.openai.latency = 60.0
    cluster.github.add_pull(REPO, 4, head_sha="d" * 40, files=[_patch(4)])
    # A long lease: were the delivery not given back, nobody could take it for ten minutes.
    env = {"SHUTDOWN_GRACE_SECONDS": "0.5", "LEASE_SECONDS": "600"}
    first = await cluster.start("leaving", **env)
    opened = pull_request_payload(
        "opened", repo=REPO, number=4, head_sha="d" * 40, installation_id=INSTALLATION
    )
    await cluster.send(first, "pull_request", opened, "give-back")

    async def in_flight() -> bool:
        return len(cluster.gateway.requests) >= 2

    await wait_until(in_flight, "the review to reach the models")
    assert first.proc is not None
    first.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.proc.wait(), 20) == 0
    row = await cluster.queue.get("give-back")
    assert row is not None and row.status == QUEUED and row.attempts == 0
    # Another replica takes it at once and finishes it.
    cluster.gateway.anthropic.latency = cluster.gateway.openai.latency = 0.0
    await cluster.start("staying", **env)

    async def done() -> bool:
        return (await cluster.statuses()).get("give-back") == DONE

    await wait_until(done, "the other replica to finish the given-back delivery")
