"""``AiGatewayClient`` (blocking) and ``AsyncAiGatewayClient``: the service API from Python.

Both are thin httpx clients over the same wire models as the server (``app.api.models``), with
the same behaviour: the bearer token from the configuration (fetched again once on a 401 when it
comes from a token source), 429 and 5xx tried again after ``Retry-After`` or a backoff, a request
that could not be sent tried again too (only a ``GET`` when it may have reached the server: a
``POST`` can cost money), and every other failure raised as an :class:`AiGatewayError`.

    with AiGatewayClient(ClientConfig(base_url=..., token=...)) as client:
        result = client.review(diff=patch, changed_paths=paths)
        job = client.wait(client.execute("add a changelog entry"))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import httpx2
from pydantic import BaseModel

from app.api.models import (
    AnalyzeResponse,
    ChangesResponse,
    FeedbackReportResponse,
    HealthResponse,
    JobOut,
    Provider,
    QuotaResponse,
    ReviewResponse,
)
from app.client import calls
from app.client.calls import Attempts, Call, Next, job_finished
from app.client.config import ClientConfig, StaticToken

__all__ = ["AiGatewayClient", "AsyncAiGatewayClient"]

M = TypeVar("M", bound=BaseModel)


class _Shared:
    """What both clients hold the same way: the configuration, URLs and headers. What to send
    and what to do with each answer is decided in ``app.client.calls``."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._source = config.source
        self._refreshable = not isinstance(self._source, StaticToken)

    def _timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.config.timeout, connect=self.config.connect_timeout)

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": self.config.user_agent,
        }

    def _attempts(self, method: str) -> Attempts:
        return Attempts(self.config, method, self._refreshable)


