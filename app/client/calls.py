"""The service API's requests and the retry loop's decisions, without I/O.

Both clients (``app.client.client``) only send and sleep: what to send for each method (a
:class:`Call`: method, path, validated body or query, the model its answer is read into) and what
to do with each answer (:class:`Attempts`: done, a new token, a wait, or the error to raise) are
decided here once, so the blocking and the asyncio client cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, Final, Generic, TypeVar

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
from app.client.config import ClientConfig
from app.client.errors import AiGatewayError, ConnectionFailed, JobTimeoutError, from_status

__all__ = [
    "TERMINAL",
    "Attempts",
    "Call",
    "Next",
    "analyze",
    "error_of",
    "execute",
    "get_feedback_report",
    "get_health",
    "get_job",
    "get_quota",
    "job_finished",
    "list_changes",
    "review",
]

M = TypeVar("M", bound=BaseModel)
#: The job statuses ``wait`` stops at.
TERMINAL: Final = frozenset({"succeeded", "failed"})


@dataclass(frozen=True, slots=True)
class Call(Generic[M]):
    """One request of the API and the model its answer is read into."""

    method: str
    path: str
    answer: type[M]
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None

    def parse(self, response: httpx2.Response) -> M:
        return self.answer.model_validate_json(response.content)


def _body(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """The request body, validated here first (a mistake fails before it costs a request)."""
    return model.model_validate(fields).model_dump(mode="json", exclude_none=True)


def analyze(
    prompt: str,
    *,
    context: str | None,
    provider: Provider | None,
    source_repository: str | None,
    max_output_tokens: int | None,
) -> Call[AnalyzeResponse]:
    body = _body(
        AnalyzeRequest,
        prompt=prompt,
        context=context,
        provider=provider,
        source_repository=source_repository,
        max_output_tokens=max_output_tokens,
    )
    return Call("POST", "/v1/ai/analyze", AnalyzeResponse, json=body)


def review(
    *,
    diff: str | None,
    changed_paths: Sequence[str],
    pull_number: int | None,
    post: bool,
    title: str,
    description: str,
    source_repository: str | None,
) -> Call[ReviewResponse]:
    body = _body(
        ReviewRequest,
        diff=diff,
        changed_paths=list(changed_paths),
        pull_number=pull_number,
        post=post,
        title=title,
        description=description,
        source_repository=source_repository,
    )
    return Call("POST", "/v1/ai/review", ReviewResponse, json=body)


def execute(
    prompt: str, *, ref: str | None, sandbox: str | None, source_repository: str | None
) -> Call[JobOut]:
    body = _body(
        JobRequest, prompt=prompt, ref=ref, sandbox=sandbox, source_repository=source_repository
    )
    return Call("POST", "/v1/ai/execute/jobs", JobOut, json=body)


def get_job(job_id: str) -> Call[JobOut]:
    return Call("GET", f"/v1/ai/execute/jobs/{job_id}", JobOut)


def get_quota(repository: str) -> Call[QuotaResponse]:
    return Call("GET", "/v1/ai/quota", QuotaResponse, params={"repo": repository})


def get_health() -> Call[HealthResponse]:
    return Call("GET", "/v1/ai/health", HealthResponse)


def get_feedback_report(repository: str) -> Call[FeedbackReportResponse]:
    return Call(
        "GET", "/v1/ai/feedback/report", FeedbackReportResponse, params={"repo": repository}
    )


def list_changes(repository: str, *, limit: int) -> Call[ChangesResponse]:
    params = {"repo": repository, "limit": str(limit)}
    return Call("GET", "/v1/ai/changes", ChangesResponse, params=params)


def job_finished(job: JobOut, deadline: float | None, clock: Callable[[], float]) -> bool:
    """Whether ``wait`` has its answer; raises :class:`JobTimeoutError` once past ``deadline``."""
    if job.status in TERMINAL:
        return True
    if deadline is not None and clock() >= deadline:
        raise JobTimeoutError(f"job {job.id} is still {job.status}")
    return False


# ---------------------------------------------------------------------------------- answers


class Next(Enum):
    """What a client does with an answer that is not a wait."""

    ANSWER = "answer"  # the response is the answer: parse it
    REFRESH = "refresh"  # fetch a new token, then send again


@dataclass(slots=True)
class Attempts:
    """The decisions of one call's retry loop: the clients send, sleep and fetch tokens.

    A 401 fetches a new token once when the token comes from a token source; 429 and 5xx are
    sent again after ``Retry-After`` (when not longer than ``max_retry_after``) or a backoff;
    a request that could not be sent is sent again only when it cannot have reached the
    server, or is a ``GET`` (a ``POST`` can cost money); each up to ``max_retries`` times.
    """

    config: ClientConfig
    method: str
    refreshable: bool
    retry: int = 0
    refreshed: bool = False

    def after_send_error(self, exc: httpx2.TransportError) -> float:
        """Seconds before sending again; raises :class:`ConnectionFailed` when it must not."""
        unsent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
        if self.retry >= self.config.max_retries or not (unsent or self.method == "GET"):
            raise ConnectionFailed(f"{self.method} failed: {type(exc).__name__}: {exc}") from exc
        wait = self.config.backoff(self.retry)
        self.retry += 1
        return wait

    def after(self, response: httpx2.Response) -> Next | float:
        """The answer, a new token, or seconds to wait before sending again; raises the
        :class:`AiGatewayError` of an answer that is final."""
        if response.status_code == 401 and self.refreshable and not self.refreshed:
            self.refreshed = True
            return Next.REFRESH
        if response.is_success:
            return Next.ANSWER
        wait = self._wait_before_retry(response)
        if wait is None:
            raise error_of(response)
        self.retry += 1
        return wait

    def _wait_before_retry(self, response: httpx2.Response) -> float | None:
        if response.status_code != 429 and response.status_code < 500:
            return None
        if self.retry >= self.config.max_retries:
            return None
        asked = _retry_after(response, time.time())
        if asked is not None:
            return asked if asked <= self.config.max_retry_after else None
        return self.config.backoff(self.retry)


def error_of(response: httpx2.Response) -> AiGatewayError:
    """The error a final failed answer raises, from the API's error body when it has one."""
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
