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
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from app.api.models import (
    AnalyzeRequest,
    AnalyzeResponse,
    ChangesResponse,
    ErrorBody,
    FeedbackReportResponse,
    HealthResponse,
    JobOut,
    JobRequest,
    Provider,
    QuotaResponse,
    ReviewRequest,
    ReviewResponse,
)
from app.client.config import ClientConfig, StaticToken
from app.client.errors import AiGatewayError, ConnectionFailed, JobTimeoutError, from_status

__all__ = ["AiGatewayClient", "AsyncAiGatewayClient"]

M = TypeVar("M", bound=BaseModel)
TERMINAL: Final = frozenset({"succeeded", "failed"})


def _retry_after(response: httpx2.Response, now: float) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class _Shared:
    """What both clients do the same way: URLs, headers, retry decisions, errors, parsing."""

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

    def _wait_before_retry(self, response: httpx2.Response, retry: int) -> float | None:
        """Seconds to wait before trying again, or None when this answer is final."""
        if response.status_code != 429 and response.status_code < 500:
            return None
        if retry >= self.config.max_retries:
            return None
        asked = _retry_after(response, time.time())
        if asked is not None:
            return asked if asked <= self.config.max_retry_after else None
        return self.config.backoff(retry)

    def _wait_after_send_error(self, exc: httpx2.TransportError, method: str, retry: int) -> float:
        """Seconds before sending again; raises when it must not be sent again."""
        unsent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
        if retry >= self.config.max_retries or not (unsent or method == "GET"):
            raise ConnectionFailed(f"{method} failed: {type(exc).__name__}: {exc}") from exc
        return self.config.backoff(retry)

    @staticmethod
    def _error(response: httpx2.Response) -> AiGatewayError:
        try:
            body = ErrorBody.model_validate_json(response.content)
            code, message, retry_after = body.error, body.message, body.retry_after
        except ValidationError:
            code, message, retry_after = None, response.text[:500] or response.reason_phrase, None
        return from_status(response.status_code)(
            message,
            status=response.status_code,
            code=code,
            request_id=response.headers.get("x-request-id"),
            retry_after=retry_after,
        )

    @staticmethod
    def _parse(response: httpx2.Response, model: type[M]) -> M:
        return model.model_validate_json(response.content)

    @staticmethod
    def _body(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
        """The request body, validated here first (a mistake fails before it costs a request)."""
        return model.model_validate(fields).model_dump(mode="json", exclude_none=True)


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

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx2.Response:
        retry, refreshed = 0, False
        while True:
            token = self._source.get_token(self._http)
            try:
                response = self._http.request(
                    method, self._url(path), json=json, params=params, headers=self._headers(token)
                )
            except httpx2.TransportError as exc:
                self._sleep(self._wait_after_send_error(exc, method, retry))
                retry += 1
                continue
            if response.status_code == 401 and self._refreshable and not refreshed:
                refreshed = True
                self._source.get_token(self._http, refresh=True)
                continue
            if response.is_success:
                return response
            wait = self._wait_before_retry(response, retry)
            if wait is None:
                raise self._error(response)
            self._sleep(wait)
            retry += 1

    def analyze(
        self,
        prompt: str,
        *,
        context: str | None = None,
        provider: Provider | None = None,
        source_repository: str | None = None,
        max_output_tokens: int | None = None,
    ) -> AnalyzeResponse:
        body = self._body(
            AnalyzeRequest,
            prompt=prompt,
            context=context,
            provider=provider,
            source_repository=source_repository,
            max_output_tokens=max_output_tokens,
        )
        return self._parse(self._call("POST", "/v1/ai/analyze", json=body), AnalyzeResponse)

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
        body = self._body(
            ReviewRequest,
            diff=diff,
            changed_paths=list(changed_paths),
            pull_number=pull_number,
            post=post,
            title=title,
            description=description,
            source_repository=source_repository,
        )
        return self._parse(self._call("POST", "/v1/ai/review", json=body), ReviewResponse)

    def execute(
        self,
        prompt: str,
        *,
        ref: str | None = None,
        sandbox: str | None = None,
        source_repository: str | None = None,
    ) -> JobOut:
        body = self._body(
            JobRequest, prompt=prompt, ref=ref, sandbox=sandbox, source_repository=source_repository
        )
        return self._parse(self._call("POST", "/v1/ai/execute/jobs", json=body), JobOut)

    def get_job(self, job_id: str) -> JobOut:
        return self._parse(self._call("GET", f"/v1/ai/execute/jobs/{job_id}"), JobOut)

    def wait(
        self, job: JobOut | str, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> JobOut:
        """Poll until the job succeeded or failed; :class:`JobTimeoutError` after ``timeout``."""
        current = job if isinstance(job, JobOut) else self.get_job(job)
        deadline = None if timeout is None else self._clock() + timeout
        while current.status not in TERMINAL:
            if deadline is not None and self._clock() >= deadline:
                raise JobTimeoutError(f"job {current.id} is still {current.status}")
            self._sleep(poll_interval)
            current = self.get_job(current.id)
        return current

    def get_quota(self, repository: str) -> QuotaResponse:
        return self._parse(
            self._call("GET", "/v1/ai/quota", params={"repo": repository}), QuotaResponse
        )

    def get_health(self) -> HealthResponse:
        return self._parse(self._call("GET", "/v1/ai/health"), HealthResponse)

    def get_feedback_report(self, repository: str) -> FeedbackReportResponse:
        return self._parse(
            self._call("GET", "/v1/ai/feedback/report", params={"repo": repository}),
            FeedbackReportResponse,
        )

    def list_changes(self, repository: str, *, limit: int = 100) -> ChangesResponse:
        return self._parse(
            self._call("GET", "/v1/ai/changes", params={"repo": repository, "limit": str(limit)}),
            ChangesResponse,
        )


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

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx2.Response:
        retry, refreshed = 0, False
        while True:
            token = await self._source.aget_token(self._http)
            try:
                response = await self._http.request(
                    method, self._url(path), json=json, params=params, headers=self._headers(token)
                )
            except httpx2.TransportError as exc:
                await self._sleep(self._wait_after_send_error(exc, method, retry))
                retry += 1
                continue
            if response.status_code == 401 and self._refreshable and not refreshed:
                refreshed = True
                await self._source.aget_token(self._http, refresh=True)
                continue
            if response.is_success:
                return response
            wait = self._wait_before_retry(response, retry)
            if wait is None:
                raise self._error(response)
            await self._sleep(wait)
            retry += 1

    async def analyze(
        self,
        prompt: str,
        *,
        context: str | None = None,
        provider: Provider | None = None,
        source_repository: str | None = None,
        max_output_tokens: int | None = None,
    ) -> AnalyzeResponse:
        body = self._body(
            AnalyzeRequest,
            prompt=prompt,
            context=context,
            provider=provider,
            source_repository=source_repository,
            max_output_tokens=max_output_tokens,
        )
        return self._parse(await self._call("POST", "/v1/ai/analyze", json=body), AnalyzeResponse)

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
        body = self._body(
            ReviewRequest,
            diff=diff,
            changed_paths=list(changed_paths),
            pull_number=pull_number,
            post=post,
            title=title,
            description=description,
            source_repository=source_repository,
        )
        return self._parse(await self._call("POST", "/v1/ai/review", json=body), ReviewResponse)

    async def execute(
        self,
        prompt: str,
        *,
        ref: str | None = None,
        sandbox: str | None = None,
        source_repository: str | None = None,
    ) -> JobOut:
        body = self._body(
            JobRequest, prompt=prompt, ref=ref, sandbox=sandbox, source_repository=source_repository
        )
        return self._parse(await self._call("POST", "/v1/ai/execute/jobs", json=body), JobOut)

    async def get_job(self, job_id: str) -> JobOut:
        return self._parse(await self._call("GET", f"/v1/ai/execute/jobs/{job_id}"), JobOut)

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
        while current.status not in TERMINAL:
            if deadline is not None and self._clock() >= deadline:
                raise JobTimeoutError(f"job {current.id} is still {current.status}")
            await self._sleep(poll_interval)
            current = await self.get_job(current.id)
        return current

    async def get_quota(self, repository: str) -> QuotaResponse:
        response = await self._call("GET", "/v1/ai/quota", params={"repo": repository})
        return self._parse(response, QuotaResponse)

    async def get_health(self) -> HealthResponse:
        return self._parse(await self._call("GET", "/v1/ai/health"), HealthResponse)

    async def get_feedback_report(self, repository: str) -> FeedbackReportResponse:
        response = await self._call("GET", "/v1/ai/feedback/report", params={"repo": repository})
        return self._parse(response, FeedbackReportResponse)

    async def list_changes(self, repository: str, *, limit: int = 100) -> ChangesResponse:
        response = await self._call(
            "GET", "/v1/ai/changes", params={"repo": repository, "limit": str(limit)}
        )
        return self._parse(response, ChangesResponse)
