"""Coding-agent jobs end to end: a fake agent (a Python script) run in a checkout of the fake
GitHub's tarball; its output, its diff, the sandbox allowlist, the job cap, timeouts, the
environment it gets, and jobs cut off by a restart."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from app.api.jobs import INTERRUPTED, JobStore
from app.server import create_app
from app.store import migrate
from app.store.db import Database
from tests.api_env import ApiEnv, start_api, wait_job
from tests.conftest import WEBHOOK_SECRET, SettingsFactory
from tests.harness import GATEWAY_TOKEN, ClientFactory, ServerFactory

AGENT = textwrap.dedent(
    """\
    import json, os, pathlib, sys, time

    flag, sandbox, prompt = sys.argv[1:4]
    mode, _, arg = prompt.partition(" ")
    if mode == "edit":
        readme = pathlib.Path("README.md")
        readme.write_text(readme.read_text() + "Edited by the agent.\\n")
        pathlib.Path("NOTES.txt").write_text("new file\\n")
        pathlib.Path("src/old.py").unlink()
        print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}))
        print("working on it", file=sys.stderr)
    elif mode == "wait":
        pathlib.Path(arg + ".started").write_text(str(os.getpid()))
        for _ in range(6000):
            if pathlib.Path(arg).exists():
                break
            time.sleep(0.01)
        print("released")
    elif mode == "hang":
        pathlib.Path(arg).write_text(str(os.getpid()))
        time.sleep(3600)
    elif mode == "fail":
        print("cannot do that", file=sys.stderr)
        sys.exit(3)
    elif mode == "chatty":
        sys.stdout.write("x" * 5_000_000)
    """
)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: subprocesses and checkouts make these slow; JobStore runs on both databases
    in test_api_jobstore.py."""
    return sqlite_url


