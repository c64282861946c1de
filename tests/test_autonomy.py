"""The autonomy matrix, every guard, and the property that nothing rises above the matrix."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import replace

import pytest

from app.policy.autonomy import (
    AutonomyDecision,
    Decision,
    DecisionInput,
    Effect,
    Guard,
    decide,
    lower,
    matrix,
    step_down,
)
from app.policy.risk import Tier
from app.repo_config import AutonomyConfig, AutonomyMode
from app.review.model import Verdict

MERGE, PR, ESC = Decision.AUTO_MERGE, Decision.AUTO_PR, Decision.ESCALATE
APPROVE, COMMENT, CHANGES = Verdict.APPROVE, Verdict.COMMENT, Verdict.REQUEST_CHANGES

ACT = AutonomyConfig(mode=AutonomyMode.ACT)

# DESIGN.md, row by row; columns: < 0.60 | 0.60 to 0.79 | 0.80 to 0.94 | >= 0.95
EXPECTED: Mapping[Tier, tuple[Decision, Decision, Decision, Decision]] = {
    Tier.LOW: (PR, MERGE, MERGE, MERGE),
    Tier.MEDIUM: (ESC, PR, MERGE, MERGE),
    Tier.HIGH: (ESC, ESC, PR, MERGE),
    Tier.CRITICAL: (ESC, ESC, ESC, ESC),
}
# Each boundary value and the column it belongs to (boundaries are inclusive at the lower edge).
BOUNDARIES = [
    (0.0, 0),
    (0.5999, 0),
    (0.60, 1),
    (0.7999, 1),
    (0.80, 2),
    (0.9499, 2),
    (0.95, 3),
    (1.0, 3),
]


def make(**changes: object) -> DecisionInput:
    """A pull request that passes every guard: low risk, both approve, act mode."""
    base = DecisionInput(
        tier=Tier.LOW,
        confidence=0.97,
        verdicts={"anthropic": APPROVE, "openai": APPROVE},
        any_blocker=False,
        review_complete=True,
        failed_reviewers=frozenset(),
        is_fork=False,
        is_draft=False,
        labels=frozenset(),
        unseen=(),
        carried=None,
        tripwire=(),
        autonomy=ACT,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def guards_of(result: AutonomyDecision) -> list[tuple[Guard, Effect]]:
    return [(g.guard, g.effect) for g in result.guards]


# ------------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize(("confidence", "column"), BOUNDARIES)
def test_matrix_every_cell_and_boundary(tier: Tier, confidence: float, column: int) -> None:
    assert matrix(tier, confidence) is EXPECTED[tier][column]


@pytest.mark.parametrize(
    ("tier", "confidence", "expected"),
    [
        (Tier.LOW, 0.59, PR),
        (Tier.LOW, 0.6, MERGE),
        (Tier.MEDIUM, 0.5999, ESC),
        (Tier.MEDIUM, 0.60, PR),
        (Tier.MEDIUM, 0.7999, PR),
        (Tier.MEDIUM, 0.80, MERGE),
        (Tier.HIGH, 0.7999, ESC),
        (Tier.HIGH, 0.80, PR),
        (Tier.HIGH, 0.9499, PR),
        (Tier.HIGH, 0.95, MERGE),
        (Tier.HIGH, 1.0, MERGE),
        (Tier.CRITICAL, 1.0, ESC),
    ],
)
def test_matrix_spot_checks(tier: Tier, confidence: float, expected: Decision) -> None:
    assert matrix(tier, confidence) is expected


@pytest.mark.parametrize("confidence", [-0.0001, 1.0001, -1.0, 2.0, math.nan, math.inf, -math.inf])
def test_matrix_rejects_confidence_outside_unit_interval(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        matrix(Tier.LOW, confidence)
    with pytest.raises(ValueError, match="confidence"):
        make(confidence=confidence)


def test_decisions_are_ordered_by_restrictiveness() -> None:
    assert lower(MERGE, PR) is PR
    assert lower(PR, MERGE) is PR
    assert lower(ESC, MERGE) is ESC
    assert lower(PR, ESC) is ESC
    assert lower(MERGE, MERGE) is MERGE
    assert [step_down(d) for d in (MERGE, PR, ESC)] == [PR, ESC, ESC]
    assert MERGE.restrictiveness < PR.restrictiveness < ESC.restrictiveness


# ------------------------------------------------------------------------------- guards alone


def test_no_guard_applies_to_a_clean_pull_request_in_act_mode() -> None:
    result = decide(make())
    assert result.matrix_decision is MERGE
    assert result.decision is MERGE
    assert result.act is True
    assert result.should_merge
    assert result.guards == ()
    assert result.explain() == "merge"


@pytest.mark.parametrize(
    ("changes", "guard", "effect", "expected"),
    [
        ({"verdicts": {"anthropic": CHANGES, "openai": CHANGES}}, Guard.REQUEST_CHANGES,
         Effect.ESCALATE, ESC),
        ({"any_blocker": True}, Guard.BLOCKER_FINDING, Effect.ESCALATE, ESC),
        ({"failed_reviewers": frozenset({"openai"}), "verdicts": {"anthropic": APPROVE}},
         Guard.REVIEW_INCOMPLETE, Effect.AT_MOST_AUTO_PR, PR),
        ({"review_complete": False}, Guard.REVIEW_INCOMPLETE, Effect.AT_MOST_AUTO_PR, PR),
        ({"verdicts": {}}, Guard.REVIEW_INCOMPLETE, Effect.AT_MOST_AUTO_PR, PR),
        ({"verdicts": {"anthropic": APPROVE, "openai": COMMENT}}, Guard.REVIEWERS_DISAGREE,
         Effect.STEP_DOWN, PR),
        ({"tightened": True}, Guard.TIGHTENED, Effect.STEP_DOWN, PR),
        ({"is_fork": True}, Guard.FORK, Effect.AT_MOST_AUTO_PR, PR),
        ({"is_draft": True}, Guard.DRAFT, Effect.AT_MOST_AUTO_PR, PR),
        ({"labels": frozenset({"aigateway: no automation"})}, Guard.NO_AUTOMATION_LABEL,
         Effect.HOLD, PR),
        ({"autonomy": AutonomyConfig()}, Guard.SHADOW_MODE, Effect.NO_ACTION, MERGE),
        ({"autonomy": AutonomyConfig(mode=AutonomyMode.OFF)}, Guard.AUTONOMY_OFF,
         Effect.NO_ACTION, MERGE),
    ],
)  # fmt: skip
def test_each_guard_alone(
    changes: dict[str, object], guard: Guard, effect: Effect, expected: Decision
) -> None:
    result = decide(make(**changes))
    assert result.matrix_decision is MERGE
    assert guards_of(result) == [(guard, effect)]
    assert result.decision is expected
    stops = effect in {Effect.HOLD, Effect.NO_ACTION}
    assert result.act is not stops
    assert result.guards[0].reason


def test_request_changes_from_one_reviewer_escalates_and_names_it() -> None:
    result = decide(make(verdicts={"anthropic": APPROVE, "openai": CHANGES}))
    assert result.decision is ESC
    assert result.should_escalate
    assert guards_of(result) == [
        (Guard.REQUEST_CHANGES, Effect.ESCALATE),
        (Guard.REVIEWERS_DISAGREE, Effect.STEP_DOWN),
    ]
    assert result.guards[0].reason == "changes requested by openai"


@pytest.mark.parametrize(
    ("tier", "confidence", "expected"),
    [
        (Tier.LOW, 0.97, PR),
        (Tier.LOW, 0.3, PR),
        (Tier.MEDIUM, 0.97, PR),
        (Tier.MEDIUM, 0.3, ESC),
        (Tier.HIGH, 0.97, ESC),
        (Tier.CRITICAL, 0.97, ESC),
    ],
)
def test_an_incomplete_review_is_at_most_auto_pr_and_escalates_high_risk(
    tier: Tier, confidence: float, expected: Decision
) -> None:
    result = decide(
        make(
            tier=tier,
            confidence=confidence,
            verdicts={"anthropic": APPROVE},
            failed_reviewers=frozenset({"openai"}),
        )
    )
    assert result.decision is expected
    (applied,) = result.guards
    assert applied.guard is Guard.REVIEW_INCOMPLETE
    assert applied.reason == "openai failed or timed out"
    high = tier >= Tier.HIGH
    assert applied.effect is (Effect.ESCALATE if high else Effect.AT_MOST_AUTO_PR)


def test_disagreement_steps_down_one_level_from_the_cell() -> None:
    split = {"anthropic": APPROVE, "openai": COMMENT}
    assert decide(make(tier=Tier.MEDIUM, confidence=0.7, verdicts=split)).decision is ESC
    assert decide(make(tier=Tier.HIGH, confidence=0.85, verdicts=split)).decision is ESC
    assert decide(make(tier=Tier.LOW, confidence=0.3, verdicts=split)).decision is ESC
    agreeing = {"anthropic": COMMENT, "openai": COMMENT}
    assert decide(make(verdicts=agreeing)).guards == ()


def test_tightened_steps_down_one_level() -> None:
    assert decide(make(tightened=True)).decision is PR
    assert decide(make(tier=Tier.MEDIUM, confidence=0.7, tightened=True)).decision is ESC


def test_a_fork_is_allowed_when_the_config_says_so() -> None:
    allowed = AutonomyConfig(mode=AutonomyMode.ACT, allow_forks=True)
    result = decide(make(is_fork=True, autonomy=allowed))
    assert result.decision is MERGE
    assert result.guards == ()


def test_a_fork_escalation_still_escalates() -> None:
    result = decide(make(is_fork=True, any_blocker=True))
    assert result.decision is ESC
    assert result.act


def test_the_no_automation_label_is_matched_case_insensitively_and_holds() -> None:
    result = decide(make(labels=frozenset({"bug", "AIGateway: No Automation"})))
    assert result.decision is PR
    assert result.act is False
    assert not result.should_merge
    assert result.explain() == (
        "would have left it for a human to merge (no-automation label); "
        "lowered from auto_merge by no automation label"
    )


def test_a_configured_no_automation_label_is_the_one_honoured() -> None:
    custom = AutonomyConfig(mode=AutonomyMode.ACT, no_automation_label="hands off")
    assert decide(make(labels=frozenset({"hands off"}), autonomy=custom)).act is False
    result = decide(make(labels=frozenset({"aigateway: no automation"}), autonomy=custom))
    assert result.act is True


# ------------------------------------------------------------------------------- modes


def test_shadow_mode_decides_normally_but_does_not_act() -> None:
    result = decide(make(autonomy=AutonomyConfig()))
    assert result.mode is AutonomyMode.SHADOW
    assert result.decision is MERGE
    assert result.act is False
    assert not result.should_merge
    assert result.explain() == "would have merged (shadow mode)"


def test_shadow_mode_reports_a_would_be_escalation() -> None:
    result = decide(make(tier=Tier.CRITICAL, autonomy=AutonomyConfig()))
    assert result.decision is ESC
    assert not result.should_escalate
    assert result.explain() == "would have escalated to a human (shadow mode)"


def test_off_mode_takes_no_action_at_all() -> None:
    result = decide(make(autonomy=AutonomyConfig(mode=AutonomyMode.OFF), any_blocker=True))
    assert result.act is False
    assert not result.should_escalate
    assert result.explain().startswith("would have escalated to a human (autonomy off)")


def test_act_mode_explains_what_it_does() -> None:
    assert decide(make(tier=Tier.MEDIUM, confidence=0.7)).explain() == (
        "leave it for a human to merge"
    )
    assert decide(make(any_blocker=True)).explain() == (
        "escalate to a human; lowered from auto_merge by blocker finding"
    )


# ------------------------------------------------------------------------------- combinations


def test_step_downs_apply_before_caps() -> None:
    # A draft whose reviewers differ: step down (merge -> pr) then cap at pr = pr, not escalate.
    result = decide(make(is_draft=True, verdicts={"anthropic": APPROVE, "openai": COMMENT}))
    assert result.decision is PR
    assert guards_of(result) == [
        (Guard.REVIEWERS_DISAGREE, Effect.STEP_DOWN),
        (Guard.DRAFT, Effect.AT_MOST_AUTO_PR),
    ]


def test_two_step_downs_take_two_levels() -> None:
    result = decide(make(tightened=True, verdicts={"anthropic": APPROVE, "openai": COMMENT}))
    assert result.decision is ESC


def test_every_applicable_guard_is_recorded() -> None:
    result = decide(
        make(
            tier=Tier.CRITICAL,
            verdicts={"anthropic": CHANGES, "openai": APPROVE},
            any_blocker=True,
            review_complete=False,
            failed_reviewers=frozenset({"gemini"}),
            is_fork=True,
            is_draft=True,
            labels=frozenset({"aigateway: no automation"}),
            autonomy=AutonomyConfig(),
            tightened=True,
        )
    )
    assert [g.guard for g in result.guards] == [
        Guard.REQUEST_CHANGES,
        Guard.BLOCKER_FINDING,
        Guard.REVIEW_INCOMPLETE,
        Guard.REVIEWERS_DISAGREE,
        Guard.TIGHTENED,
        Guard.FORK,
        Guard.DRAFT,
        Guard.NO_AUTOMATION_LABEL,
        Guard.SHADOW_MODE,
    ]
    assert result.decision is ESC
    assert result.act is False
    assert result.guards[2].reason == (
        "gemini failed or timed out; part of the diff was not reviewed"
    )


# ------------------------------------------------------------------------------- properties

CONFIDENCES = [confidence for confidence, _ in BOUNDARIES]  # both edges of every column
VERDICT_SETS: list[dict[str, Verdict]] = [
    {"anthropic": APPROVE, "openai": APPROVE},
    {"anthropic": APPROVE, "openai": COMMENT},
    {"anthropic": COMMENT, "openai": COMMENT},
    {"anthropic": CHANGES, "openai": APPROVE},
    {"anthropic": APPROVE},
    {},
]
MODES = [
    AutonomyConfig(mode=AutonomyMode.ACT),
    AutonomyConfig(mode=AutonomyMode.ACT, allow_forks=True),
    AutonomyConfig(mode=AutonomyMode.SHADOW),
    AutonomyConfig(mode=AutonomyMode.OFF),
]
FLAGS = ("any_blocker", "incomplete", "failed", "is_fork", "is_draft", "label", "tightened")


def _input(
    tier: Tier,
    confidence: float,
    verdicts: dict[str, Verdict],
    autonomy: AutonomyConfig,
    flags: frozenset[str],
) -> DecisionInput:
    return DecisionInput(
        tier=tier,
        confidence=confidence,
        verdicts=verdicts,
        any_blocker="any_blocker" in flags,
        review_complete="incomplete" not in flags,
        failed_reviewers=frozenset({"openai"}) if "failed" in flags else frozenset(),
        is_fork="is_fork" in flags,
        is_draft="is_draft" in flags,
        labels=frozenset({"aigateway: no automation"}) if "label" in flags else frozenset(),
        unseen=(),
        carried=None,
        tripwire=(),
        autonomy=autonomy,
        tightened="tightened" in flags,
    )


def _flag_sets() -> list[frozenset[str]]:
    return [
        frozenset(combo)
        for size in range(len(FLAGS) + 1)
        for combo in itertools.combinations(FLAGS, size)
    ]


def test_no_input_ever_rises_above_the_matrix() -> None:
    checked = 0
    for tier, confidence, verdicts, autonomy, flags in itertools.product(
        Tier, CONFIDENCES, VERDICT_SETS, MODES, _flag_sets()
    ):
        result = decide(_input(tier, confidence, verdicts, autonomy, flags))
        cell = matrix(tier, confidence)
        assert result.matrix_decision is cell
        assert result.decision.restrictiveness >= cell.restrictiveness, (tier, confidence, flags)
        assert lower(result.decision, cell) is result.decision
        if autonomy.mode is not AutonomyMode.ACT:
            assert result.act is False
        if result.act and result.decision is MERGE:
            # Only ever a clean, complete, agreeing, non-draft, unlabelled review merges.
            assert not flags & {"any_blocker", "incomplete", "failed", "is_draft", "label"}
            assert Verdict.REQUEST_CHANGES not in verdicts.values()
            assert len(set(verdicts.values())) == 1
        checked += 1
    assert checked == 4 * len(CONFIDENCES) * len(VERDICT_SETS) * len(MODES) * 2 ** len(FLAGS)


def test_adding_any_guard_never_raises_the_decision() -> None:
    for tier, confidence, flags in itertools.product(Tier, CONFIDENCES, _flag_sets()):
        before = decide(_input(tier, confidence, {"a": APPROVE, "b": APPROVE}, ACT, flags))
        for extra in set(FLAGS) - flags:
            after = decide(
                _input(tier, confidence, {"a": APPROVE, "b": APPROVE}, ACT, flags | {extra})
            )
            assert after.decision.restrictiveness >= before.decision.restrictiveness
            assert after.act <= before.act


def test_without_guards_the_decision_is_the_matrix_cell() -> None:
    for tier, confidence in itertools.product(Tier, CONFIDENCES):
        result = decide(make(tier=tier, confidence=confidence))
        assert result.decision is matrix(tier, confidence)
        assert result.act is True
