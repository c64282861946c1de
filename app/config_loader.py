"""Fetching ``.github/aigateway.yml`` from GitHub and caching the parsed result.

The file is read from the repository's *default branch*, never from a pull request's head: a PR
must not be able to change the rules that judge it. Defaults come from the same path in the
owner's ``.github`` repository. Parsed results are cached by the blob SHAs of both files, so a
config is parsed once per version; the owner's file is re-checked at most every few minutes,
and reviews that need it while it is being fetched wait for that one fetch (a burst of pull
requests in one organisation asks GitHub for it once).

The repository's own file is read afresh for every review (an admin's change applies to the next
review), except that reviews asking while a read of it is in flight share that read: a burst of
pull requests in one repository reads it once, and none of them gets an answer older than a read
that was still under way when it asked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import gidgethub
from gidgethub.abc import GitHubAPI

from app.repo_config import ConfigResult, load_repo_config

CONFIG_PATH = ".github/aigateway.yml"

K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FetchedFile:
    text: str
    sha: str


async def fetch_text_file(
    gh: GitHubAPI, repository: str, path: str, *, ref: str | None = None
) -> FetchedFile | None:
    """A text file from the contents API, or None when it does not exist."""
    url = f"/repos/{repository}/contents/{quote(path)}"
    if ref:
        url += f"?ref={quote(ref, safe='')}"
    try:
        data: Any = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type", "file") != "file":
        return None
    sha = str(data.get("sha", ""))
    content = data.get("content") or ""
    if data.get("encoding") == "base64":
        try:
            raw = base64.b64decode(content)
        except (binascii.Error, ValueError):
            raw = b""
    else:
        raw = str(content).encode()
    # Files over 1 MB come back without content; the config parser reports the size problem.
    if not raw and int(data.get("size") or 0) > 0:
        return FetchedFile(text="\x00" * min(int(data["size"]), 70_000), sha=sha)
    return FetchedFile(text=raw.decode("utf-8", errors="replace"), sha=sha)


class ConfigLoader:
    def __init__(
        self, *, org_ttl_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._parsed: dict[tuple[str, str, str], ConfigResult] = {}
        self._org: dict[str, tuple[float, FetchedFile | None]] = {}
        self._org_fetching: dict[str, asyncio.Future[FetchedFile | None]] = {}
        self._own_fetching: dict[tuple[str, str], asyncio.Future[FetchedFile | None]] = {}
        self._org_ttl = org_ttl_seconds
        self._clock = clock

    async def load(self, gh: GitHubAPI, repository: str, default_branch: str) -> ConfigResult:
        own = await self._own_file(gh, repository, default_branch)
        owner, _, name = repository.partition("/")
        org = None if name == ".github" else await self._org_file(gh, owner)
        key = (repository, own.sha if own else "", org.sha if org else "")
        cached = self._parsed.get(key)
        if cached is not None:
            return cached
        result = load_repo_config(
            own.text if own else None,
            defaults_text=org.text if org else None,
            source=CONFIG_PATH,
            defaults_source=f"{owner}/.github:{CONFIG_PATH}",
        )
        if len(self._parsed) > 2048:
            self._parsed.clear()
        self._parsed[key] = result
        return result

    async def _own_file(self, gh: GitHubAPI, repository: str, branch: str) -> FetchedFile | None:
        return await _shared(
            self._own_fetching,
            (repository, branch),
            lambda: fetch_text_file(gh, repository, CONFIG_PATH, ref=branch),
        )

    async def _org_file(self, gh: GitHubAPI, owner: str) -> FetchedFile | None:
        now = self._clock()
        cached = self._org.get(owner)
        if cached is not None and now - cached[0] < self._org_ttl:
            return cached[1]

        def remember(fetched: FetchedFile | None) -> None:
            self._org[owner] = (now, fetched)

        # The owner's file is read with the first asker's client: every repository of the
        # owner is under the same installation.
        return await _shared(
            self._org_fetching,
            owner,
            lambda: fetch_text_file(gh, f"{owner}/.github", CONFIG_PATH),
            on_success=remember,
        )


async def _shared(
    pending: dict[K, asyncio.Future[T]],
    key: K,
    fetch: Callable[[], Awaitable[T]],
    *,
    on_success: Callable[[T], None] | None = None,
) -> T:
    """``fetch()``, or the outcome of the one under way for ``key``: askers who come while a
    read is in flight share it (each gets its result or its error), and the next asker after it
    ended reads again. ``on_success`` sees a result before any asker does."""
    future = pending.get(key)
    if future is None:
        future = asyncio.ensure_future(fetch())
        pending[key] = future

        def ended(done: asyncio.Future[T]) -> None:
            if pending.get(key) is done:
                del pending[key]
            if not done.cancelled() and done.exception() is None and on_success is not None:
                on_success(done.result())

        future.add_done_callback(ended)
    return await asyncio.shield(future)
