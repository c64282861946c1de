"""The service API's wire contract: one pydantic model per request and response body.

Shared by the server (which validates requests and serialises responses with them), the OpenAPI
document (``app.api.openapi`` builds its schemas from them) and the client (``app.client``,
which parses responses into them). Imports nothing but pydantic, so a CI job can use the client
without the server's dependencies being loaded.

Requests are strict (``extra="forbid"``: a misspelt field is a 422, never silently ignored);
responses ignore unknown fields so an older client keeps working against a newer server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AnalyzeRequest",
    "AnalyzeResponse",
    "BudgetOut",
    "CalibrationBucketOut",
    "ChangeOut",
    "ChangesResponse",
    "ComponentOut",
    "ConsensusOut",
    "EffectOut",
    "ErrorBody",
    "FeedbackReportResponse",
    "FeedbackRowOut",
    "FindingOut",
    "GuardOut",
    "HealthResponse",
    "JobOut",
    "JobRequest",
    "JobStatus",
    "ModelReviewOut",
    "NotReviewedOut",
    "PathRiskOut",
    "Provider",
    "QuotaResponse",
    "RecommendationOut",
    "ReviewRequest",
    "ReviewResponse",
    "RiskOut",
]

#: The longest prompt, context and diff accepted (characters); the budget bounds the cost too.
MAX_PROMPT_CHARS: Final = 20_000
MAX_CONTEXT_CHARS: Final = 400_000
MAX_DIFF_CHARS: Final = 5_000_000
MAX_CHANGED_PATHS: Final = 10_000

Provider = Literal["anthropic", "openai"]
Action = Literal["auto_merge", "auto_pr", "escalate"]
Tier = Literal["low", "medium", "high", "critical"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]

_REPOSITORY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
_REF_PATTERN: Final = r"^[A-Za-z0-9._+-][A-Za-z0-9._/+-]{0,254}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _source_repository() -> Any:
    return Field(
        default=None,
        pattern=_REPOSITORY_PATTERN,
        description=(
            "owner/name the request is for: its budgets pay, its configuration applies. It must "
            "be in the server's allowlist, and for an OIDC token its owner must be the token's "
            "repository_owner. Defaults to the OIDC token's repository."
        ),
    )


class ErrorBody(_Response):
    """Every error answer: a stable code, a sentence, and when to try again (429, 503)."""

    error: str = Field(description="a stable code, e.g. unauthenticated, forbidden, rate_limited")
    message: str
    retry_after: float | None = Field(default=None, description="seconds, as in Retry-After")


# ---------------------------------------------------------------------------------- analyze


class AnalyzeRequest(_Request):
    source_repository: str | None = _source_repository()
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    context: str | None = Field(
        default=None,
        max_length=MAX_CONTEXT_CHARS,
        description="data the prompt is about; sent to the model as delimited data",
    )
    provider: Provider | None = Field(
        default=None, description="anthropic (Claude) or openai (GPT); the server's default"
    )
    max_output_tokens: int | None = Field(default=None, ge=16, le=64_000)


class AnalyzeResponse(_Response):
    answer: str
    repository: str
    provider: Provider
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="null when the model has no known price")
    log_id: str | None = Field(description="the gateway's cf-aig-log-id of the call")
    cut_off: bool = Field(description="the answer stopped at the output token limit")
    notes: list[str] = Field(default_factory=list, description="budget downgrades, if any")


# ---------------------------------------------------------------------------------- review


class ReviewRequest(_Request):
    """A unified diff (with ``changed_paths`` for risk), or a pull request by number."""

    source_repository: str | None = _source_repository()
    diff: str | None = Field(default=None, max_length=MAX_DIFF_CHARS)
    changed_paths: list[str] = Field(
        default_factory=list,
        max_length=MAX_CHANGED_PATHS,
        description=(
            "every path the change touches, for the risk tier; with a diff only. A path not in "
            "the diff counts as a file no model saw"
        ),
    )
    pull_number: int | None = Field(default=None, ge=1)
    post: bool = Field(
        default=False,
        description=(
            "with pull_number: publish the App's review and check run, and let its decision "
            "act as the repository's autonomy mode says, as the review command would. "
            "Otherwise nothing is written to GitHub"
        ),
    )
    title: str = Field(default="", max_length=300)
    description: str = Field(default="", max_length=20_000)

    @model_validator(mode="after")
    def _one_subject(self) -> ReviewRequest:
        if (self.diff is None) == (self.pull_number is None):
            raise ValueError("give exactly one of diff and pull_number")
        if self.post and self.pull_number is None:
            raise ValueError("post needs pull_number: a bare diff has nowhere to be posted")
        if self.changed_paths and self.diff is None:
            raise ValueError("changed_paths goes with diff; a pull request's files are read")
        return self


class FindingOut(_Response):
    path: str
    line: int
    end_line: int | None
    severity: Literal["blocker", "major", "minor", "nit"]
    category: str
    title: str
    body: str
    suggestion: str | None
    raised_by: list[str]


class ModelReviewOut(_Response):
    """One model's review of the whole change: its worst verdict and lowest confidence."""

    reviewer: str = Field(description="Claude or GPT")
    provider: Provider
    model: str
    verdict: Literal["approve", "comment", "request_changes"] | None
    confidence: float | None
    summaries: list[str]
    errors: list[str]
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    log_ids: list[str]


