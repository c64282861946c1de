"""GitHub writes that must land exactly once, even when GitHub or the network fails midway.

A ``POST`` that GitHub answered with a 5xx, or whose answer was lost to a reset connection, may
have been applied all the same: retrying it blindly posts a second review, a second comment, a
second check run. So the client never retries a ``POST`` on its own (``client.py``), and each
write that creates something goes through ``create``: on such a failure it first asks GitHub
whether the thing exists (by a marker the write carried: an HTML comment in a body, a check
run's ``external_id``), and only posts again when it does not. ``PATCH``, ``PUT`` with a pinned
SHA and label or reviewer additions are idempotent and need none of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

__all__ = ["LOST", "create", "find_comment", "find_review", "marker"]

log = logging.getLogger(__name__)

#: Failures after which a POST may or may not have been applied.
LOST: Final = (gidgethub.GitHubBroken, aiohttp.ClientError, asyncio.TimeoutError)
_ATTEMPTS: Final = 3

Finder = Callable[[], Awaitable[Any | None]]


def marker(kind: str, key: str) -> str:
    """An invisible tag for a body, found again by ``find_comment`` / ``find_review``."""
    return f"<!-- aigateway:{kind}:{key} -->"


async def create(
    gh: GitHubAPI,
    url: str,
    data: Mapping[str, Any],
    *,
    find: Finder,
    attempts: int = _ATTEMPTS,
) -> Any:
    """``POST url``; after a failure that may hide a success, return what ``find`` finds, or post
    again (at most ``attempts`` times in all). Other errors propagate at once."""
    for attempt in range(1, attempts + 1):
        try:
            return await gh.post(url, data=dict(data))
        except LOST as exc:
            found = await find()
            if found is not None:
                log.info("POST %s failed (%s) but had landed; not posted again", url, _why(exc))
                return found
            if attempt == attempts:
                raise
            log.warning("POST %s failed (%s) and did not land; trying again", url, _why(exc))
            await gh.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
    raise AssertionError("unreachable")  # pragma: no cover


async def find_review(gh: GitHubAPI, repository: str, number: int, tag: str) -> Any | None:
    """The pull request's review whose body carries ``tag``, or None."""
    async for review in gh.getiter(f"/repos/{repository}/pulls/{number}/reviews?per_page=100"):
        if tag in str(review.get("body") or ""):
            return review
    return None


async def find_comment(gh: GitHubAPI, repository: str, number: int, tag: str) -> Any | None:
    """The issue or pull request comment whose body carries ``tag``, or None."""
    async for comment in gh.getiter(f"/repos/{repository}/issues/{number}/comments?per_page=100"):
        if tag in str(comment.get("body") or ""):
            return comment
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, gidgethub.HTTPException):
        return f"HTTP {int(exc.status_code)}"
    return type(exc).__name__
