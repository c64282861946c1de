"""Intake benchmark: signed deliveries at 50 concurrent connections, against the real server.

Starts ``python -m app serve`` on SQLite in a subprocess and, in the same run, bare aiohttp
servers whose handler reads the body and returns 200: the ceiling of this machine with this load
client, once on aiohttp's default (asyncio) loop and once on uvloop, the loop the server picks by
default. Every server gets a warm-up and then the same timed load from the same client. Prints
deliveries/s and p50/p99 acknowledgement latency for each, and the ratios.

    .venv/bin/python bench/intake.py [--seconds 10] [--concurrency 50] [--client auto|wrk|python]

The load client is ``wrk`` when it is installed (``apt-get install wrk``): written in C, it
costs the machine little per request, so the figures are the servers'. Without it, a lean
asyncio client in a second process stands in; it saturates sooner, and the output says which
client ran. (A client built on aiohttp's ``ClientSession`` is slower than the bare server it
measures: its figures are the client's, not the servers'.)

Targets (issue 2): intake at least half the bare rate; p99 under 25 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SECRET = "bench-secret"
ROOT = Path(__file__).resolve().parents[1]
BODIES = 20  # distinct payloads the client cycles through; each request has its own delivery id

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web

    async def ok(request):
        await request.read()
        return web.Response(status=200, text="ok")

    app = web.Application(client_max_size=25 * 1024 * 1024)
    app.router.add_post("/webhook", ok)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    loop = None
    if sys.argv[2] == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
                loop=loop)
    """
)

WRK_SCRIPT = textwrap.dedent(
    """
    local bodies = {BODIES}
    local signatures = {SIGNATURES}
    local counter = 0
    local prefix = ""

    function init(args)
      prefix = args[1]  -- new for every run, so no run repeats another's delivery ids
    end

    function request()
      counter = counter + 1
      local i = counter % #bodies + 1
      return wrk.format("POST", "/webhook", {
        ["Content-Type"] = "application/json",
        ["X-GitHub-Event"] = "check_suite",
        ["X-GitHub-Delivery"] = prefix .. "-" .. counter,
        ["X-Hub-Signature-256"] = signatures[i],
      }, bodies[i])
    end

    function done(summary, latency, requests)
      io.write(string.format(
        'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
        .. '"errors": %d}\\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        summary.errors.connect + summary.errors.read + summary.errors.write
          + summary.errors.status + summary.errors.timeout))
    end
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


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start")


def queue_depth(base: str) -> int:
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:  # noqa: S310
        return int(json.load(resp)["queue_depth"])


# ---------------------------------------------------------------------------- load clients


def run_wrk(wrk: str, script: Path, url: str, seconds: int, concurrency: int) -> dict[str, Any]:
    prefix = uuid.uuid4().hex[:12]
    out = subprocess.run(
        [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url, "--", prefix],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    return {
        "rate": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["errors"],
        "requests": raw["requests"],
    }


PYTHON_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time, uuid

    host, port, seconds, concurrency = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    bodies = json.loads(sys.stdin.read())
    requests = []
    for body, sig in bodies:
        data = body.encode()
        requests.append((
            (f"POST /webhook HTTP/1.1\\r\\nHost: {host}\\r\\nContent-Type: application/json\\r\\n"
             f"X-GitHub-Event: check_suite\\r\\nX-Hub-Signature-256: {sig}\\r\\n"
             f"Content-Length: {len(data)}\\r\\nX-GitHub-Delivery: ").encode(),
            data,
        ))
    prefix = uuid.uuid4().hex[:8]
    latencies, errors, counter = [], 0, 0

    async def connection(deadline):
        global errors, counter
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < deadline:
            counter += 1
            head, data = requests[counter % len(requests)]
            started = time.perf_counter()
            writer.write(head + f"{prefix}-{counter}\\r\\n\\r\\n".encode() + data)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\\r\\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status_line.split()[1] not in (b"200", b"202"):
                errors += 1
        writer.close()

    async def main():
        began = time.perf_counter()
        await asyncio.gather(*(connection(began + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        latencies.sort()
        print(json.dumps({
            "rate": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
            "errors": errors, "requests": len(latencies),
        }))

    asyncio.run(main())
    """
)


def run_python(
    bodies: list[tuple[str, str]], port: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PYTHON_CLIENT,
            "127.0.0.1",
            str(port),
            str(seconds),
            str(concurrency),
        ],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


# ---------------------------------------------------------------------------- servers


def start_bare(port: int, loop: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port), loop])


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
        "LOG_LEVEL": "ERROR",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10, help="timed load per server")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()

    wrk = shutil.which("wrk") if args.client in {"auto", "wrk"} else None
    if args.client == "wrk" and wrk is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    bodies = [(payload(i).decode(), signature(payload(i))) for i in range(BODIES)]

    try:
        import uvloop  # noqa: F401

        loops = ["asyncio", "uvloop"]
    except ImportError:
        loops = ["asyncio"]

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "deliveries.lua"
        lua_list = "{" + ", ".join(json.dumps(b) for b, _ in bodies) + "}"
        lua_sigs = "{" + ", ".join(json.dumps(s) for _, s in bodies) + "}"
        script.write_text(
            WRK_SCRIPT.replace("{BODIES}", lua_list).replace("{SIGNATURES}", lua_sigs)
        )

        def load(port: int, seconds: int) -> dict[str, Any]:
            if wrk is not None:
                return run_wrk(
                    wrk, script, f"http://127.0.0.1:{port}/webhook", seconds, args.concurrency
                )
            return run_python(bodies, port, seconds, args.concurrency)

        def measure(name: str, port: int) -> dict[str, Any]:
            wait_ready(f"http://127.0.0.1:{port}/healthz")
            load(port, max(2, args.seconds // 4))  # warm-up
            result = load(port, args.seconds)
            print(
                f"{name:<16} {result['rate']:7.0f} deliveries/s   p50 {result['p50_ms']:6.2f} ms"
                f"   p99 {result['p99_ms']:6.2f} ms   errors {result['errors']}"
            )
            return result

        client = (
            f"wrk ({wrk})"
            if wrk
            else "python asyncio client (install wrk for server-bound figures)"
        )
        print(
            f"load client: {client}; {args.concurrency} connections, {args.seconds} s per server, "
            "~8 KB payloads"
        )
        results: dict[str, dict[str, Any]] = {}
        for loop in loops:
            port = free_port()
            proc = start_bare(port, loop)
            try:
                results[loop] = measure(f"bare ({loop})", port)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
        port = free_port()
        server = start_app(port, Path(tmp))
        try:
            ours = measure("aigateway", port)
            began = time.perf_counter()
            while queue_depth(f"http://127.0.0.1:{port}") > 0:
                time.sleep(0.2)
            drained = time.perf_counter() - began
            print(f"queue drained by the workers {drained:.1f} s after the last acknowledgement")
        finally:
            server.terminate()
            server.wait(timeout=30)

    for loop, bare in results.items():
        print(f"ratio vs bare ({loop}) {ours['rate'] / bare['rate']:.2f} (target >= 0.50)")
    print(f"p99        {ours['p99_ms']:.2f} ms (target < 25 ms)")


if __name__ == "__main__":
    main()