@pytest.fixture
def agent(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    return (sys.executable, str(script))


@pytest.fixture
def job_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def api(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
    agent: tuple[str, ...],
    job_settings: dict[str, Any],
) -> ApiEnv:
    env = await start_api(
        aiohttp_client,
        aiohttp_server,
        make_settings,
        rsa_key,
        tmp_path,
        api_agent_command=agent,
        api_agent_sandboxes=("workspace-write", "read-only"),
        **job_settings,
    )
    env.github.set_file("octo/demo", "README.md", "# demo\n")
    env.github.set_file("octo/demo", "src/old.py", "print('old')\n")
    env.github.set_file("octo/demo", "src/app.py", "print('app')\n")
    return env


async def _create(api: ApiEnv, prompt: str, **fields: Any) -> Any:
    return await api.client.post(
        "/v1/ai/execute/jobs",
        json={"prompt": prompt, "source_repository": "octo/demo", **fields},
        headers=api.bearer(),
    )


async def _job(api: ApiEnv, prompt: str, **fields: Any) -> dict[str, Any]:
    response = await _create(api, prompt, **fields)
    assert response.status == 202, await response.text()
    created: dict[str, Any] = await response.json()
    assert created["status"] == "queued"
    return created


async def _started(path: Path) -> None:
    """Until the agent says it runs (generous deadline; no timing is asserted)."""
    for _ in range(3000):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the agent never wrote {path}")


async def test_a_job_runs_the_agent_in_a_checkout_and_reports_its_diff(
    api: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Server secrets in the server's environment must not reach the agent.
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("CF_AIG_TOKEN", GATEWAY_TOKEN)
    created = await _job(api, "edit the readme")
    job = await wait_job(api, created["id"])
    assert job["status"] == "succeeded", job
    assert (job["exit_code"], job["error"], job["sandbox"], job["ref"]) == (
        0,
        None,
        "workspace-write",
        "main",
    )
    seen = json.loads(job["output"].splitlines()[0])
    assert seen["argv"] == ["--sandbox", "workspace-write", "edit the readme"]
    env = seen["env"]
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"}
    assert not any(secret in json.dumps(env) for secret in api.settings.secret_values())
    assert env["HOME"].startswith(str(Path(seen["cwd"]).parent))
    assert job["stderr"] == "working on it\n"

    diff = job["diff"]
    assert "diff --git a/README.md b/README.md\n" in diff
    assert "+Edited by the agent.\n" in diff
    assert "diff --git a/NOTES.txt b/NOTES.txt\nnew file mode 100644\n" in diff
    assert "deleted file mode 100644\n--- a/src/old.py\n+++ /dev/null\n" in diff
    assert "src/app.py" not in diff
    # The checkout was made and removed: nothing of it is left.
    assert not await asyncio.to_thread(Path(seen["cwd"]).exists)
    # The download URL got no token (the fake GitHub answers 400 to one that carries it).
    assert api.github.calls("GET", r"/_codeload/octo/demo/")

    events = [
        (e["event"], e["endpoint"], e["outcome"])
        for e in api.audit()
        if e.get("job_id") == created["id"] and e["endpoint"] != "getJob"
    ]
    assert events == [("api.request", "createJob", "ok"), ("api.job", "job", "succeeded")]
    assert "edit the readme" not in api.audit_path.read_text()


async def test_the_agent_gets_only_the_variables_named_for_it(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
    agent: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_CREDENTIAL", "the-agent's-own-key")
    monkeypatch.setenv("UNRELATED", "not for the agent")
    api = await start_api(
        aiohttp_client,
        aiohttp_server,
        make_settings,
        rsa_key,
        tmp_path,
        api_agent_command=agent,
        api_agent_env=("AGENT_CREDENTIAL",),
    )
    api.github.set_file("octo/demo", "README.md", "# demo\n")
    api.github.set_file("octo/demo", "src/old.py", "x\n")
    job = await wait_job(api, (await _job(api, "edit it", sandbox="read-only"))["id"])
    env = json.loads(job["output"].splitlines()[0])["env"]
    assert env["AGENT_CREDENTIAL"] == "the-agent's-own-key"
    assert "UNRELATED" not in env


async def test_a_sandbox_outside_the_allowlist_is_refused(api: ApiEnv) -> None:
    response = await _create(api, "edit", sandbox="danger-full-access")
    assert response.status == 403
    body = await response.json()
    assert body["error"] == "sandbox_not_allowed"
    assert "workspace-write, read-only" in body["message"]
    assert api.github.calls("GET", "/tarball/") == []


async def test_a_prompt_that_reads_as_an_option_is_refused(api: ApiEnv) -> None:
    response = await _create(api, "--dangerously-bypass-approvals-and-sandbox")
    assert response.status == 422


@pytest.mark.parametrize("job_settings", [{"api_max_jobs": 1}])
async def test_the_next_job_past_the_cap_gets_429(api: ApiEnv, tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = await _job(api, f"wait {release}")
    await _started(Path(f"{release}.started"))
    busy = await _create(api, "edit")
    assert busy.status == 429
    assert busy.headers["Retry-After"] == "30"
    assert (await busy.json())["error"] == "jobs_busy"
    health = await (await api.client.get("/v1/ai/health", headers=api.bearer())).json()
    assert (health["jobs_running"], health["jobs_max"]) == (1, 1)
    release.write_text("go")
    done = await wait_job(api, first["id"])
    assert (done["status"], done["output"]) == ("succeeded", "released\n")
    await wait_job(api, (await _job(api, "edit"))["id"])  # the slot is free again


@pytest.mark.parametrize(
    "job_settings", [{"api_agent_timeout_seconds": 0.5, "api_job_output_bytes": 2048}]
)
async def test_failures_timeouts_and_floods_end_the_job_cleanly(
    api: ApiEnv, tmp_path: Path
) -> None:
    failed = await wait_job(api, (await _job(api, "fail"))["id"])
    assert (failed["status"], failed["exit_code"]) == ("failed", 3)
    assert failed["error"] == "the command exited with 3"
    assert failed["stderr"] == "cannot do that\n"

    pid_file = tmp_path / "hang.pid"
    hung = await wait_job(api, (await _job(api, f"hang {pid_file}"))["id"])
    assert hung["status"] == "failed" and hung["error"].startswith("timeout")
    assert hung["exit_code"] is None
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed with its process group

    chatty = await wait_job(api, (await _job(api, "chatty"))["id"])
    assert chatty["status"] == "succeeded"
    assert chatty["output"].startswith("x" * 2048)
    assert chatty["output"].endswith(f"[{5_000_000 - 2048} more bytes of output were dropped]\n")


async def test_jobs_are_authorised_as_their_repository(api: ApiEnv) -> None:
    created = await _job(api, "edit")
    await wait_job(api, created["id"])
    other_org = api.oidc(repository="acme/ci")
    response = await api.client.get(f"/v1/ai/execute/jobs/{created['id']}", headers=other_org)
    assert response.status == 403
    missing = await api.client.get(
        "/v1/ai/execute/jobs/00000000-0000-0000-0000-000000000000", headers=api.bearer()
    )
    assert missing.status == 404
    not_installed = await _create(api, "edit", source_repository="octo/other")
    assert not_installed.status == 422


async def test_a_job_cut_off_by_a_restart_ends_failed_interrupted(
    api: ApiEnv,
    aiohttp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    release = tmp_path / "never"
    running = await _job(api, f"wait {release}")
    await _started(Path(f"{release}.started"))
    # A crash: a row another process left running (no process holds it any more).
    db = Database.from_url(api.settings.database_url)
    try:
        await migrate.upgrade(db.engine)
        store = JobStore(db)
        orphan = await store.create(
            repository="octo/demo",
            ref="main",
            sandbox="read-only",
            caller="static-token",
            caller_owner=None,
            runner="a-process-that-died",
        )
        assert await store.start(orphan.id)
    finally:
        await db.dispose()

    await api.client.close()  # the server stops: its running job is killed and interrupted
    client = await aiohttp_client(create_app(api.settings, run_workers=False))
    api.client = client
    for job_id in (running["id"], orphan.id):
        job = await wait_job(api, job_id)
        assert (job["status"], job["error"]) == ("failed", INTERRUPTED)
        assert job["finished_at"] is not None
