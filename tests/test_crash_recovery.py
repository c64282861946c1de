"""The crash case: a server process killed mid-delivery loses nothing and does nothing twice.

The real server runs as a subprocess (``python -m app serve``) against a FakeGitHub and a
FakeGateway served by this test process. The gateway is made slow so that reviews hang inside
the model stage, after their check run was created; the test waits until the deliveries table
shows them ``running`` and kills the process with SIGKILL (no shutdown hook runs). A new server
on the same database must then finish every delivery exactly once: one completed ``aigateway``
check run and one review per pull request, and nothing re-done for a delivery that had finished
before the crash.

On SQLite a restart re-queues whatever was running at once (one process owns the file); on
PostgreSQL the dead worker's lease has to expire, so the lease is made short there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from app.queue import DONE, QUEUED, RUNNING, Delivery, DeliveryQueue
from app.review.render import CHECK_NAME
from app.store.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub, Pull
from tests.fakes.webhooks import pull_request_payload, signed_delivery

ROOT = Path(__file__).resolve().parents[1]
APP_ID = 31337
INSTALLATION = 42
WORKERS = 2
TIMEOUT_S = 60.0
SLOW_MODEL_S = 30.0

DIFF = """\
diff --git a/src/feature.py b/src/feature.py
--- a/src/feature.py
+++ b/src/feature.py
@@ -1,3 +1,4 @@
 def feature():
