"""Runs coding-agent jobs: a checkout, the configured command in it, its output and its diff.

At most ``API_MAX_JOBS`` jobs are active in this process at once; the next is refused with
:class:`JobsBusy` (the API answers 429) rather than queued behind work of unknown length. The
count is taken and the slot held before anything is awaited, so concurrent requests cannot both
take the last slot.

The command is ``API_AGENT_COMMAND`` followed by ``API_AGENT_SANDBOX_FLAG``, the sandbox the
caller chose from ``API_AGENT_SANDBOXES`` and the prompt, run with asyncio's subprocess:

- in the writable copy of the checkout, with stdin closed (an agent waiting for input would
  otherwise wait for ever);
- with a minimal environment: ``PATH``, a ``HOME`` and ``TMPDIR`` of its own inside the job's
  folder, a UTF-8 locale, and only the variables ``API_AGENT_ENV`` names; never a value that is
  one of the server's secrets;
- in a session of its own, so a timeout (``API_AGENT_TIMEOUT_SECONDS``) or a shutdown kills the
  command and everything it started;
- stdout and stderr read as they come and kept up to ``API_JOB_OUTPUT_BYTES`` each, the rest
  read and dropped, so a chatty command can neither block nor fill memory.

The job's folder is removed afterwards whatever happened. A job the server stops (shutdown) ends
``failed: interrupted``, as one a crash cut off does at the next start (:mod:`app.api.jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

import aiohttp

from app.api.checkout import CheckoutError, download_tarball, prepare_trees, tree_diff
from app.api.jobs import FAILED, INTERRUPTED, SUCCEEDED, JobRow, JobStore
from app.github.auth import AppAuth
from app.settings import Settings
from app.store.types import utcnow

__all__ = [
    "CommandError",
    "CommandResult",
    "JobRunner",
    "JobSpec",
    "JobsBusy",
    "agent_env",
    "run_command",
]

log = logging.getLogger(__name__)

#: How often a runner says it still holds its jobs; a heartbeat three times older is a dead one.
HEARTBEAT_SECONDS: Final = 30.0
#: What a caller refused for want of a slot is told to wait before asking again.
BUSY_RETRY_AFTER_SECONDS: Final = 30.0
READ_CHUNK: Final = 1 << 16

#: Told how each job ended (its id, what it ran, its status and error), before its row is.
FinishHook = Callable[[str, "JobSpec", str, str | None], None]


class JobsBusy(Exception):
    """Every job slot is taken."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} jobs are running, the most this server runs at once")
        self.retry_after = BUSY_RETRY_AFTER_SECONDS


class CommandError(Exception):
    """The command could not be started (not found, not executable)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None  # None when it was killed at the timeout
    stdout: str
    stderr: str
    timed_out: bool


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What one job runs; the prompt lives only here, never in a row or a log line."""

    repository: str
    installation_id: int
    ref: str | None
    sandbox: str
    prompt: str
    caller: str  # the audit's name for who asked
    caller_owner: str | None  # the OIDC token's repository owner, kept on the row


@dataclass(frozen=True, slots=True)
class _Ending:
    """How a job ended, as its row will say."""

    status: str
    exit_code: int | None = None
    output: str | None = None
    stderr: str | None = None
    diff: str | None = None
    error: str | None = None


