"""Burst benchmark: N pull requests opened at once, reviewed by the real server.

The server runs as its own process (``python -m app serve``, SQLite, default settings); a fake
GitHub and a fake gateway run in this one, every model call taking a fixed time. For each N a
fresh server is started, N ``pull_request opened`` deliveries (three files each) are sent at
once, and the wall time from the first send until every check run is completed is printed as a
multiple of the model latency. The first figure (N = 1 on a fresh server) is the first review
after start.

    .venv/bin/python bench/burst.py [--latency 1.0] [--sizes 1,10,40,100] [--repeat 1]

Targets (issue 22): 40 PRs within 2x the model latency; the first review after start within
0.3 s of the model latency.

Each line also prints the CPU the server used during the burst, and this process's (the fakes
do the same work whatever the server does: on a machine whose speed drifts, the ratio of the
two compares runs better than either). ``BURST_PROFILE=file`` samples the server with py-spy
(``BURST_RATE`` per second, 100 by default) into ``file``; ``BURST_THREADS=1`` prints the
server's CPU per thread; ``PYTHONPATH`` is passed on to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.review import make_files, pem  # noqa: E402
from tests.fakes.gateway import FakeGateway  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.webhooks import delivery_headers, pull_request_payload  # noqa: E402

SECRET = "bench-secret"
CPU: dict[int, float] = {}  # the server's CPU seconds during each burst
FAKES_CPU: dict[int, float] = {}  # this process's (the fake GitHub's and gateway's)
REPO = "octo/burst"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thread_cpu(pid: int) -> list[tuple[str, float]]:
    """Each thread of a process with its CPU time so far (user + system)."""
    threads = []
    for tid in sorted(Path(f"/proc/{pid}/task").iterdir()):
        stat = (tid / "stat").read_text().rsplit(")", 1)[1].split()
        used = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        threads.append(((tid / "comm").read_text().strip(), used))
    return threads


class Server:
    """``python -m app serve`` in a child process, pointed at the fakes."""

    def __init__(self, workdir: Path, github: FakeGitHub, gateway: FakeGateway, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key = workdir / "app.pem"
        key.write_text(pem())
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            "GITHUB_APP_ID": "1",
            "GITHUB_PRIVATE_KEY_PATH": str(key),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": github.url,
            "AIG_GATEWAY_URL": gateway.url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'burst.db'}",
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "MODEL_MAX_RETRIES": "0",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                try:
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("the server did not start")

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 30)


async def burst(n: int, latency: float, base: int) -> float:
    """Seconds from the first delivery sent until N check runs are completed, on a fresh server."""
    github = FakeGitHub(validate=False)
    gateway = FakeGateway()
    await github.start()
    await gateway.start()
    github.add_repo(REPO)
    gateway.anthropic.latency = latency
    gateway.openai.latency = latency
    heads = {}
    for i in range(n):
        number = base + i
        heads[number] = f"{number:08x}" * 5
        github.add_pull(REPO, number, head_sha=heads[number], files=make_files(3, 20))
    bodies = [
        json.dumps(pull_request_payload("opened", repo=REPO, number=number, head_sha=head)).encode()
        for number, head in heads.items()
    ]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), github, gateway)
            async with server, aiohttp.ClientSession() as session:
                # The server has just answered its first health check: nothing is warm but what
                # it prepared at start.

                async def send(body: bytes) -> None:
                    headers = delivery_headers(
                        "pull_request", body, SECRET, delivery_id=str(uuid.uuid4())
                    )
                    async with session.post(
                        f"{server.url}/webhook", data=body, headers=headers
                    ) as resp:
                        assert resp.status == 202, await resp.text()

                profile = os.environ.get("BURST_PROFILE")
                spy = None
                if profile and server.proc is not None:
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "-o",
                            profile,
                            "--pid",
                            str(server.proc.pid),
                            "-r",
                            os.environ.get("BURST_RATE", "100"),
                            "-f",
                            "raw",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1.0)
                cpu_before = server.cpu_seconds()
                fakes_before = time.process_time()
                started = time.perf_counter()
                await asyncio.gather(*(send(b) for b in bodies))
                while not all(
                    (runs := github.check_runs_for(REPO, head)) and runs[0].status == "completed"
                    for head in heads.values()
                ):
                    await asyncio.sleep(0.005)
                elapsed = time.perf_counter() - started
                CPU[n] = server.cpu_seconds() - cpu_before
                FAKES_CPU[n] = time.process_time() - fakes_before
                if os.environ.get("BURST_THREADS") and server.proc is not None:
                    for name, used in thread_cpu(server.proc.pid):
                        print(f"    thread {name} {used:.2f} s")
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait()
                return elapsed
    finally:
        await gateway.close()
        await github.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    parser.add_argument("--sizes", default="1,10,40,100", help="comma-separated burst sizes")
    parser.add_argument(
        "--repeat", type=int, default=1, help="bursts per size, each on a fresh server"
    )
    args = parser.parse_args()
    print(f"model latency {args.latency:.2f} s; wall time until every check run completed:")
    for index, n in enumerate(int(s) for s in args.sizes.split(",")):
        walls = []
        for attempt in range(max(1, args.repeat)):
            seconds = await burst(n, args.latency, base=1000 * (index + 1) + 100_000 * attempt)
            walls.append(seconds)
            print(
                f"  N = {n:>3}: {seconds:6.3f} s = {seconds / args.latency:5.2f} x the model"
                + f" latency; CPU: server {CPU[n]:.2f} s, fakes {FAKES_CPU[n]:.2f} s"
                + f" ({CPU[n] / max(FAKES_CPU[n], 1e-9):.1f}x)"
                + (f" (+{seconds - args.latency:.3f} s)" if n == 1 else "")
            )
        if len(walls) > 1:
            middle = statistics.median(walls)
            print(
                f"  N = {n:>3}: median of {len(walls)}: {middle / args.latency:.2f} x"
                + f" (from {min(walls) / args.latency:.2f} to {max(walls) / args.latency:.2f})"
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
