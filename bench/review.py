"""Review benchmark: our own overhead around the models, the diff at scale, and token economy.

Everything runs in this process: the real app (webhook, queue, workers, pipeline) served on
loopback, a fake GitHub and a fake gateway whose model calls take a fixed time.

    .venv/bin/python bench/review.py

Prints four figures (issue 3) and the GitHub request count:
1. a 40-file PR, every model call taking 1.0 s: delivery queued → review posted, minus 1.0 s
   (target < 0.3 s);
2. a 3,000-file, 20,000-line PR: time and peak memory to parse, slice and map it
   (targets < 1 s and < 200 MB);
3. prompt tokens sent (per model) / the diff's own tokens (target < 1.25);
4. tokens for a 10-line follow-up push on a 2,000-line PR / tokens of its full review
   (target < 0.1).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.review.diff import parse_github_files  # noqa: E402
from app.review.tokens import estimate_tokens  # noqa: E402
from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench import diff_scale  # noqa: E402
from tests.fakes.gateway import FakeGateway, Provider  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.webhooks import delivery_headers, pull_request_payload  # noqa: E402

SECRET = "bench-secret"
REPO = "octo/bench"
MODEL_LATENCY = 1.0


def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def make_files(count: int, lines_each: int, *, prefix: str = "src") -> list[dict[str, Any]]:
    files = []
    for i in range(count):
        body = "".join(
            f"+    value_{i}_{n} = compute(value_{i}_{n - 1}, {n})  # step {n}\n"
            for n in range(lines_each)
        )
        files.append(
            {
                "filename": f"{prefix}/module_{i}.py",
                "status": "added",
                "patch": f"@@ -0,0 +1,{lines_each} @@\n{body}".rstrip("\n"),
            }
        )
    return files


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.github = FakeGitHub(validate=False)
        self.gateway = FakeGateway()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Bench:
        await self.github.start()
        await self.gateway.start()
        self.github.add_repo(REPO)
        settings = Settings(
            github_app_id="1",
            github_private_key=pem(),
            github_webhook_secret=SECRET,
            github_api_url=self.github.url,
            aig_gateway_url=self.gateway.url,
            database_url=f"sqlite+aiosqlite:///{self.workdir / 'bench.db'}",
            workers=4,
            poll_interval_seconds=0.05,
            log_level="WARNING",
            model_max_retries=0,
            _env_file=None,
        )
        self.runner = web.AppRunner(create_app(settings), handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.gateway.close()
        await self.github.close()

    async def deliver(self, payload: dict[str, Any]) -> float:
        assert self.session is not None
        body = json.dumps(payload).encode()
        headers = delivery_headers("pull_request", body, SECRET, delivery_id=str(uuid.uuid4()))
        async with self.session.post(f"{self.url}/webhook", data=body, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
        return time.perf_counter()

    async def wait_reviews(self, number: int, count: int) -> float:
        while len(self.github.pull(REPO, number).reviews) < count:
            await asyncio.sleep(0.002)
        return time.perf_counter()

    def prompt_tokens(self, provider: Provider, since: int = 0) -> int:
        return sum(
            estimate_tokens(r.system) + estimate_tokens(r.prompt)
            for r in self.gateway.requests_for(provider)[since:]
        )


async def overhead_40_files(bench: Bench, number: int) -> tuple[dict[str, float], list[str]]:
    files = make_files(40, 25)
    head = f"{number:x}" * 40
    bench.github.add_pull(REPO, number, head_sha=head, files=files)
    bench.gateway.anthropic.latency = MODEL_LATENCY
    bench.gateway.openai.latency = MODEL_LATENCY
    before = len(bench.github.requests)
    calls_before = len(bench.gateway.requests_for("anthropic"))
    queued = await bench.deliver(
        pull_request_payload("opened", repo=REPO, number=number, head_sha=head)
    )
    posted = await bench.wait_reviews(number, 1)
    while bench.github.check_runs_for(REPO, head)[0].status != "completed":
        await asyncio.sleep(0.002)
    requests = bench.github.requests[before:]
    diff_tokens = sum(
        estimate_tokens(
            f"--- a/{f.path}\n+++ b/{f.path}\n"
            + "".join(line.text + "\n" for h in f.hunks for line in h.lines)
        )
        for f in parse_github_files(files)
    )
    figures = {
        "elapsed_s": posted - queued,
        "overhead_s": posted - queued - MODEL_LATENCY,
        "github_requests": float(len(requests)),
        "slices": float(len(bench.gateway.requests_for("anthropic")) - calls_before),
        "prompt_over_diff": bench.prompt_tokens("anthropic", calls_before) / diff_tokens,
    }
    return figures, [f"{r.method} {r.path}" for r in requests]


async def follow_up_ratio(bench: Bench) -> dict[str, float]:
    bench.gateway.anthropic.latency = 0.0
    bench.gateway.openai.latency = 0.0
    files = make_files(40, 50, prefix="lib")  # 2,000 added lines
    head, head2 = "2" * 40, "3" * 40
    bench.github.add_pull(REPO, 2, head_sha=head, files=files)
    start = len(bench.gateway.requests_for("anthropic"))
    await bench.deliver(pull_request_payload("opened", repo=REPO, number=2, head_sha=head))
    await bench.wait_reviews(2, 1)
    full = bench.prompt_tokens("anthropic", start)
    follow = {
        "filename": "lib/module_0.py",
        "status": "modified",
        "patch": "@@ -50,0 +51,10 @@\n"
        + "".join(f"+    extra_{n} = {n}\n" for n in range(10)).rstrip("\n"),
    }
    bench.github.move_head(REPO, 2, head2, files=[*files[1:], {**files[0]}])
    bench.github.set_compare(REPO, head, head2, files=[follow])
    middle = len(bench.gateway.requests_for("anthropic"))
    await bench.deliver(
        pull_request_payload("synchronize", repo=REPO, number=2, head_sha=head2, before=head)
    )
    await bench.wait_reviews(2, 2)
    incremental = bench.prompt_tokens("anthropic", middle)
    return {
        "full_tokens": float(full),
        "follow_up_tokens": float(incremental),
        "ratio": incremental / full,
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with Bench(Path(tmp)) as bench:
            cold, _ = await overhead_40_files(bench, 10)  # the first review after start
            figures, requests = await overhead_40_files(bench, 11)
            follow = await follow_up_ratio(bench)
    scale = diff_scale.run()
    print(
        f"(1) first review after start: own overhead {cold['overhead_s']:.3f} s "
        "(connections, token, statement caches)"
    )
    print(
        f"(1) 40-file PR, model latency {MODEL_LATENCY:.1f} s: queued -> review posted "
        f"{figures['elapsed_s']:.3f} s, own overhead {figures['overhead_s']:.3f} s (target < 0.3 s)"
    )
    print(
        f"    {int(figures['slices'])} slice(s) per model; {int(figures['github_requests'])} GitHub "
        f"requests (target about 15): {', '.join(requests)}"
    )
    seconds = max(scale["files_api_seconds_median"], scale["unified_diff_seconds_median"])
    peak = max(scale["files_api_peak_mb"], scale["unified_diff_peak_mb"])
    print(
        f"(2) 3,000 files / 20,000 lines, parse + slice + map (worse of the two input formats): "
        f"{seconds:.3f} s, peak {peak:.1f} MB (targets < 1 s, < 200 MB)"
    )
    print(
        f"(3) prompt tokens / diff tokens (40-file PR, per model, system prompt included): "
        f"{figures['prompt_over_diff']:.3f} (target < 1.25)"
    )
    print(
        f"(4) 10-line follow-up on a 2,000-line PR: {int(follow['follow_up_tokens'])} / "
        f"{int(follow['full_tokens'])} tokens = {follow['ratio']:.3f} (target < 0.1)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
