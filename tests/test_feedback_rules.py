"""The feedback loop's pure parts: reading effects out of events, outcomes, tightening, report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.feedback.outcomes import ChangeRecord, EffectRecord, Outcome, settle
from app.feedback.report import build_report, markdown, summary_line, text_table
from app.feedback.signals import (
    Effect,
    failed_checks_that_passed,
    is_fix,
    overlaps,
    patch_ranges,
    revert_branch_number,
    reverted_shas,
)
from app.feedback.tightening import Rules, evaluate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "a" * 40


# ---------------------------------------------------------------------------------- signals


def test_revert_messages_name_the_reverted_commits() -> None:
    message = f'Revert "Add x"\n\nThis reverts commit {SHA.upper()}.\nThis reverts commit {SHA}.'
    assert reverted_shas(message) == (SHA,)
    assert reverted_shas("This reverts commit abc1234 and more") == ("abc1234",)
    assert reverted_shas("Reverts the thing") == ()
    assert reverted_shas("This reverts commit abc12") == ()  # too short to be a commit


def test_github_revert_branches_name_the_pull_request() -> None:
    assert revert_branch_number("revert-42-feature/x") == 42
    assert revert_branch_number("feature/revert-42-x") is None
    assert revert_branch_number("revert-branch") is None


@pytest.mark.parametrize(
    ("title", "branch", "labels", "expected"),
    [
        ("Fix a crash in the parser", "feature", [], True),
        ("Hotfix: typo", "main-2", [], True),
        ("Add a prefix option", "fix/prefix", [], True),
        ("Prefix option", "feature", ["Bug"], True),
        ("Prefix option", "feature", ["enhancement"], False),
        ("Add a prefix option", "feature/prefix", [], False),
        ("Fixture cleanup", "fixtures", [], False),  # "fixture" is not "fix"
    ],
)
def test_fixes_are_marked_by_title_branch_or_label(
    title: str, branch: str, labels: list[str], expected: bool
) -> None:
    assert is_fix(title, branch, labels) is expected


def test_patch_ranges_give_written_and_replaced_lines() -> None:
    files = [
        {"filename": "a.py", "patch": "@@ -10,3 +10,4 @@\n x\n-old\n+new\n+more\n y"},
        {"filename": "b.png"},  # no patch: the whole file
    ]
    assert patch_ranges(files, side="new") == {"a.py": ((11, 12),), "b.png": ((1, 10**9),)}
    assert patch_ranges(files, side="old") == {"a.py": ((11, 11),), "b.png": ((1, 10**9),)}
    insertion = [{"filename": "a.py", "patch": "@@ -5,2 +5,3 @@\n x\n+inserted\n y"}]
    assert patch_ranges(insertion, side="old") == {"a.py": ((5, 5),)}
    with pytest.raises(ValueError, match="side"):
        patch_ranges(files, side="left")


def test_overlaps_need_the_same_file_and_meeting_lines() -> None:
    written = {"a.py": ((11, 12),), "b.py": ((1, 3),)}
    assert overlaps(written, {"a.py": ((12, 20),)}) == ("a.py",)
    assert overlaps(written, {"a.py": ((13, 20),)}) == ()
    assert overlaps(written, {"c.py": ((1, 3),)}) == ()


def test_only_checks_that_passed_on_the_head_count_as_broken() -> None:
    assert failed_checks_that_passed(["test", "lint"], ["Test", "build"]) == ("test",)
    assert failed_checks_that_passed(["flaky"], []) == ()


# ---------------------------------------------------------------------------------- outcomes


def _change(
    number: int = 1,
    *,
    decision: str = "auto_merge",
    confidence: float | None = 0.9,
    tier: str = "low",
    merged: datetime | None = T0,
    effects: tuple[EffectRecord, ...] = (),
    spend: float = 0.0,
) -> ChangeRecord:
    return ChangeRecord(
        id=number,
        repository="o/r",
        pr_number=number,
        head_sha=SHA,
        tier=tier,
        confidence=confidence,
        decision=decision,
        acted=True,
        decided_at=(merged or T0) - timedelta(minutes=5),
        state="merged" if merged is not None else "open",
        merged_at=merged,
        merge_sha="b" * 40 if merged is not None else None,
        window_ends_at=merged + timedelta(days=14) if merged is not None else None,
        effects=effects,
        spend_usd=spend,
    )


def _effect(kind: Effect, at: datetime) -> EffectRecord:
    return EffectRecord(kind, f"{kind}@{at.isoformat()}", kind.value, at)


def test_a_merge_is_pending_until_its_window_closes_clean() -> None:
    change = _change()
    assert settle(change, T0 + timedelta(days=13)).outcome is Outcome.PENDING
    closed = settle(change, T0 + timedelta(days=14))
    assert closed.outcome is Outcome.CLEAN and closed.since == T0 + timedelta(days=14)


def test_the_worst_effect_in_the_window_is_the_outcome_from_the_first_seen() -> None:
    fix = _effect(Effect.FOLLOW_UP_FIX, T0 + timedelta(days=1))
    revert = _effect(Effect.REVERTED, T0 + timedelta(days=2))
    late = _effect(Effect.BROKE_CI, T0 + timedelta(days=20))  # after the window: not counted
    settled = settle(_change(effects=(fix, revert, late)), T0 + timedelta(days=3))
    assert settled.outcome is Outcome.REVERTED
    assert settled.since == T0 + timedelta(days=1)
    assert settle(_change(effects=(late,)), T0 + timedelta(days=30)).outcome is Outcome.CLEAN


def test_unmerged_changes_are_not_judged_unless_affected() -> None:
    assert settle(_change(merged=None), T0).outcome is Outcome.OPEN
    override = _effect(Effect.HUMAN_OVERRIDE, T0)
    assert settle(_change(merged=None, effects=(override,)), T0).outcome.bad


# ---------------------------------------------------------------------------------- tightening


def _history(bad: list[bool]) -> list[tuple[datetime, bool]]:
    return [(T0 + timedelta(hours=i), b) for i, b in enumerate(bad)]


def test_tightens_when_the_bad_rate_exceeds_the_threshold() -> None:
    # 2 of 20 is 10 %: not above. The third bad one among the last 20 tightens.
    assert not evaluate(_history([False] * 18 + [True, True])).active
    state = evaluate(_history([False] * 18 + [True, True, True]))
    assert state.active and state.bad == 3 and state.counted == 20
    # Fewer outcomes than the lookback count as they are: a first revert tightens at once.
    assert evaluate(_history([True])).active
    assert "3 of the last 20" in state.reason and "autonomy reset" in state.reason


def test_only_the_last_lookback_outcomes_count() -> None:
    rules = Rules(lookback=20, max_bad_rate=0.09, clean_streak=100)
    # Two bad among the last 20 (10 %) tightens; spread over 40 (5 %) it would not.
    assert evaluate(_history([False] * 20 + [True] + [False] * 18 + [True]), rules=rules).active
    # One more clean outcome between them and the first bad one has left the window.
    assert not evaluate(_history([False] * 20 + [True] + [False] * 19 + [True]), rules=rules).active


def test_steps_back_after_a_clean_streak_and_a_bad_one_restarts_it() -> None:
    rules = Rules(lookback=20, max_bad_rate=0.10, clean_streak=5)
    tightened = evaluate(_history([True] + [False] * 4), rules=rules)
    assert tightened.active and tightened.streak == 4
    assert not evaluate(_history([True] + [False] * 5), rules=rules).active
    again = evaluate(_history([True] + [False] * 4 + [True] + [False] * 4), rules=rules)
    assert again.active and again.streak == 4


def test_an_admin_reset_lifts_it_and_forgives_what_was_known() -> None:
    history = _history([True, True, False])
    assert evaluate(history).active
    reset = T0 + timedelta(hours=5)
    assert not evaluate(history, [reset]).active
    # Outcomes after the reset count afresh.
    later = [*history, (T0 + timedelta(hours=6), True)]
    assert evaluate(later, [reset]).active


def test_never_tightened_without_outcomes() -> None:
    assert not evaluate([]).active
    assert evaluate([]).reason == ""


# ---------------------------------------------------------------------------------- report


def test_report_counts_outcomes_per_tier_and_decision_with_calibration() -> None:
    now = T0 + timedelta(days=30)
    changes = [
        _change(1, confidence=0.95, spend=0.10),
        _change(2, confidence=0.95, effects=(_effect(Effect.REVERTED, T0),), spend=0.20),
        _change(3, confidence=0.75, tier="medium", decision="auto_pr", spend=0.05),
        _change(4, confidence=0.6, tier="high", decision="escalate", merged=None),
        _change(5, confidence=0.97, merged=now - timedelta(days=1)),  # still in its window
    ]
    report = build_report("o/r", changes, at=now)
    rows = {(r.tier, r.decision): r for r in report.rows}
    low = rows[("low", "auto_merge")]
    assert (low.changes, low.settled, low.bad, low.bad_rate) == (3, 2, 1, 0.5)
    assert low.outcomes == {"clean": 1, "pending": 1, "reverted": 1}
    assert low.mean_confidence == pytest.approx((0.95 + 0.95 + 0.97) / 3)
    assert low.spend_usd == pytest.approx(0.30)
    assert rows[("high", "escalate")].settled == 0
    assert [r.tier for r in report.rows] == ["low", "medium", "high"]
    assert report.totals.changes == 5 and report.totals.bad == 1 and report.totals.settled == 3

    bucket = next(b for b in report.buckets if b.low == 0.95)
    assert (bucket.settled, bucket.bad, bucket.bad_rate) == (2, 1, 0.5)
    assert bucket.expected_bad_rate == pytest.approx(0.05)
    # Brier: (0.95-1)^2, (0.95-0)^2, (0.75-1)^2 over three settled changes.
    assert report.brier == pytest.approx((0.05**2 + 0.95**2 + 0.25**2) / 3)

    data = report.to_json()
    assert data["totals"]["bad"] == 1 and data["calibration"]["brier"] == report.brier
    table = text_table(report)
    assert "low" in table and "1/2" in table and "Brier score: 0.32" in table
    text = markdown(report)
    assert "| low | auto_merge | 3 | 1/2 | 50% | 0.96 | $0.30 |" in text
    assert "1 of 3 settled changes went wrong (33%)" in summary_line(report)


def test_report_since_and_empty() -> None:
    report = build_report("o/r", [_change(1)], at=T0, since=T0 + timedelta(days=1))
    assert report.rows == () and report.brier is None
    assert "no registered changes yet" in markdown(report)
    assert summary_line(report) == ""
