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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import gidgethub
from gidgethub.abc import GitHubAPI

from app.repo_config import ConfigResult, load_repo_config

CONFIG_PATH = ".github/aigateway.yml"


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
        key = (repository, branch)
        fetching = self._own_fetching.get(key)
        if fetching is None:
            fetching = asyncio.ensure_future(
                fetch_text_file(gh, repository, CONFIG_PATH, ref=branch)
            )
            self._own_fetching[key] = fetching
            fetching.add_done_callback(lambda done: self._own_fetched(key, done))
        return await asyncio.shield(fetching)

    def _own_fetched(self, key: tuple[str, str], done: asyncio.Future[FetchedFile | None]) -> None:
        if self._own_fetching.get(key) is done:
            del self._own_fetching[key]
        if not done.cancelled():
            done.exception()  # retrieved: every asker has its own copy of the outcome

    async def _org_file(self, gh: GitHubAPI, owner: str) -> FetchedFile | None:
        now = self._clock()
        cached = self._org.get(owner)
        if cached is not None and now - cached[0] < self._org_ttl:
            return cached[1]
        fetching = self._org_fetching.get(owner)
        if fetching is None:
            # The owner's file is read with the first asker's client: every repository of the
            # owner is under the same installation.
            fetching = asyncio.ensure_future(fetch_text_file(gh, f"{owner}/.github", CONFIG_PATH))
            self._org_fetching[owner] = fetching
            fetching.add_done_callback(lambda done: self._org_fetched(owner, now, done))
        return await asyncio.shield(fetching)

    def _org_fetched(
        self, owner: str, started: float, done: asyncio.Future[FetchedFile | None]
    ) -> None:
        if self._org_fetching.get(owner) is done:
            del self._org_fetching[owner]
        if not done.cancelled() and done.exception() is None:
            self._org[owner] = (started, done.result())
