"""Intake benchmark: signed deliveries at 50 concurrent connections, against the real server.

Starts ``python -m app serve`` on SQLite in a subprocess, and, in the same run, a bare aiohttp
server whose handler returns 200 (the ceiling of this machine with this load client). Each gets a
warm-up and then the same number of requests from one aiohttp client holding 50 connections.
Prints deliveries/s and p50/p99 acknowledgement latency for both, and the ratio.

    .venv/bin/python bench/intake.py [--requests 6000] [--concurrency 50]

Targets (issue 2): intake at least half the bare rate; p99 under 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SECRET = "bench-secret"
ROOT = Path(__file__).resolve().parents[1]

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def ok(request):
        await request.read()
        return web.Response(status=200, text="ok")

    app = web.Application(client_max_size=25 * 1024 * 1024)
    app.router.add_post("/webhook", ok)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(i: int) -> bytes:
    # A realistic-size delivery (~8 KB) of an event the workers really handle: a check suite
    # completing (it looks for pending merge intents on that commit; there are none).
    data = {
        "action": "completed",
        "check_suite": {
            "id": i,
            "head_sha": f"{i:040x}",
            "status": "completed",
            "conclusion": "success",
            "app": {"id": 99, "slug": "ci"},
            "pad": "x" * 7000,
        },
        "repository": {"full_name": "octo/bench", "name": "bench", "owner": {"login": "octo"}},
        "installation": {"id": 1},
        "sender": {"login": "octocat"},
    }
    return json.dumps(data).encode()


def headers_for(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "check_suite",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": f"sha256={digest}",
    }


async def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start")


async def load(url: str, requests: int, concurrency: int) -> tuple[float, list[float], int]:
    bodies = [payload(i) for i in range(min(requests, 200))]
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                body = bodies[i % len(bodies)]
                headers = headers_for(body)
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status not in (200, 202):
                        errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return requests / elapsed, latencies, errors


async def drain_time(health_url: str) -> float:
    began = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(health_url) as resp:
                if (await resp.json())["queue_depth"] == 0:
                    return time.perf_counter() - began
            await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(name: str, base: str, requests: int, concurrency: int) -> dict[str, float]:
    await wait_ready(f"{base}/healthz")
    await load(f"{base}/webhook", max(500, requests // 10), concurrency)  # warm-up
    rate, latencies, errors = await load(f"{base}/webhook", requests, concurrency)
    result = {
        "rate": rate,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": pct(latencies, 0.99),
        "errors": float(errors),
    }
    print(
        f"{name:<10} {rate:9.0f} deliveries/s   p50 {result['p50_ms']:6.2f} ms   "
        f"p99 {result['p99_ms']:6.2f} ms   errors {errors}"
    )
    return result


def start_app(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    env = {
        **os.environ,
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": pem,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bare_port, app_port = free_port(), free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        server = start_app(app_port, Path(tmp))
        try:
            print(f"{args.requests} requests, {args.concurrency} connections, ~8 KB payloads")
            ceiling = await measure(
                "bare", f"http://127.0.0.1:{bare_port}", args.requests, args.concurrency
            )
            ours = await measure(
                "aigateway", f"http://127.0.0.1:{app_port}", args.requests, args.concurrency
            )
            drained = await drain_time(f"http://127.0.0.1:{app_port}/healthz")
            print(f"queue drained by the workers {drained:.2f} s after the last acknowledgement")
        finally:
            for proc in (bare, server):
                proc.terminate()
                proc.wait(timeout=20)
    ratio = ours["rate"] / ceiling["rate"]
    print(f"ratio      {ratio:.2f} of the bare ceiling (target >= 0.50)")
    print(f"p99        {ours['p99_ms']:.2f} ms (target < 25 ms)")


if __name__ == "__main__":
    asyncio.run(main())