-    return 1
+    value = 2
+    return value
 # end
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(
    *, db_url: str, rsa_key: tuple[str, str], github: FakeGitHub, gateway: FakeGateway
) -> dict[str, str]:
    # Nothing from the developer's environment that the server reads may leak in.
    ambient = ("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL", "LEASE_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ambient)}
    env.update(
        GITHUB_APP_ID=str(APP_ID),
        GITHUB_PRIVATE_KEY=rsa_key[0],
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GITHUB_API_URL=github.url,
        AIG_GATEWAY_URL=gateway.url,
        DATABASE_URL=db_url,
        MAX_CONCURRENT_REVIEWS=str(WORKERS),
        POLL_INTERVAL_SECONDS="0.1",
        RETRY_BASE_SECONDS="0",
        LOG_FORMAT="text",
        LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    if not db_url.startswith("sqlite"):
        # Another replica may still hold a PostgreSQL lease: recovery waits for it to expire.
        env["LEASE_SECONDS"] = "2"
    return env


class Server:
    """One ``python -m app serve`` process, its output kept in a file."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                env=self.env,
                cwd=self.workdir,  # no stray .env file is read
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

        async def ready() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"the server exited at start:\n{self.log()}")
            try:
                async with session.get(f"{self.url}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        try:
            await wait_until(ready, "the server to answer /healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook, no lease released, no transaction finished."""
        assert self.proc is not None
        self.proc.kill()
        assert await asyncio.wait_for(self.proc.wait(), TIMEOUT_S) == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {TIMEOUT_S:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class World:
    github: FakeGitHub
    gateway: FakeGateway
    queue: DeliveryQueue
    session: aiohttp.ClientSession
    env: dict[str, str]
    workdir: Path
    servers: list[Server]

    async def start_server(self) -> Server:
        server = Server(self.env, self.workdir, f"server-{len(self.servers) + 1}")
        self.servers.append(server)
        await server.start(self.session)
        return server

    def add_pull(self, name: str) -> Pull:
        repo = f"octo/{name}"
        self.github.add_repo(repo, installation_id=INSTALLATION)
        return self.github.add_pull(repo, 1, diff=DIFF, title=f"Change {name}")

    async def send(
        self, server: Server, pull: Pull, delivery_id: str, *, expect: int = 202
    ) -> None:
        payload = pull_request_payload(
            "opened",
            repo=pull.repo,
            number=pull.number,
            head_sha=pull.head_sha,
            installation_id=INSTALLATION,
        )
        headers, body = signed_delivery(
            "pull_request", payload, WEBHOOK_SECRET, delivery_id=delivery_id
        )
        async with self.session.post(f"{server.url}/webhook", data=body, headers=headers) as r:
            assert r.status == expect, await r.text()

    async def deliveries(self) -> dict[str, Delivery]:
        return {d.id: d for d in await self.queue.recent(limit=1000)}

    async def wait_for(self, statuses: dict[str, str]) -> dict[str, Delivery]:
        """Until each named delivery has its status; returns every delivery."""
        rows: dict[str, Delivery] = {}

        async def reached() -> bool:
            nonlocal rows
            rows = await self.deliveries()
            return all(d in rows and rows[d].status == s for d, s in statuses.items())

        try:
            await wait_until(reached, f"deliveries {statuses}")
        except AssertionError as exc:
            logs = "\n".join(f"--- {s.log_path.name}\n{s.log()[-4000:]}" for s in self.servers)
            now = {k: v.status for k, v in rows.items()}
            raise AssertionError(f"{exc}\nnow: {now}\n{logs}") from None
        return rows

    def gateway_calls(self, pull: Pull) -> int:
        return sum(
            1
            for r in self.gateway.requests
            if isinstance(r.metadata, dict) and r.metadata.get("repository") == pull.repo
        )

    def assert_handled_once(self, pull: Pull) -> None:
        runs = [
            r for r in self.github.check_runs_for(pull.repo, pull.head_sha) if r.name == CHECK_NAME
        ]
        assert [(r.status, r.conclusion) for r in runs] == [("completed", "success")], pull.repo
        reviews = [r for r in pull.reviews if r["_user"] == self.github.bot_login]
        assert [(r["commit_id"], r["state"]) for r in reviews] == [(pull.head_sha, "COMMENTED")]

    def assert_no_secret_in_logs(self, rsa_key: tuple[str, str]) -> None:
        logs = "\n".join(s.log() for s in self.servers)
        assert "Traceback" not in logs, logs[-4000:]
        key_lines = [line for line in rsa_key[0].splitlines() if line and "-----" not in line]
        assert self.github.tokens, "the servers never asked for an installation token"
        leaked = [s[:8] for s in [*self.github.tokens, *key_lines] if s in logs]
        assert leaked == []

    def slow_models(self, seconds: float) -> None:
        self.gateway.anthropic.latency = seconds
        self.gateway.openai.latency = seconds


@asynccontextmanager
async def world_for(db_url: str, rsa_key: tuple[str, str], workdir: Path) -> AsyncIterator[World]:
    db = Database.from_url(db_url)
    servers: list[Server] = []
    try:
        async with (
            FakeGitHub.serve(app_id=APP_ID) as github,
            FakeGateway() as gateway,
            aiohttp.ClientSession() as session,
        ):
            github.set_app_key(rsa_key[1], APP_ID)
            env = server_env(db_url=db_url, rsa_key=rsa_key, github=github, gateway=gateway)
            try:
                yield World(
                    github,
                    gateway,
                    DeliveryQueue(db, lease_seconds=300),
                    session,
                    env,
                    workdir,
                    servers,
                )
            finally:
                for server in servers:
                    await server.stop()
    finally:
        await db.dispose()


def statuses(rows: dict[str, Delivery], ids: Iterable[str]) -> list[str]:
    return [rows[i].status for i in ids]


async def test_deliveries_claimed_by_a_killed_server_are_handled_once_after_restart(
    db_url: str, rsa_key: tuple[str, str], tmp_path: Path
) -> None:
    async with world_for(db_url, rsa_key, tmp_path) as world:
        pulls = [world.add_pull(f"crash-{n}") for n in range(1, 4)]
        ids = [f"crash-delivery-{n}" for n in range(1, 4)]
        world.slow_models(SLOW_MODEL_S)
        first = await world.start_server()
        for pull, delivery_id in zip(pulls, ids, strict=True):
            await world.send(first, pull, delivery_id)

        # Both workers are stuck in the model stage; the third delivery waits its turn.
        async def mid_flight() -> bool:
            rows = await world.deliveries()
            running = [
                p
                for p, i in zip(pulls, ids, strict=True)
                if i in rows and rows[i].status == RUNNING
            ]
            return len(running) == WORKERS and all(world.gateway_calls(p) == 2 for p in running)

        await wait_until(mid_flight, "two deliveries to be mid-review")
        await first.kill()

        rows = await world.deliveries()
        assert sorted(statuses(rows, ids)) == sorted([RUNNING] * WORKERS + [QUEUED])
        assert len(world.github.calls("POST", r"/check-runs$")) == WORKERS
        assert [r.status for r in world.github.check_runs.values()] == ["in_progress"] * WORKERS
        assert all(p.reviews == [] for p in pulls)
        interrupted = [i for i in ids if rows[i].status == RUNNING]

        world.slow_models(0)
        second = await world.start_server()
        rows = await world.wait_for(dict.fromkeys(ids, DONE))

        for pull in pulls:
            world.assert_handled_once(pull)
        # The interrupted reviews resumed with the check runs they had created: none is left
        # behind in progress and none was created twice.
        assert len(world.github.calls("POST", r"/check-runs$")) == len(pulls)
        assert {i: rows[i].attempts for i in ids} == {i: 2 if i in interrupted else 1 for i in ids}
        assert all(rows[i].last_error is None for i in ids)
        await second.stop()
        world.assert_no_secret_in_logs(rsa_key)


async def test_a_delivery_finished_before_the_crash_is_not_handled_again(
    db_url: str, rsa_key: tuple[str, str], tmp_path: Path
) -> None:
    async with world_for(db_url, rsa_key, tmp_path) as world:
        finished = world.add_pull("finished")
        interrupted = world.add_pull("interrupted")
        first = await world.start_server()
        await world.send(first, finished, "before-crash")
        before = await world.wait_for({"before-crash": DONE})
        world.assert_handled_once(finished)
        github_seen = len(world.github.calls("*", f"^/repos/{finished.repo}/"))
        gateway_seen = world.gateway_calls(finished)
        assert github_seen > 0
        assert gateway_seen == 2  # Claude and GPT, once each

        world.slow_models(SLOW_MODEL_S)
        await world.send(first, interrupted, "at-crash")

        async def mid_flight() -> bool:
            rows = await world.deliveries()
            return (
                "at-crash" in rows
                and rows["at-crash"].status == RUNNING
                and world.gateway_calls(interrupted) == 2
            )

        await wait_until(mid_flight, "the second delivery to be mid-review")
        await first.kill()

        world.slow_models(0)
        second = await world.start_server()
        # GitHub redelivering the finished one to the new process changes nothing either.
        await world.send(second, finished, "before-crash", expect=200)
        rows = await world.wait_for({"before-crash": DONE, "at-crash": DONE})

        world.assert_handled_once(finished)
        world.assert_handled_once(interrupted)
        assert rows["before-crash"].attempts == 1
        assert rows["before-crash"].finished_at == before["before-crash"].finished_at
        assert rows["at-crash"].attempts == 2
        assert len(world.github.calls("*", f"^/repos/{finished.repo}/")) == github_seen
        assert world.gateway_calls(finished) == gateway_seen
        await second.stop()
        world.assert_no_secret_in_logs(rsa_key)
