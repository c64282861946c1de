"""Consensus: two reviewers' answers, per slice, combined into one result for the pull request.

Findings
    Findings from different models on the same path, with overlapping line ranges and the same
    category, are one finding: it keeps the higher severity, the first model's title, both
    bodies (when they differ), and records that both models raised it. Findings from one model
    are kept as they are.

Per-model verdict and confidence
    A model's verdict for the PR is its worst verdict over the slices it reviewed
    (request_changes > comment > approve); its confidence is its lowest confidence over them. A
    PR is only as safe as its riskiest slice.

The PR's confidence (deterministic; every step can only lower it)
    1. Start from the lowest of the models' confidences (both must be convinced).
    2. The models disagree on the verdict: multiply by 0.75.
    3. A reviewer failed or timed out on any slice: cap at 0.50. What was not read cannot be
       vouched for. (Files no model was shown at all, binary or over a cap, are not a matter of
       confidence in what was read: the ``unreviewed_files`` guard of ``policy/autonomy`` keeps
       the decision at most ``auto_pr`` for them.)
    4. Any ``request_changes`` verdict: cap at 0.50.
    5. Any ``blocker`` finding: cap at 0.30.
    6. No reviewer produced a valid answer at all: 0.0.
    The result is rounded to four decimals so that equal inputs give byte-equal outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.review.model import Finding, ModelReview, Severity, Verdict

DISAGREEMENT_FACTOR = 0.75
INCOMPLETE_CAP = 0.50
REQUEST_CHANGES_CAP = 0.50
BLOCKER_CAP = 0.30

_VERDICT_RANK = {Verdict.APPROVE: 0, Verdict.COMMENT: 1, Verdict.REQUEST_CHANGES: 2}
_SEVERITY_RANK = {Severity.NIT: 0, Severity.MINOR: 1, Severity.MAJOR: 2, Severity.BLOCKER: 3}


@dataclass(frozen=True, slots=True)
class SliceOutcome:
    """One reviewer's answer for one slice: a valid review, or the reason there is none."""

    reviewer: str  # display name, e.g. "Claude" or "GPT"
    slice_index: int
    review: ModelReview | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MergedFinding:
    finding: Finding
    raised_by: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """Stable identity of a finding's place and kind, to avoid posting it twice."""
        key = "\x1f".join(
            (
                self.finding.path,
                str(self.finding.line),
                self.finding.category.value,
                " ".join(self.finding.title.lower().split()),
            )
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ReviewerSummary:
    reviewer: str
    verdict: Verdict | None
    confidence: float | None
    slices_ok: int
    slices_failed: int
    errors: tuple[str, ...]
    summaries: tuple[str, ...]
    summary_parts: tuple[int, ...]
    """The slice each of ``summaries`` was written for, in the same order."""

    @property
    def failed(self) -> bool:
        return self.slices_failed > 0


@dataclass(frozen=True, slots=True)
class Consensus:
    reviewers: tuple[ReviewerSummary, ...]
    findings: tuple[MergedFinding, ...]
    confidence: float
    disagreement: bool
    any_blocker: bool
    any_request_changes: bool
    complete: bool  # every reviewer answered every slice
    reasons: tuple[str, ...] = field(default=())

    @property
    def verdicts(self) -> dict[str, Verdict]:
        return {r.reviewer: r.verdict for r in self.reviewers if r.verdict is not None}

    @property
    def failed_reviewers(self) -> tuple[str, ...]:
        return tuple(r.reviewer for r in self.reviewers if r.failed)


def _worst(verdicts: Iterable[Verdict]) -> Verdict | None:
    ranked = sorted(verdicts, key=_VERDICT_RANK.__getitem__)
    return ranked[-1] if ranked else None


def summarise_reviewer(name: str, outcomes: Sequence[SliceOutcome]) -> ReviewerSummary:
    answered = sorted((o for o in outcomes if o.review is not None), key=lambda o: o.slice_index)
    reviews = [o.review for o in answered if o.review is not None]
    errors = tuple(sorted({o.error or "no answer" for o in outcomes if o.review is None}))
    return ReviewerSummary(
        reviewer=name,
        verdict=_worst(r.verdict for r in reviews),
        confidence=min((r.confidence for r in reviews), default=None),
        slices_ok=len(reviews),
        slices_failed=len(outcomes) - len(reviews),
        errors=errors,
        summaries=tuple(r.summary for r in reviews),
        summary_parts=tuple(o.slice_index for o in answered),
    )


def _overlaps(a: Finding, b: Finding) -> bool:
    return a.line <= b.last_line and b.line <= a.last_line


def merge_findings(outcomes: Sequence[SliceOutcome]) -> list[MergedFinding]:
    """Merge cross-model duplicates; order by severity (worst first), then path and line."""
    merged: list[tuple[Finding, list[str]]] = []
    for outcome in outcomes:
        if outcome.review is None:
            continue
        for finding in outcome.review.findings:
            for index, (existing, sources) in enumerate(merged):
                if (
                    outcome.reviewer not in sources
                    and existing.path == finding.path
                    and existing.category == finding.category
                    and _overlaps(existing, finding)
                ):
                    merged[index] = (_combine(existing, finding), [*sources, outcome.reviewer])
                    break
            else:
                merged.append((finding, [outcome.reviewer]))
    result = [MergedFinding(f, tuple(sources)) for f, sources in merged]
    result.sort(key=lambda m: (-_SEVERITY_RANK[m.finding.severity], m.finding.path, m.finding.line))
    return result


def _combine(first: Finding, second: Finding) -> Finding:
    severity = max(first.severity, second.severity, key=_SEVERITY_RANK.__getitem__)
    body = (
        first.body
        if first.body.strip() == second.body.strip()
        else (f"{first.body}\n\n{second.body}")
    )
    return first.model_copy(
        update={
            "severity": severity,
            "line": min(first.line, second.line),
            "end_line": _end(first, second),
            "body": body[:8000],
            "suggestion": first.suggestion if first.suggestion is not None else second.suggestion,
        }
    )


def _end(first: Finding, second: Finding) -> int | None:
    start = min(first.line, second.line)
    end = max(first.last_line, second.last_line)
    return end if end != start else None


def combine(
    outcomes: Sequence[SliceOutcome],
    *,
    reviewers: Sequence[str],
) -> Consensus:
    """The consensus rule of the module docstring, over every slice outcome of one review."""
    summaries = tuple(
        summarise_reviewer(name, [o for o in outcomes if o.reviewer == name]) for name in reviewers
    )
    findings = tuple(merge_findings(outcomes))
    answered = [s for s in summaries if s.confidence is not None]
    verdicts = {s.verdict for s in answered if s.verdict is not None}
    disagreement = len(verdicts) > 1
    any_blocker = any(m.finding.severity is Severity.BLOCKER for m in findings)
    any_request_changes = Verdict.REQUEST_CHANGES in verdicts
    any_failed = any(s.failed for s in summaries) or any(s.slices_ok == 0 for s in summaries)
    complete = not any_failed
    reasons: list[str] = []

    if not answered:
        return Consensus(
            summaries,
            findings,
            0.0,
            False,
            any_blocker,
            any_request_changes,
            False,
            ("no reviewer produced a valid review",),
        )
    confidence = min(s.confidence for s in answered if s.confidence is not None)
    if disagreement:
        confidence *= DISAGREEMENT_FACTOR
        reasons.append("the reviewers disagree on the verdict")
    if any_failed:
        confidence = min(confidence, INCOMPLETE_CAP)
        reasons.append("a reviewer failed or timed out")
    if any_request_changes:
        confidence = min(confidence, REQUEST_CHANGES_CAP)
        reasons.append("a reviewer requested changes")
    if any_blocker:
        confidence = min(confidence, BLOCKER_CAP)
        reasons.append("a blocker was found")
    return Consensus(
        reviewers=summaries,
        findings=findings,
        confidence=round(confidence, 4),
        disagreement=disagreement,
        any_blocker=any_blocker,
        any_request_changes=any_request_changes,
        complete=complete,
        reasons=tuple(reasons),
    )