class AiGatewayClient(_Shared):
    """The blocking client; use it as a context manager, or ``close()`` it."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config)
        self._http = httpx2.Client(timeout=self._timeout(), transport=transport)
        self._sleep = sleep
        self._clock = clock

    def __enter__(self) -> AiGatewayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[M]) -> M:
        attempts = self._attempts(call.method)
        while True:
            token = self._source.get_token(self._http)
            try:
                response = self._http.request(
                    call.method,
                    self._url(call.path),
                    json=call.json,
                    params=call.params,
                    headers=self._headers(token),
                )
            except httpx2.TransportError as exc:
                self._sleep(attempts.after_send_error(exc))
                continue
            step = attempts.after(response)
            if step is Next.ANSWER:
                return call.parse(response)
            if step is Next.REFRESH:
                self._source.get_token(self._http, refresh=True)
            else:
                self._sleep(step)

    def analyze(
        self,
        prompt: str,
        *,
        context: str | None = None,
        provider: Provider | None = None,
        source_repository: str | None = None,
        max_output_tokens: int | None = None,
    ) -> AnalyzeResponse:
        return self._send(
            calls.analyze(
                prompt,
                context=context,
                provider=provider,
                source_repository=source_repository,
                max_output_tokens=max_output_tokens,
            )
        )

    def review(
        self,
        *,
        diff: str | None = None,
        changed_paths: Sequence[str] = (),
        pull_number: int | None = None,
        post: bool = False,
        title: str = "",
        description: str = "",
        source_repository: str | None = None,
    ) -> ReviewResponse:
        return self._send(
            calls.review(
                diff=diff,
                changed_paths=changed_paths,
                pull_number=pull_number,
                post=post,
                title=title,
                description=description,
                source_repository=source_repository,
            )
        )

    def execute(
        self,
        prompt: str,
        *,
        ref: str | None = None,
        sandbox: str | None = None,
        source_repository: str | None = None,
    ) -> JobOut:
        return self._send(
            calls.execute(prompt, ref=ref, sandbox=sandbox, source_repository=source_repository)
        )

    def get_job(self, job_id: str) -> JobOut:
        return self._send(calls.get_job(job_id))

    def wait(
        self, job: JobOut | str, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> JobOut:
        """Poll until the job succeeded or failed; :class:`JobTimeoutError` after ``timeout``."""
        current = job if isinstance(job, JobOut) else self.get_job(job)
        deadline = None if timeout is None else self._clock() + timeout
        while not job_finished(current, deadline, self._clock):
            self._sleep(poll_interval)
            current = self.get_job(current.id)
        return current

    def get_quota(self, repository: str) -> QuotaResponse:
        return self._send(calls.get_quota(repository))

    def get_health(self) -> HealthResponse:
        return self._send(calls.get_health())

    def get_feedback_report(self, repository: str) -> FeedbackReportResponse:
        return self._send(calls.get_feedback_report(repository))

    def list_changes(self, repository: str, *, limit: int = 100) -> ChangesResponse:
        return self._send(calls.list_changes(repository, limit=limit))


class AsyncAiGatewayClient(_Shared):
    """The asyncio client; ``async with`` it, or ``await aclose()``."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config)
        self._http = httpx2.AsyncClient(timeout=self._timeout(), transport=transport)
        self._sleep = sleep
        self._clock = clock

    async def __aenter__(self) -> AsyncAiGatewayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[M]) -> M:
        attempts = self._attempts(call.method)
        while True:
            token = await self._source.aget_token(self._http)
            try:
                response = await self._http.request(
                    call.method,
                    self._url(call.path),
                    json=call.json,
                    params=call.params,
                    headers=self._headers(token),
                )
            except httpx2.TransportError as exc:
                await self._sleep(attempts.after_send_error(exc))
                continue
            step = attempts.after(response)
            if step is Next.ANSWER:
                return call.parse(response)
            if step is Next.REFRESH:
                await self._source.aget_token(self._http, refresh=True)
            else:
                await self._sleep(step)

    async def analyze(
        self,
        prompt: str,
        *,
        context: str | None = None,
        provider: Provider | None = None,
        source_repository: str | None = None,
        max_output_tokens: int | None = None,
    ) -> AnalyzeResponse:
        return await self._send(
            calls.analyze(
                prompt,
                context=context,
                provider=provider,
                source_repository=source_repository,
                max_output_tokens=max_output_tokens,
            )
        )

    async def review(
        self,
        *,
        diff: str | None = None,
        changed_paths: Sequence[str] = (),
        pull_number: int | None = None,
        post: bool = False,
        title: str = "",
        description: str = "",
        source_repository: str | None = None,
    ) -> ReviewResponse:
        return await self._send(
            calls.review(
                diff=diff,
                changed_paths=changed_paths,
                pull_number=pull_number,
                post=post,
                title=title,
                description=description,
                source_repository=source_repository,
            )
        )

    async def execute(
        self,
        prompt: str,
        *,
        ref: str | None = None,
        sandbox: str | None = None,
        source_repository: str | None = None,
    ) -> JobOut:
        return await self._send(
            calls.execute(prompt, ref=ref, sandbox=sandbox, source_repository=source_repository)
        )

    async def get_job(self, job_id: str) -> JobOut:
        return await self._send(calls.get_job(job_id))

    async def wait(
        self,
        job: JobOut | str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as the blocking client's; the clock is injected
        poll_interval: float = 2.0,
    ) -> JobOut:
        """Poll until the job succeeded or failed; :class:`JobTimeoutError` after ``timeout``."""
        current = job if isinstance(job, JobOut) else await self.get_job(job)
        deadline = None if timeout is None else self._clock() + timeout
        while not job_finished(current, deadline, self._clock):
            await self._sleep(poll_interval)
            current = await self.get_job(current.id)
        return current

    async def get_quota(self, repository: str) -> QuotaResponse:
        return await self._send(calls.get_quota(repository))

    async def get_health(self) -> HealthResponse:
        return await self._send(calls.get_health())

    async def get_feedback_report(self, repository: str) -> FeedbackReportResponse:
        return await self._send(calls.get_feedback_report(repository))

    async def list_changes(self, repository: str, *, limit: int = 100) -> ChangesResponse:
        return await self._send(calls.list_changes(repository, limit=limit))
