"""The GitHub API client used by handlers: gidgethub's aiohttp client, per installation.

gidgethub never sleeps or retries; this subclass adds what a worker needs, bounded so a delivery
never hangs: 5xx retried with exponential backoff (except on a ``POST``, which may have been
applied: ``writes.py`` checks before posting again), a secondary rate limit honoured through its
``retry-after``, a primary limit waited out when the reset is near (otherwise the delivery is
rescheduled for the reset time), and a 401 on a cached installation token answered by dropping the
token and retrying once with a new one. The token itself is fetched lazily, on the first request,
so a delivery that needs no API call costs no token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from app.github.auth import USER_AGENT, AppAuth
from app.queue import RetryLater

log = logging.getLogger(__name__)

RequestObserver = Callable[[str, int, float], None]


class InstallationGitHubAPI(GitHubAPI):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth: AppAuth,
        installation_id: int,
        *,
        max_retries: int = 3,
        max_wait_seconds: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: RequestObserver | None = None,
    ) -> None:
        super().__init__(session, USER_AGENT, base_url=auth.api_url)
        self._auth = auth
        self.installation_id = installation_id
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._observer = observer
        self.requests_made = 0

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = dict(headers)
        uses_installation_token = "authorization" not in headers
        token = ""
        if uses_installation_token:
            token = await self._auth.installation_token(self.installation_id)
            headers["authorization"] = f"token {token}"
        status, response_headers, data = await self._send(method, url, headers, body)
        if status == 401 and uses_installation_token:
            # The cached token was revoked or expired early: drop it and try once more.
            self._auth.invalidate(self.installation_id, token)
            token = await self._auth.installation_token(self.installation_id)
            headers["authorization"] = f"token {token}"
            status, response_headers, data = await self._send(method, url, headers, body)
        return status, response_headers, data

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        started = time.perf_counter()
        status = 0
        try:
            status, response_headers, data = await super()._request(method, url, headers, body)
            return status, response_headers, data
        finally:
            self.requests_made += 1
            if self._observer is not None:
                self._observer(method, status, time.perf_counter() - started)

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def handle_rate_limit_error(
        self,
        *,
        method: str,
        url: str,
        exception: gidgethub.HTTPException,
        attempt: int,
    ) -> bool:
        if attempt > self._max_retries:
            return False
        if method.upper() == "POST" and int(exception.status_code) >= 500:
            # A POST answered 5xx may have been applied: only the caller can check whether it
            # landed before sending it again (app/github/writes.py). Rate limits are refusals.
            return False
        wait = retry_delay(exception, attempt=attempt, now=time.time())
        if wait is None:
            return False
        if wait > self._max_wait:
            # Too long to hold a worker: give the delivery back to the queue until then.
            raise RetryLater(
                datetime.fromtimestamp(time.time() + wait, UTC),
                f"GitHub rate limit on {method} {url}; retrying in {wait:.0f}s",
            ) from exception
        log.warning(
            "GitHub %s on %s %s, retrying in %.1fs",
            int(exception.status_code),
            method,
            url,
            wait,
        )
        await self.sleep(wait)
        return True


def retry_delay(exc: gidgethub.HTTPException, *, attempt: int, now: float) -> float | None:
    """How long to wait before retrying a failed GitHub request, or None for "do not retry"."""
    headers: dict[str, str] = {k.lower(): str(v) for k, v in (exc.headers or {}).items()}
    status = int(exc.status_code)
    if isinstance(exc, gidgethub.GitHubBroken) or status >= 500:
        return float(min(30, 2 ** (attempt - 1)))
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now + 1)
        except ValueError:
            return 60.0
    if status == 429 or "secondary rate limit" in str(exc).lower():
        # Secondary limit without a hint: GitHub asks for at least a minute.
        return 60.0 * float(2 ** (attempt - 1))
    return None
