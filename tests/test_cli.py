"""The command line, run as a user would: ``python -m app ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.queue import FAILED, QUEUED, DeliveryQueue, NewDelivery
from app.store import migrate
from app.store.db import Database
from tests.conftest import WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL"))
    }
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def server_env(rsa_key: tuple[str, str], sqlite_url: str) -> dict[str, str]:
    return {
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": rsa_key[0],
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "DATABASE_URL": sqlite_url,
    }


def test_serve_refuses_to_start_without_required_settings(tmp_path: Path) -> None:
    result = run_cli("serve", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "GITHUB_WEBHOOK_SECRET" in result.stderr
    assert "GITHUB_APP_ID" in result.stderr
    assert "GITHUB_PRIVATE_KEY" in result.stderr


def test_no_subcommand_means_serve(tmp_path: Path) -> None:
    result = run_cli(env={"GITHUB_WEBHOOK_SECRET": "x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "missing required settings: GITHUB_APP_ID" in result.stderr


def test_migrate(server_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli("migrate", env=server_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


async def test_deliveries_lists_failed_and_replay_requeues(
    server_env: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    db = Database.from_url(sqlite_url)
    await migrate.upgrade(db.engine)
    queue = DeliveryQueue(db, lease_seconds=30)
    await queue.insert_batch(
        [
            NewDelivery("ok-1", "push", None, 1, "octo/demo", None, "{}"),
            NewDelivery("bad-1", "pull_request", "opened", 1, "octo/demo", "octo/demo#1", "{}"),
        ]
    )
    claimed = await queue.claim("w", only_id="bad-1")
    assert claimed is not None
    await queue.fail("bad-1", "w", "GitHubBroken: 502")

    listed = run_cli("deliveries", "--failed", env=server_env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "bad-1" in listed.stdout and "GitHubBroken: 502" in listed.stdout
    assert "ok-1" not in listed.stdout

    as_json = run_cli("deliveries", "--json", env=server_env, cwd=tmp_path)
    assert {row["id"] for row in json.loads(as_json.stdout)} == {"ok-1", "bad-1"}

    replayed = run_cli("replay", "bad-1", env=server_env, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    row = await queue.get("bad-1")
    assert row is not None and row.status == QUEUED and row.attempts == 0

    unknown = run_cli("replay", "nope", env=server_env, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no delivery nope" in unknown.stderr
    assert [d.id for d in await queue.recent(status=FAILED)] == []
    await db.dispose()


def test_replay_file_runs_the_payload_through_the_handlers(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    payload = tmp_path / "install.json"
    payload.write_text(
        json.dumps({"action": "created", "installation": {"id": 5, "account": {"login": "octo"}}})
    )
    result = run_cli(
        "replay", "--file", str(payload), "--event", "installation", env=server_env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert ": done" in result.stdout
    assert "installation created for octo" in result.stderr
    # The server stops a moment after it started: no stray error from its intake process.
    assert "never retrieved" not in result.stderr
    assert "Traceback" not in result.stderr and " ERROR " not in result.stderr


def test_replay_file_errors_are_clear(server_env: dict[str, str], tmp_path: Path) -> None:
    no_event = run_cli("replay", "--file", "x.json", env=server_env, cwd=tmp_path)
    assert no_event.returncode == 2 and "needs --event" in no_event.stderr
    missing = run_cli("replay", "--file", "x.json", "--event", "push", env=server_env, cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read x.json" in missing.stderr


PATCH = """\
diff --git a/src/calc.py b/src/calc.py
index 1111111..2222222 100644
--- a/src/calc.py
+++ b/src/calc.py
@@ -1,2 +1,3 @@
 def div(a, b):
-    return a / b
+    # no zero check
+    return a / b if b else 0
"""


async def test_review_diff_reviews_a_local_patch_and_posts_nothing(tmp_path: Path) -> None:
    import asyncio

    from tests.fakes.gateway import FakeGateway

    patch = tmp_path / "change.patch"
    patch.write_text(PATCH)
    async with FakeGateway() as gateway:
        gateway.anthropic.set_review(verdict="comment", confidence=0.7)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_"))
        }
        env.update(
            {"AIG_GATEWAY_URL": gateway.url, "PYTHONPATH": str(ROOT), "MODEL_MAX_RETRIES": "0"}
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "review-diff",
            str(patch),
            "--json",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert {r["name"] for r in result["reviewers"]} == {"Claude", "GPT"}
    assert result["confidence"] <= 0.7
    assert result["risk_tier"] == "medium"
    providers = {r.provider for r in gateway.requests}
    assert providers == {"anthropic", "openai"}
    assert "src/calc.py" in gateway.requests[0].prompt


def test_review_diff_without_a_gateway_says_what_to_set(tmp_path: Path) -> None:
    patch = tmp_path / "change.patch"
    patch.write_text(PATCH)
    result = run_cli("review-diff", str(patch), env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "aigateway:" in result.stderr


def test_schema_and_check_config(tmp_path: Path) -> None:
    schema = run_cli("schema", env={}, cwd=tmp_path)
    assert schema.returncode == 0
    assert json.loads(schema.stdout)["title"].startswith("aigateway repository configuration")
    good = tmp_path / "good.yml"
    good.write_text("version: 1\nautonomy:\n  mode: act\n")
    assert run_cli("check-config", str(good), env={}, cwd=tmp_path).returncode == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\nreview:\n  enabled: maybe\n  colour: red\n")
    checked = run_cli("check-config", str(bad), env={}, cwd=tmp_path)
    assert checked.returncode == 1
    assert "bad.yml:3" in checked.stdout and "bad.yml:4" in checked.stdout


async def test_quota_prints_spend_against_each_budget(
    server_env: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    from app.quota import QuotaLedger
    from app.repo_config import QuotaConfig

    db = Database.from_url(sqlite_url)
    await migrate.upgrade(db.engine)
    ledger = QuotaLedger(db)
    granted = await ledger.reserve(
        repository="octo/demo", pr_number=3, amount_usd=0.5, budget=QuotaConfig(daily_usd=2.0)
    )
    await ledger.settle(granted, actual_usd=0.25)  # type: ignore[arg-type]
    await db.dispose()

    result = run_cli("quota", "--repo", "octo/demo", env=server_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "octo/demo" in result.stdout
    assert "$0.25" in result.stdout and "$2.00" in result.stdout
    everything = run_cli("quota", env=server_env, cwd=tmp_path)
    assert "octo/demo" in everything.stdout
