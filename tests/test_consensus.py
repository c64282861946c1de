"""The consensus rule: merged findings and a deterministic, only-lowering confidence."""

from __future__ import annotations

from typing import Any

import pytest

from app.review.consensus import SliceOutcome, combine, merge_findings
from app.review.model import ModelReview

REVIEWERS = ("Claude", "GPT")


def review(
    verdict: str = "approve", confidence: float = 0.9, findings: list[dict[str, Any]] | None = None
) -> ModelReview:
    return ModelReview.model_validate(
        {"summary": "ok", "verdict": verdict, "confidence": confidence, "findings": findings or []}
    )


def finding(path: str = "a.py", line: int = 3, **kw: Any) -> dict[str, Any]:
    base = {
        "path": path,
        "line": line,
        "severity": "minor",
        "category": "bug",
        "title": "t",
        "body": "b",
    }
    base.update(kw)
    return base


def both(a: ModelReview | None, b: ModelReview | None, *, index: int = 0) -> list[SliceOutcome]:
    return [
        SliceOutcome("Claude", index, a, None if a else "timeout"),
        SliceOutcome("GPT", index, b, None if b else "http 500"),
    ]


def test_agreeing_reviewers_take_the_lower_confidence() -> None:
    result = combine(both(review(confidence=0.97), review(confidence=0.91)), reviewers=REVIEWERS)
    assert result.confidence == 0.91
    assert result.complete and not result.disagreement and result.reasons == ()


def test_disagreement_lowers_by_a_quarter() -> None:
    result = combine(both(review("approve", 0.96), review("comment", 0.96)), reviewers=REVIEWERS)
    assert result.disagreement
    assert result.confidence == pytest.approx(0.72)


def test_failed_reviewer_caps_at_half_and_is_partial() -> None:
    result = combine(both(review(confidence=0.99), None), reviewers=REVIEWERS)
    assert result.confidence == 0.5
    assert not result.complete
    assert result.failed_reviewers == ("GPT",)


def test_failure_on_one_slice_only_still_caps() -> None:
    outcomes = both(review(confidence=0.99), review(confidence=0.99), index=0) + both(
        review(confidence=0.99), None, index=1
    )
    result = combine(outcomes, reviewers=REVIEWERS)
    assert result.confidence == 0.5
    assert result.reviewers[1].slices_ok == 1 and result.reviewers[1].slices_failed == 1


def test_files_no_model_saw_do_not_lower_the_confidence_in_what_was_read() -> None:
    # They are the decision's business (the unreviewed_files guard), not the consensus's.
    result = combine(both(review(confidence=0.99), review(confidence=0.99)), reviewers=REVIEWERS)
    assert result.confidence == 0.99 and result.complete


def test_blocker_caps_at_point_three() -> None:
    blocked = review("comment", 0.99, [finding(severity="blocker")])
    result = combine(both(blocked, review(confidence=0.99)), reviewers=REVIEWERS)
    assert result.any_blocker
    assert result.confidence == 0.3


def test_request_changes_caps_at_half() -> None:
    result = combine(
        both(review("request_changes", 0.99), review("request_changes", 0.99)), reviewers=REVIEWERS
    )
    assert result.any_request_changes
    assert result.confidence == 0.5


def test_no_valid_review_is_zero() -> None:
    result = combine(both(None, None), reviewers=REVIEWERS)
    assert result.confidence == 0.0 and not result.complete


def test_worst_slice_decides_a_models_verdict_and_confidence() -> None:
    outcomes = both(review("approve", 0.99), review("approve", 0.99), index=0) + both(
        review("comment", 0.7), review("approve", 0.95), index=1
    )
    result = combine(outcomes, reviewers=REVIEWERS)
    claude = result.reviewers[0]
    assert claude.verdict.value == "comment" and claude.confidence == 0.7  # type: ignore[union-attr]


def test_same_place_and_category_from_both_models_merge() -> None:
    a = review(findings=[finding(line=3, end_line=5, severity="minor", title="Off by one")])
    b = review(findings=[finding(line=5, severity="major", title="Index error", body="other")])
    [merged] = merge_findings(both(a, b))
    assert merged.raised_by == ("Claude", "GPT")
    assert merged.finding.severity.value == "major"
    assert (merged.finding.line, merged.finding.end_line) == (3, 5)
    assert "other" in merged.finding.body


def test_different_category_or_place_do_not_merge_and_order_is_by_severity() -> None:
    a = review(findings=[finding(line=3, category="style", severity="nit"), finding(line=40)])
    b = review(findings=[finding(line=3, category="bug", severity="blocker")])
    merged = merge_findings(both(a, b))
    assert [m.finding.severity.value for m in merged] == ["blocker", "minor", "nit"]
    assert merged[0].raised_by == ("GPT",)
    assert len(merged) == 3


def test_same_model_findings_never_merge_with_each_other() -> None:
    a = review(findings=[finding(line=3), finding(line=3, title="second")])
    assert len(merge_findings(both(a, None))) == 2


def test_fingerprint_is_stable_and_place_sensitive() -> None:
    a = merge_findings(both(review(findings=[finding(title="Off  By One")]), None))[0]
    b = merge_findings(both(review(findings=[finding(title="off by one")]), None))[0]
    c = merge_findings(both(review(findings=[finding(line=4, title="off by one")]), None))[0]
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize("c1", [0.0, 0.3, 0.6, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("c2", [0.0, 0.59, 0.81, 1.0])
@pytest.mark.parametrize("v2", ["approve", "comment", "request_changes"])
def test_confidence_never_exceeds_the_lowest_model(c1: float, c2: float, v2: str) -> None:
    result = combine(both(review("approve", c1), review(v2, c2)), reviewers=REVIEWERS)
    assert result.confidence <= min(c1, c2)
    assert combine(both(review("approve", c1), review(v2, c2)), reviewers=REVIEWERS) == result


def test_the_review_body_shows_every_parts_summary_in_order() -> None:
    """A large pull request is reviewed in parts: each part's summary reaches the review body,
    labelled with its part, and a part a model did not answer is left out."""
    from app.review.render import review_body

    def said(text: str) -> ModelReview:
        return ModelReview.model_validate(
            {"summary": text, "verdict": "approve", "confidence": 0.9, "findings": []}
        )

    outcomes = [
        *both(said("Claude on the API"), said("GPT on the API"), index=1),
        *both(said("Claude on the models"), None, index=0),
        *both(said("Claude on the tests"), said("GPT on the tests"), index=2),
    ]
    body = review_body(combine(outcomes, reviewers=REVIEWERS), outside_diff=(), not_reviewed=())
    claude = body.index("\n**Claude**:\n")
    gpt = body.index("\n**GPT**:\n")
    assert claude < gpt
    assert body[claude:gpt].split("\n")[2:5] == [
        "- part 1 of 3: Claude on the models",
        "- part 2 of 3: Claude on the API",
        "- part 3 of 3: Claude on the tests",
    ]
    assert body[gpt:].split("\n")[2:4] == [
        "- part 2 of 3: GPT on the API",
        "- part 3 of 3: GPT on the tests",
    ]

    single = review_body(
        combine(both(said("All fine."), said("Looks good.")), reviewers=REVIEWERS),
        outside_diff=(),
        not_reviewed=(),
    )
    assert "**Claude**: All fine." in single and "**GPT**: Looks good." in single
    assert "part " not in single