class ConsensusOut(_Response):
    confidence: float
    complete: bool
    disagreement: bool
    any_blocker: bool
    any_request_changes: bool
    findings: list[FindingOut]
    reasons: list[str]


class PathRiskOut(_Response):
    path: str
    tier: Tier
    rule: str


class RiskOut(_Response):
    tier: Tier
    paths: list[PathRiskOut]


class GuardOut(_Response):
    guard: str
    effect: str
    reason: str


class RecommendationOut(_Response):
    """What the autonomy matrix and its guards recommend; the API itself acts on nothing."""

    action: Action
    matrix_action: Action
    reason: str
    guards: list[GuardOut]


class NotReviewedOut(_Response):
    path: str
    reason: str


class ReviewResponse(_Response):
    repository: str
    pull_number: int | None
    head_sha: str | None
    reviews: list[ModelReviewOut]
    consensus: ConsensusOut
    confidence: float
    risk: RiskOut
    recommendation: RecommendationOut
    not_reviewed: list[NotReviewedOut]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    posted: bool
    check_run_id: int | None = None
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------- jobs


class JobRequest(_Request):
    source_repository: str | None = _source_repository()
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    ref: str | None = Field(
        default=None,
        pattern=_REF_PATTERN,
        description="branch, tag or commit to check out; the default branch when absent",
    )
    sandbox: str | None = Field(
        default=None,
        max_length=64,
        description="one of the server's allowed sandboxes; its first one when absent",
    )

    @field_validator("ref")
    @classmethod
    def _no_dot_dot(cls, value: str | None) -> str | None:
        if value is not None and ".." in value:
            raise ValueError("a ref never contains '..'")
        return value


class JobOut(_Response):
    id: str
    repository: str
    ref: str | None
    sandbox: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    output: str | None = Field(description="the command's stdout (capped)")
    stderr: str | None = Field(description="the command's stderr (capped)")
    diff: str | None = Field(description="unified diff of the checkout after the command")
    error: str | None = Field(description="why a failed job failed, e.g. interrupted, timeout")


# ---------------------------------------------------------------------------------- quota


class BudgetOut(_Response):
    kind: Literal["daily", "weekly", "per_pr"]
    limit_usd: float | None
    spent_usd: float
    remaining_usd: float | None
    window: str
    resets_at: datetime | None
    exhausted: bool


class QuotaResponse(_Response):
    repository: str
    budgets: list[BudgetOut]
    remaining_usd: float | None = Field(description="what every budget still allows; null: none")
    limiting: str | None
    report: str = Field(description="the same figures as the check run's Markdown table")


# ---------------------------------------------------------------------------------- health


class ComponentOut(_Response):
    state: Literal["healthy", "degraded", "unhealthy"]
    calls: int
    errors: int
    error_rate: float
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None


class HealthResponse(_Response):
    status: Literal["healthy", "degraded", "unhealthy"]
    version: str
    uptime_s: float
    window_s: float
    components: dict[str, ComponentOut]
    jobs_running: int
    jobs_max: int


# ---------------------------------------------------------------------------------- feedback


class FeedbackRowOut(_Response):
    tier: str
    decision: str
    changes: int
    outcomes: dict[str, int]
    settled: int
    bad: int
    bad_rate: float | None
    mean_confidence: float | None
    spend_usd: float


class CalibrationBucketOut(_Response):
    low: float
    high: float
    settled: int
    bad: int
    bad_rate: float | None
    mean_confidence: float | None
    expected_bad_rate: float | None


class CalibrationOut(_Response):
    buckets: list[CalibrationBucketOut]
    brier: float | None


class FeedbackReportResponse(_Response):
    repository: str
    since: datetime | None
    at: datetime
    rows: list[FeedbackRowOut]
    totals: FeedbackRowOut
    calibration: CalibrationOut


class EffectOut(_Response):
    kind: str
    evidence: str
    detail: str
    observed_at: datetime


class ChangeOut(_Response):
    pr_number: int
    head_sha: str
    tier: str | None
    confidence: float | None
    decision: str
    acted: bool
    decided_at: datetime
    state: str
    merged_at: datetime | None
    merge_sha: str | None
    merged_by_bot: bool | None
    outcome: str = Field(description="clean, an effect, pending, open or unmerged")
    outcome_since: datetime | None
    effects: list[EffectOut]
    spend_usd: float


class ChangesResponse(_Response):
    repository: str
    changes: list[ChangeOut]
