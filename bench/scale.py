"""Scale benchmark: deliveries handled per second by 1 and by 2 worker processes on PostgreSQL.

One web-only server takes the webhooks; 1, then 2, workers-only servers (``python -m app serve
--workers-only``) share the work through a fresh PostgreSQL database each time. A fake GitHub
and a fake gateway (every model call taking a fixed time) run in this process. D pull requests
are opened at once; the figure is D divided by the wall time from the first delivery sent until
every check run is completed.

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/scale.py [--deliveries 200] [--latency 0.5] [--per-process 16]

``--per-process`` sets ``MAX_CONCURRENT_REVIEWS`` of each worker process: with it small, one
process is the bottleneck and the second one's share shows; with the default (64) a single
process already holds a burst of this size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.engine.url import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.burst import SECRET, Server  # noqa: E402
from bench.review import make_files  # noqa: E402
from tests.fakes.gateway import FakeGateway  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.webhooks import delivery_headers, pull_request_payload  # noqa: E402

REPO = "octo/scale"


async def fresh_database(base_url: str) -> tuple[str, str]:
    """A new database on the server; returns (its SQLAlchemy URL, the admin DSN)."""
    base = make_url(base_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"aig_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = base.set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False), admin


async def drop_database(admin: str, url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def run(processes: int, deliveries: int, latency: float, per_process: int) -> float:
    """Deliveries per second with ``processes`` worker processes."""
    github = FakeGitHub(validate=False)
    gateway = FakeGateway()
    await github.start()
    await gateway.start()
    github.add_repo(REPO)
    gateway.anthropic.latency = gateway.openai.latency = latency
    heads = {}
    for number in range(1, deliveries + 1):
        heads[number] = f"{number:08x}" * 5
        github.add_pull(REPO, number, head_sha=heads[number], files=make_files(3, 20))
    url, admin = await fresh_database(os.environ["TEST_DATABASE_URL"])
    env = {"DATABASE_URL": url, "MAX_CONCURRENT_REVIEWS": str(per_process)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ["web", *(f"w{i}" for i in range(processes))]:
                (Path(tmp) / name).mkdir()
            web = Server(Path(tmp) / "web", github, gateway, SERVE_ROLE="web", **env)
            workers = [
                Server(Path(tmp) / f"w{i}", github, gateway, SERVE_ROLE="workers", **env)
                for i in range(processes)
            ]
            async with web:
                for worker in workers:
                    await worker.__aenter__()
                try:
                    async with aiohttp.ClientSession() as session:

                        async def send(number: int, head: str) -> None:
                            body = json.dumps(
                                pull_request_payload(
                                    "opened", repo=REPO, number=number, head_sha=head
                                )
                            ).encode()
                            headers = delivery_headers(
                                "pull_request", body, SECRET, delivery_id=str(uuid.uuid4())
                            )
                            async with session.post(
                                f"{web.url}/webhook", data=body, headers=headers
                            ) as resp:
                                assert resp.status == 202, await resp.text()

                        started = time.perf_counter()
                        await asyncio.gather(*(send(n, h) for n, h in heads.items()))
                        while not all(
                            (runs := github.check_runs_for(REPO, head))
                            and runs[0].status == "completed"
                            for head in heads.values()
                        ):
                            await asyncio.sleep(0.01)
                        return deliveries / (time.perf_counter() - started)
                finally:
                    for worker in workers:
                        await worker.__aexit__()
    finally:
        await drop_database(admin, url)
        await gateway.close()
        await github.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=200, help="pull requests opened at once")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per model call")
    parser.add_argument(
        "--per-process", type=int, default=16, help="MAX_CONCURRENT_REVIEWS of each worker process"
    )
    args = parser.parse_args()
    if not os.environ.get("TEST_DATABASE_URL"):
        sys.exit("set TEST_DATABASE_URL to a PostgreSQL server (a fresh database is made on it)")
    one = await run(1, args.deliveries, args.latency, args.per_process)
    two = await run(2, args.deliveries, args.latency, args.per_process)
    print(
        f"{args.deliveries} PRs, model latency {args.latency:.2f} s, "
        f"MAX_CONCURRENT_REVIEWS={args.per_process} per process, PostgreSQL:"
    )
    print(f"  1 worker process:  {one:7.1f} deliveries/s")
    print(f"  2 worker processes: {two:7.1f} deliveries/s  ({two / one:.2f}x)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