class _Capture:
    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.dropped = 0
        self._limit = limit

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(READ_CHUNK):
            room = self._limit - len(self.data)
            self.data += chunk[:room]
            self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[{self.dropped} more bytes of output were dropped]\n"
        return text


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    max_output: int,
) -> CommandResult:
    """Run ``argv`` (see the module docstring); a timeout kills its whole process group."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
    out, err = _Capture(max_output), _Capture(max_output)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(out.drain(process.stdout), err.drain(process.stderr))
            code = await process.wait()
        return CommandResult(code, out.text(), err.text(), timed_out=False)
    except TimeoutError:
        _kill(process)
        await process.wait()
        return CommandResult(None, out.text(), err.text(), timed_out=True)
    finally:
        if process.returncode is None:  # cancelled: the server is stopping
            _kill(process)
            await process.wait()


def agent_env(settings: Settings, *, home: Path, tmp: Path) -> dict[str, str]:
    """The command's whole environment (see the module docstring)."""
    env = {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    secrets = set(settings.secret_values())
    for name in settings.api_agent_env:
        value = os.environ.get(name)
        if value is not None and value not in secrets:
            env[name] = value
    return env


class JobRunner:
    """This process's jobs: the cap, the tasks, their heartbeat, and what a start finds left."""

    def __init__(
        self,
        *,
        store: JobStore,
        settings: Settings,
        session: aiohttp.ClientSession,
        auth: AppAuth,
        is_sqlite: bool,
        on_finish: FinishHook | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.instance = uuid.uuid4().hex
        self._session = session
        self._auth = auth
        self._is_sqlite = is_sqlite
        self._on_finish = on_finish
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._held = 0
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def active(self) -> int:
        """Jobs holding a slot now (being created, queued or running)."""
        return self._held

    @property
    def limit(self) -> int:
        return self.settings.api_max_jobs

    async def start(self) -> list[str]:
        """Fail the jobs no live process holds any more, then beat; returns the failed ids."""
        interrupted = await self._interrupt_orphans()
        if interrupted:
            log.warning(
                "%d API jobs were interrupted by the last shutdown",
                len(interrupted),
                extra={"job_ids": interrupted},
            )
        self._heartbeat = asyncio.create_task(self._beat(), name="api-job-heartbeat")
        return interrupted

    async def stop(self) -> None:
        """Kill every running command and mark its job interrupted."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def submit(self, spec: JobSpec) -> JobRow:
        """Create the job's row and start it; :class:`JobsBusy` when every slot is taken."""
        if self._held >= self.limit:
            raise JobsBusy(self.limit)
        self._held += 1  # before any await: two requests cannot both take the last slot
        try:
            row = await self.store.create(
                repository=spec.repository,
                ref=spec.ref,
                sandbox=spec.sandbox,
                caller=spec.caller,
                caller_owner=spec.caller_owner,
                runner=self.instance,
            )
        except BaseException:
            self._held -= 1
            raise
        task = asyncio.create_task(self._run(row.id, spec), name=f"api-job-{row.id}")
        self._tasks[row.id] = task
        task.add_done_callback(lambda _: self._release(row.id))
        return row

    def _release(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._held -= 1

    async def _run(self, job_id: str, spec: JobSpec) -> None:
        """Run the job, remove its folder, then record how it ended: a caller that sees the
        job ended can rely on its checkout being gone."""
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="aigateway-job-"))
        try:
            try:
                await self.store.start(job_id)
                ending = await self._execute(spec, folder)
            finally:
                await asyncio.to_thread(shutil.rmtree, folder, True)
        except asyncio.CancelledError:
            await self._finish(job_id, spec, _Ending(FAILED, error=INTERRUPTED))
            raise
        except (CheckoutError, CommandError) as exc:
            prefix = "checkout: " if isinstance(exc, CheckoutError) else ""
            ending = _Ending(FAILED, error=f"{prefix}{exc}")
        except Exception as exc:
            log.exception("API job %s failed", job_id)
            ending = _Ending(FAILED, error=f"internal error: {type(exc).__name__}")
        await self._finish(job_id, spec, ending)

    async def _finish(self, job_id: str, spec: JobSpec, ending: _Ending) -> None:
        # The hook (the audit event) first: once the row says the job ended, all is said.
        if self._on_finish is not None:
            try:
                self._on_finish(job_id, spec, ending.status, ending.error)
            except Exception:
                log.exception("the end of API job %s could not be reported", job_id)
        await self.store.finish(
            job_id,
            status=ending.status,
            exit_code=ending.exit_code,
            output=ending.output,
            stderr=ending.stderr,
            diff=ending.diff,
            error=ending.error,
        )

    async def _execute(self, spec: JobSpec, folder: Path) -> _Ending:
        settings = self.settings
        archive = folder / "checkout.tar.gz"
        pristine, work, home, tmp = (folder / n for n in ("pristine", "work", "home", "tmp"))
        token = await self._auth.installation_token(spec.installation_id)
        await download_tarball(
            self._session,
            api_url=self._auth.api_url,
            token=token,
            repository=spec.repository,
            ref=spec.ref,
            dest=archive,
            max_bytes=settings.api_checkout_max_bytes,
        )
        await asyncio.to_thread(
            prepare_trees, archive, pristine, work, max_bytes=settings.api_checkout_max_bytes
        )
        archive.unlink()
        home.mkdir()
        tmp.mkdir()
        argv = [
            *settings.api_agent_command,
            settings.api_agent_sandbox_flag,
            spec.sandbox,
            spec.prompt,
        ]
        started = time.monotonic()
        result = await run_command(
            argv,
            cwd=work,
            env=agent_env(settings, home=home, tmp=tmp),
            timeout_s=settings.api_agent_timeout_seconds,
            max_output=settings.api_job_output_bytes,
        )
        diff = await asyncio.to_thread(
            tree_diff, pristine, work, max_bytes=settings.api_job_output_bytes
        )
        status, error = SUCCEEDED, None
        if result.timed_out:
            timeout = settings.api_agent_timeout_seconds
            status, error = FAILED, f"timeout: still running after {timeout:g} s"
        elif result.exit_code != 0:
            status, error = FAILED, f"the command exited with {result.exit_code}"
        log.info(
            "API job for %s %s",
            spec.repository,
            status,
            extra={"seconds": round(time.monotonic() - started, 3)},
        )
        return _Ending(status, result.exit_code, result.stdout, result.stderr, diff, error)

    async def _interrupt_orphans(self) -> list[str]:
        if self._is_sqlite:
            return await self.store.interrupt()
        stale = utcnow() - timedelta(seconds=3 * HEARTBEAT_SECONDS)
        return await self.store.interrupt(stale_before=stale)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.store.heartbeat(list(self._tasks))
                if not self._is_sqlite:  # another replica may have died holding jobs
                    await self._interrupt_orphans()
            except Exception:
                log.exception("the API job heartbeat failed; trying again")
