"""Rendering a review for GitHub: inline comments, the review body, check-run text, annotations.

Pure functions from the consensus to the exact JSON GitHub receives. Every model-written string
goes through ``sanitize.clean``; every body stays within GitHub's limits (65,535 characters for
check-run text, 64 KB for an annotation message, 255 for its title). A finding is placed inline
only on a line the diff shows on the right side (the ``LineMap`` says so); anything else goes into
the review body, so GitHub never rejects a review for a line outside the diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.policy.tripwire import Place, TripwireHit
from app.review.consensus import Consensus, MergedFinding, ReviewerSummary
from app.review.diff import LineMap
from app.review.model import Severity
from app.review.sanitize import GITHUB_BODY_LIMIT, clean, fence, truncate

CHECK_NAME = "aigateway"
MARKER_PREFIX = "<!-- aigateway:"
ANNOTATIONS_PER_REQUEST = 50
COMMENT_LIMIT = 16000
SUMMARY_LIMIT = GITHUB_BODY_LIMIT - 500

_SEVERITY_ICON = {
    Severity.BLOCKER: "🔴",
    Severity.MAJOR: "🟠",
    Severity.MINOR: "🟡",
    Severity.NIT: "⚪",
}
_ANNOTATION_LEVEL = {
    Severity.BLOCKER: "failure",
    Severity.MAJOR: "warning",
    Severity.MINOR: "warning",
    Severity.NIT: "notice",
}


def fingerprint_marker(fp: str) -> str:
    return f"{MARKER_PREFIX}fp={fp} -->"


def raised_by(m: MergedFinding) -> str:
    if len(m.raised_by) > 1:
        return "raised by " + " and ".join(m.raised_by)
    return f"raised by {m.raised_by[0]}" if m.raised_by else ""


def comment_body(m: MergedFinding, *, with_suggestion: bool) -> str:
    f = m.finding
    head = (
        f"{_SEVERITY_ICON[f.severity]} **{f.severity.value} · {f.category.value}**: "
        f"{clean(f.title, limit=200)}"
    )
    parts = [head, clean(f.body, limit=COMMENT_LIMIT - 1000)]
    if with_suggestion and f.suggestion is not None:
        parts.append(fence(f.suggestion, "suggestion"))
    parts.append(f"<sub>{raised_by(m)}</sub>\n{fingerprint_marker(m.fingerprint)}")
    return truncate("\n\n".join(parts), COMMENT_LIMIT)


@dataclass(frozen=True, slots=True)
class PlacedReview:
    comments: list[dict[str, Any]]
    outside_diff: list[MergedFinding]
    skipped_duplicates: int


def place_comments(
    findings: Sequence[MergedFinding],
    line_map: LineMap,
    *,
    already_posted: frozenset[str] = frozenset(),
) -> PlacedReview:
    """Inline comments for findings on diff lines; the rest are listed for the review body.

    A multi-line range must lie within one hunk's right side; if it does not, the comment is
    placed on its first line alone when that line is in the diff. Findings whose fingerprint was
    posted before (an earlier review of this PR) are not posted again.
    """
    comments: list[dict[str, Any]] = []
    outside: list[MergedFinding] = []
    skipped = 0
    for m in findings:
        if m.fingerprint in already_posted:
            skipped += 1
            continue
        f = m.finding
        end = f.last_line
        if end > f.line and line_map.commentable_range(f.path, f.line, end):
            comments.append(
                {
                    "path": f.path,
                    "start_line": f.line,
                    "start_side": "RIGHT",
                    "line": end,
                    "side": "RIGHT",
                    "body": comment_body(m, with_suggestion=True),
                }
            )
        elif line_map.is_commentable(f.path, f.line):
            single = end == f.line
            comments.append(
                {
                    "path": f.path,
                    "line": f.line,
                    "side": "RIGHT",
                    # A suggestion replaces exactly the commented lines: only keep it when the
                    # comment covers the range it was written for.
                    "body": comment_body(m, with_suggestion=single),
                }
            )
        else:
            outside.append(m)
    return PlacedReview(comments, outside, skipped)


def review_body(
    consensus: Consensus,
    *,
    outside_diff: Sequence[MergedFinding],
    not_reviewed: Sequence[tuple[str, str]],
    decision_line: str | None = None,
    incremental_since: str | None = None,
    carried_line: str | None = None,
    tripwire: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    lines = [f"### {CHECK_NAME} review"]
    if incremental_since:
        lines.append(f"Changes since {incremental_since[:12]} only.")
    if carried_line:
        lines.append(f"**Carried over**: {carried_line}.")
    if tripwire:
        lines.append(
            f"**Tripwire** ({len(tripwire)} hit(s)): this pull request contains text aimed at an "
            "automated reviewer or characters that hide what the code does, so a human decides."
        )
        lines.extend(f"- {clean(hit, limit=300)}" for hit in tripwire[:20])
        if len(tripwire) > 20:
            lines.append(f"- … and {len(tripwire) - 20} more")
    for r in consensus.reviewers:
        if r.verdict is not None and r.confidence is not None:
            status = f"{r.verdict.value}, confidence {r.confidence:.2f}"
            if r.failed:
                status += f" (failed on {r.slices_failed} part(s): {', '.join(r.errors)})"
        else:
            status = f"no review ({', '.join(r.errors) or 'not run'})"
        lines.append(f"- **{r.reviewer}**: {status}")
    lines.append(f"- **Combined confidence**: {consensus.confidence:.2f}")
    if consensus.reasons:
        lines.append(f"  - lowered because {'; '.join(consensus.reasons)}")
    if decision_line:
        lines.append(f"- **Decision**: {decision_line}")
    lines.extend(f"- {note}" for note in notes)
    summaries = [(r, _summary_parts(r)) for r in consensus.reviewers]
    if any(parts for _, parts in summaries):
        lines.append("")
        for r, parts in summaries:
            total = r.slices_ok + r.slices_failed
            if len(parts) == 1 and total <= 1:
                lines.append(f"**{r.reviewer}**: {clean(parts[0][1], limit=1500)}")
            elif parts:
                # A large pull request is reviewed in parts: each part's summary is shown.
                each = max(300, 3000 // len(parts))
                lines.append(f"**{r.reviewer}**:")
                lines.extend(
                    f"- part {index + 1} of {total}: {clean(text, limit=each)}"
                    for index, text in parts
                )
    if outside_diff:
        lines.append("\n**Findings on lines outside the diff**")
        for m in outside_diff[:50]:
            f = m.finding
            lines.append(
                f"- {_SEVERITY_ICON[f.severity]} `{clean(f.path, limit=300)}:{f.line}` "
                f"**{f.severity.value} · {f.category.value}**: {clean(f.title, limit=200)} "
                f"({raised_by(m)})"
            )
        if len(outside_diff) > 50:
            lines.append(f"- … and {len(outside_diff) - 50} more")
    if not_reviewed:
        lines.append(f"\n**Not reviewed** ({len(not_reviewed)} file(s))")
        lines.extend(f"- `{clean(p, limit=300)}`: {reason}" for p, reason in not_reviewed[:100])
        if len(not_reviewed) > 100:
            lines.append(f"- … and {len(not_reviewed) - 100} more")
    return truncate("\n".join(lines), SUMMARY_LIMIT)


def _summary_parts(reviewer: ReviewerSummary) -> list[tuple[int, str]]:
    """``(slice index, summary)`` for each part the reviewer answered with a summary."""
    pairs = zip(reviewer.summary_parts, reviewer.summaries, strict=True)
    return [(i, text) for i, text in pairs if text.strip()]


def check_annotations(findings: Sequence[MergedFinding], line_map: LineMap) -> list[dict[str, Any]]:
    """Check-run annotations: one per finding on a file in the diff."""
    result: list[dict[str, Any]] = []
    for m in findings:
        f = m.finding
        if f.path not in line_map:
            continue
        result.append(
            {
                "path": f.path,
                "start_line": f.line,
                "end_line": f.last_line,
                "annotation_level": _ANNOTATION_LEVEL[f.severity],
                "title": truncate(
                    clean(f"{f.severity.value} · {f.category.value}: {f.title}"), 255
                ),
                "message": truncate(
                    clean(f"{f.body}\n\n({raised_by(m)})"), 60000, note="… (truncated)"
                ),
            }
        )
    return result


def tripwire_annotations(hits: Sequence[TripwireHit]) -> list[dict[str, Any]]:
    """One failure annotation per tripwire hit that has a file line to point at."""
    return [
        {
            "path": hit.path,
            "start_line": hit.line,
            "end_line": hit.line,
            "annotation_level": "failure",
            "title": truncate(clean(f"Tripwire: {hit.rule.value.replace('_', ' ')}"), 255),
            "message": truncate(clean(hit.describe()), 60000, note="… (truncated)"),
        }
        for hit in hits
        if hit.place is Place.FILE and hit.path is not None and hit.line is not None
    ]


def batches(
    items: Sequence[dict[str, Any]], size: int = ANNOTATIONS_PER_REQUEST
) -> list[list[dict[str, Any]]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
