"""The API's views and their table: one :class:`Endpoint` per route, read by the app (``mount``)
and by the OpenAPI document (``openapi``), so the two cannot drift apart.

Every view runs inside :func:`handler_for`, which does what each would otherwise repeat:
authenticate (401/503), count the request against the caller's window on the endpoints that
call models (429 with ``Retry-After``), parse and validate the body (400/422, without echoing
what was sent), turn every failure into an :class:`~app.api.models.ErrorBody`, and write one
audit event for the request whatever its outcome. Authorisation is per repository, inside the
views, as soon as the repository is known (:meth:`Call.repository`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from app import __version__
from app.api.analyze import BudgetRefused, analyze
from app.api.audit import AuditEvent
from app.api.auth import ApiError, Caller
from app.api.config import repository_name_ok
from app.api.jobs import JobRow
from app.api.models import (
    AnalyzeRequest,
    AnalyzeResponse,
    BudgetOut,
    ChangeOut,
    ChangesResponse,
    ComponentOut,
    EffectOut,
    ErrorBody,
    FeedbackReportResponse,
    HealthResponse,
    JobOut,
    JobRequest,
    QuotaResponse,
    ReviewRequest,
    ReviewResponse,
)
from app.api.ratelimit import retry_after_header
from app.api.review import review
from app.api.runner import JobsBusy, JobSpec
from app.api.state import API, ApiState
from app.feedback.outcomes import settle
from app.feedback.registry import FeedbackStore
from app.feedback.report import build_report
from app.queue import RetryLater
from app.quota import QuotaLedger, format_spend_report, repository_budget
from app.store.types import utcnow

__all__ = ["ENDPOINTS", "Endpoint", "Query", "handler_for"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_CHANGES: Final = 500


@dataclass(slots=True)
class Call:
    """One authenticated request, as a view sees it."""

    request: web.Request
    state: ApiState
    caller: Caller
    audit: AuditEvent

    def repository(self, requested: str | None) -> str:
        """The repository the request is for, once the caller may name it (403 otherwise)."""
        name = self.caller.resolve(requested)
        if not repository_name_ok(name):
            raise ApiError(422, "invalid_request", "a repository is owner/name")
        self.audit.repository = name
        self.caller.authorize(name, self.state.allowlist)
        return name

    def query_repository(self) -> str:
        return self.repository(self.request.query.get("repo"))

    def query_since(self) -> datetime | None:
        text = self.request.query.get("since")
        if not text:
            return None
        try:
            since = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(422, "invalid_request", "since must be an ISO 8601 date") from None
        return since if since.tzinfo is not None else since.replace(tzinfo=UTC)

    async def body(self, model: type[M]) -> M:
        """The JSON body as ``model``: 400 when it is not JSON, 422 when it does not validate.

        The error names the fields and what is wrong with them, never their values: a body
        holds prompts and code that do not belong in an error message or a log line.
        """
        raw = await self.request.read()
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            raise ApiError(400, "invalid_json", "the body is not JSON") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)[:10]
            )
            raise ApiError(422, "invalid_request", problems) from None


View = Callable[[Call], Awaitable[BaseModel]]


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    operation_id: str
    summary: str
    view: View
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    query: tuple[Query, ...] = ()
    limited: bool = False  # counted against the caller's rate window
    status: int = 200
    errors: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------- views


async def analyze_view(call: Call) -> AnalyzeResponse:
    body = await call.body(AnalyzeRequest)
    name = call.repository(body.source_repository)
    repo = await call.state.repositories.context(name)
    answer = await analyze(call.state.services, body, repo=repo, request_id=call.audit.request_id)
    call.audit.cost_usd = answer.cost_usd
    return answer


async def review_view(call: Call) -> ReviewResponse:
    body = await call.body(ReviewRequest)
    name = call.repository(body.source_repository)
    state = call.state
    repo = await state.repositories.context(name, installed=body.pull_number is not None)
    result = await review(
        state.services,
        body,
        repo=repo,
        repositories=state.repositories,
        request_id=call.audit.request_id,
    )
    call.audit.cost_usd = result.cost_usd
    return result


def _job_out(row: JobRow) -> JobOut:
    return JobOut(
        id=row.id,
        repository=row.repository,
        ref=row.ref,
        sandbox=row.sandbox,
        status=row.status,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        exit_code=row.exit_code,
        output=row.output,
        stderr=row.stderr,
        diff=row.diff,
        error=row.error,
    )


async def create_job_view(call: Call) -> JobOut:
    body = await call.body(JobRequest)
    name = call.repository(body.source_repository)
    settings = call.state.services.settings
    sandbox = body.sandbox or settings.api_agent_sandboxes[0]
    if sandbox not in settings.api_agent_sandboxes:
        raise ApiError(
            403,
            "sandbox_not_allowed",
            f"sandbox {sandbox!r} is not allowed here; allowed: "
            + ", ".join(settings.api_agent_sandboxes),
        )
    if body.prompt.startswith("-"):
        raise ApiError(
            422, "invalid_request", "the prompt must not start with '-': it would read as an option"
        )
    repo = await call.state.repositories.context(name, installed=True)
    assert repo.installation_id is not None
    spec = JobSpec(
        repository=name,
        installation_id=repo.installation_id,
        ref=body.ref or repo.default_branch,
        sandbox=sandbox,
        prompt=body.prompt,
        caller=call.caller.label,
        caller_owner=call.caller.owner,
    )
    try:
        row = await call.state.runner.submit(spec)
    except JobsBusy as exc:
        raise ApiError(429, "jobs_busy", str(exc), retry_after=exc.retry_after) from None
    call.audit.job_id = row.id
    return _job_out(row)


async def get_job_view(call: Call) -> JobOut:
    job_id = call.request.match_info["id"]
    call.audit.job_id = job_id
    row = await call.state.jobs.get(job_id) if _UUID.match(job_id) else None
    if row is None:
        raise ApiError(404, "not_found", "no such job")
    call.repository(row.repository)
    return _job_out(row)


async def quota_view(call: Call) -> QuotaResponse:
    name = call.query_repository()
    services = call.state.services
    repo = await call.state.repositories.context(name)
    budget = repository_budget(services.settings, repo.config)
    report = await QuotaLedger(services.db).spend(name, budget=budget)
    return QuotaResponse(
        repository=name,
        budgets=[
            BudgetOut(
                kind=b.kind.value,
                limit_usd=b.limit_usd,
                spent_usd=b.spent_usd,
                remaining_usd=b.remaining_usd,
                window=b.window_key,
                resets_at=b.resets_at,
                exhausted=b.exhausted,
            )
            for b in report.budgets
        ],
        remaining_usd=report.remaining_usd,
        limiting=report.limiting.label if report.limiting is not None else None,
        report=format_spend_report(report),
    )


async def health_view(call: Call) -> HealthResponse:
    services = call.state.services
    snapshot = services.health.snapshot()
    return HealthResponse(
        status=snapshot["status"],
        version=__version__,
        uptime_s=snapshot["uptime_s"],
        window_s=snapshot["window_s"],
        components={
            name: ComponentOut.model_validate(figures)
            for name, figures in snapshot["components"].items()
        },
        jobs_running=call.state.runner.active,
        jobs_max=call.state.runner.limit,
    )


async def feedback_report_view(call: Call) -> FeedbackReportResponse:
    name = call.query_repository()
    since = call.query_since()
    records = await FeedbackStore(call.state.services.db).records(name, since=since)
    report = build_report(name, records, at=utcnow(), since=since)
    return FeedbackReportResponse.model_validate(report.to_json())


async def changes_view(call: Call) -> ChangesResponse:
    name = call.query_repository()
    since = call.query_since()
    try:
        limit = int(call.request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_CHANGES:
        raise ApiError(422, "invalid_request", f"limit must be between 1 and {MAX_CHANGES}")
    records = await FeedbackStore(call.state.services.db).records(name, since=since, limit=limit)
    now = utcnow()
    changes = []
    for record in records:
        settled = settle(record, now)
        changes.append(
            ChangeOut(
                pr_number=record.pr_number,
                head_sha=record.head_sha,
                tier=record.tier,
                confidence=record.confidence,
                decision=record.decision,
                acted=record.acted,
                decided_at=record.decided_at,
                state=record.state,
                merged_at=record.merged_at,
                merge_sha=record.merge_sha,
                merged_by_bot=record.merged_by_bot,
                outcome=settled.outcome.value,
                outcome_since=settled.since,
                effects=[
                    EffectOut(
                        kind=e.kind.value,
                        evidence=e.evidence,
                        detail=e.detail,
                        observed_at=e.observed_at,
                    )
                    for e in record.effects
                ],
                spend_usd=record.spend_usd,
            )
        )
    return ChangesResponse(repository=name, changes=changes)


# ---------------------------------------------------------------------------------- the table

_REPO = Query("repo", "owner/name", required=True)
_SINCE = Query("since", "only changes decided since this ISO 8601 date", schema={"type": "string"})
_MODEL_ERRORS = (400, 402, 403, 409, 422, 429, 502, 503)

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        "POST",
        "/v1/ai/analyze",
        "analyze",
        "One model answers a prompt (with optional context), held to the repository's budgets",
        analyze_view,
        AnalyzeResponse,
        request=AnalyzeRequest,
        limited=True,
        errors=_MODEL_ERRORS,
    ),
    Endpoint(
        "POST",
        "/v1/ai/review",
        "review",
        "Claude and GPT review a diff or a pull request; consensus, risk and the recommended action",
        review_view,
        ReviewResponse,
        request=ReviewRequest,
        limited=True,
        errors=(*_MODEL_ERRORS, 404),
    ),
    Endpoint(
        "POST",
        "/v1/ai/execute/jobs",
        "createJob",
        "Run the configured coding agent in a checkout of the repository, asynchronously",
        create_job_view,
        JobOut,
        request=JobRequest,
        status=202,
        errors=(400, 403, 422, 429, 502, 503),
    ),
    Endpoint(
        "GET",
        "/v1/ai/execute/jobs/{id}",
        "getJob",
        "A job's status, and once it ended its output, diff and error",
        get_job_view,
        JobOut,
        errors=(403, 404),
    ),
    Endpoint(
        "GET",
        "/v1/ai/quota",
        "getQuota",
        "The repository's spend against each of its budgets",
        quota_view,
        QuotaResponse,
        query=(_REPO,),
        errors=(403, 422, 502),
    ),
    Endpoint(
        "GET",
        "/v1/ai/health",
        "getHealth",
        "The server's health window per dependency, and its job slots",
        health_view,
        HealthResponse,
    ),
    Endpoint(
        "GET",
        "/v1/ai/feedback/report",
        "getFeedbackReport",
        "Outcomes of the repository's changes per risk tier and decision, and the calibration",
        feedback_report_view,
        FeedbackReportResponse,
        query=(_REPO, _SINCE),
        errors=(403, 422),
    ),
    Endpoint(
        "GET",
        "/v1/ai/changes",
        "listChanges",
        "The repository's registered changes (most recent decisions) with their outcomes",
        changes_view,
        ChangesResponse,
        query=(
            _REPO,
            _SINCE,
            Query(
                "limit",
                f"at most this many changes, 1 to {MAX_CHANGES} (100)",
                schema={"type": "integer", "minimum": 1, "maximum": MAX_CHANGES},
            ),
        ),
        errors=(403, 422),
    ),
)


# ---------------------------------------------------------------------------------- the guard


def error_response(exc: ApiError, request_id: str | None = None) -> web.Response:
    body = ErrorBody(error=exc.code, message=exc.message, retry_after=exc.retry_after)
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = retry_after_header(exc.retry_after)
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    return web.Response(
        body=body.model_dump_json(exclude_none=True),
        status=exc.status,
        content_type="application/json",
        headers=headers,
    )


def _problem(exc: BaseException) -> ApiError:
    """The answer for a failure a view did not turn into an :class:`ApiError` itself."""
    match exc:
        case ApiError():
            return exc
        case BudgetRefused():
            return exc.error()
        case RetryLater():
            wait = max(1.0, (exc.at - datetime.now(UTC)).total_seconds())
            return ApiError(503, "github_rate_limited", "GitHub's rate limit", retry_after=wait)
        case _:
            return ApiError(500, "internal_error", "the request failed; it is in the server's log")


def handler_for(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler of ``endpoint`` (see the module docstring)."""

    async def handle(request: web.Request) -> web.Response:
        state = request.app[API]
        event = AuditEvent(
            endpoint=endpoint.operation_id, method=request.method, request_id=uuid.uuid4().hex
        )
        started = time.perf_counter()
        response: web.Response | None = None
        try:
            caller = await state.auth.authenticate(request.headers.get("Authorization"))
            event.caller, event.caller_repository = caller.label, caller.repository
            if endpoint.limited:
                wait = state.limiter.acquire(caller.rate_key)
                if wait is not None:
                    limiter = state.limiter
                    raise ApiError(
                        429,
                        "rate_limited",
                        f"more than {limiter.limit} requests in {limiter.window_s:g} s",
                        retry_after=wait,
                    )
            result = await endpoint.view(Call(request, state, caller, event))
            response = web.Response(
                body=result.model_dump_json(),
                status=endpoint.status,
                content_type="application/json",
                headers={"X-Request-Id": event.request_id},
            )
            event.outcome = "ok"
        except Exception as exc:
            problem = _problem(exc)
            if problem.status >= 500 and not isinstance(exc, ApiError | RetryLater):
                log.exception("API %s failed", endpoint.operation_id)
            event.outcome, event.detail = problem.code, problem.message[:200]
            response = error_response(problem, event.request_id)
        finally:
            event.status = response.status if response is not None else 500
            event.duration_ms = round((time.perf_counter() - started) * 1000, 1)
            state.audit.emit(event)
        return response

    return handle
