"""Carried facts across a pull request's heads, and deciding again on fresh facts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.gateway.urls import GatewayConfigError, gateway_base
from app.policy.autonomy import Decision, DecisionInput, Guard, decide
from app.policy.carry import Carried, ReviewFacts, Unseen, fold, window
from app.policy.permissions import permission_of
from app.policy.recheck import DecisionBasis, human_merge_refusal
from app.policy.risk import PathChange, Tier
from app.repo_config import AutonomyConfig, AutonomyMode, Permission, RepoConfig, load_repo_config
from app.review.model import Verdict
from app.settings import SettingsError
from tests.conftest import SettingsFactory

ACT = RepoConfig(autonomy=AutonomyConfig(mode=AutonomyMode.ACT))


def facts(sha: str, **kw: object) -> ReviewFacts:
    base = ReviewFacts(
        head_sha=sha,
        confidence=0.97,
        blockers=0,
        request_changes=(),
        failed=(),
        escalated=False,
        full=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def inp(**kw: object) -> DecisionInput:
    base = DecisionInput(
        tier=Tier.LOW,
        confidence=0.97,
        verdicts={"Claude": Verdict.APPROVE, "GPT": Verdict.APPROVE},
        any_blocker=False,
        review_complete=True,
        failed_reviewers=frozenset(),
        is_fork=False,
        is_draft=False,
        labels=frozenset(),
        unseen=(),
        carried=None,
        tripwire=(),
        autonomy=ACT.autonomy,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- carry


def test_window_reaches_back_to_the_last_full_review_and_stops_at_a_clearance() -> None:
    history = [facts("c"), facts("b"), facts("a", full=True), facts("0", blockers=3)]
    assert [f.head_sha for f in window(history)] == ["c", "b", "a"]
    cleared = [facts("c"), facts("b", cleared_by="owner"), facts("a", full=True)]
    assert [f.head_sha for f in window(cleared)] == ["c"]


def test_fold_keeps_the_worst_of_everything() -> None:
    unseen = Unseen("img.png", "binary", Tier.LOW)
    history = [
        facts("c", confidence=0.99),
        facts("b", blockers=1, request_changes=("Claude",), unseen=(unseen,)),
        facts("a", confidence=0.7, failed=("GPT",), escalated=True, full=True),
    ]
    carried = fold(history, still_changed=["img.png", "x.py"])
    assert carried == Carried(
        since_sha="a",
        confidence=0.7,
        blockers=1,
        request_changes=("Claude",),
        failed=("GPT",),
        escalated=True,
        unseen=(unseen,),
    )
    assert carried.describe() == (
        "carried from a: 1 blocker, changes requested by Claude, GPT failed, an escalation, "
        "1 file not reviewed, lowest confidence 0.70"
    )
    # A file the pull request no longer changes carries nothing.
    assert fold(history, still_changed=["x.py"]).unseen == ()  # type: ignore[union-attr]
    assert fold([], still_changed=[]) is None


def test_facts_survive_their_json_form() -> None:
    original = facts("abc", blockers=2, unseen=(Unseen("a.bin", "binary", Tier.HIGH, True),))
    again = ReviewFacts.from_json(original.to_json(), full=False, cleared_by=None)
    assert again == original


@pytest.mark.parametrize(
    ("carried", "expected"),
    [
        (Carried("a", 0.99, 1, (), (), False), Decision.ESCALATE),
        (Carried("a", 0.99, 0, ("GPT",), (), False), Decision.ESCALATE),
        (Carried("a", 0.99, 0, (), (), True), Decision.ESCALATE),
        (Carried("a", 0.99, 0, (), ("GPT",), False), Decision.AUTO_PR),
        (Carried("a", 0.65, 0, (), (), False), Decision.AUTO_MERGE),  # low tier at 0.65
        (Carried("a", 0.5, 0, (), (), False), Decision.AUTO_PR),  # the carried confidence counts
        (Carried("a", 0.99, 0, (), (), False), Decision.AUTO_MERGE),
    ],
)
def test_a_carried_fact_lowers_the_next_decision(carried: Carried, expected: Decision) -> None:
    result = decide(inp(carried=carried))
    assert result.decision is expected
    assert result.confidence == min(0.97, carried.confidence)


def test_unseen_files_cap_at_auto_pr_unless_waived() -> None:
    low = Unseen("docs/logo.png", "binary", Tier.LOW)
    assert decide(inp(unseen=(low,))).decision is Decision.AUTO_PR
    risky = Unseen("auth/keys.bin", "binary", Tier.HIGH)
    capped = decide(inp(tier=Tier.HIGH, unseen=(low, risky)))
    assert capped.decision is Decision.AUTO_PR and capped.applied(Guard.UNREVIEWED_FILES)
    assert decide(inp(unseen=(replace(low, waived=True),))).decision is Decision.AUTO_MERGE


def test_a_tripwire_hit_escalates_whatever_the_confidence() -> None:
    result = decide(inp(confidence=1.0, tripwire=("title: reviewer-directed instruction",)))
    assert result.decision is Decision.ESCALATE and result.applied(Guard.TRIPWIRE)


# ---------------------------------------------------------------------------------- recheck


def basis(**kw: object) -> DecisionBasis:
    decided_input = inp(**kw)
    decided = decide(decided_input)
    return DecisionBasis.of(decided_input, [PathChange("docs/guide.md")], decided)


def test_basis_survives_its_json_form() -> None:
    carried = Carried("a", 0.9, 0, (), ("GPT",), False)
    original = basis(carried=carried, unseen=(Unseen("x.bin", "binary", Tier.LOW, True),))
    again = DecisionBasis.from_json(original.to_json())
    assert again.to_json() == original.to_json()
    assert again.decision is original.decision


def test_unchanged_facts_allow_the_action() -> None:
    assert basis().refusal(labels=frozenset(), draft=False, config=ACT) is None


@pytest.mark.parametrize(
    ("labels", "draft", "config_text", "expected"),
    [
        (["aigateway: no automation"], False, None, "label"),
        ([], True, None, "draft"),
        ([], False, "version: 1\nautonomy: {mode: shadow}\n", "shadow"),
        ([], False, "version: 1\nautonomy: {mode: off}\n", "off"),
        (
            [],
            False,
            "version: 1\nautonomy: {mode: act}\nrisk:\n  rules: [{paths: ['docs/**'], tier: critical}]\n",
            "risk tier is now critical",
        ),
    ],
)
def test_fresh_facts_that_lower_the_decision_refuse_it(
    labels: list[str], draft: bool, config_text: str | None, expected: str
) -> None:
    config = ACT if config_text is None else load_repo_config(config_text).config
    reason = basis().refusal(labels=frozenset(labels), draft=draft, config=config)
    assert reason is not None and expected in reason


def test_a_human_merge_is_rechecked_for_label_draft_and_mode() -> None:
    assert human_merge_refusal(frozenset(), False, ACT) is None
    assert "label" in (
        human_merge_refusal(frozenset({"aigateway: no automation"}), False, ACT) or ""
    )
    assert "draft" in (human_merge_refusal(frozenset(), True, ACT) or "")
    assert "shadow" in (human_merge_refusal(frozenset(), False, RepoConfig()) or "")


# ---------------------------------------------------------------------------------- permissions


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"permission": "admin", "role_name": "admin"}, Permission.ADMIN),
        ({"permission": "write", "role_name": "maintain"}, Permission.MAINTAIN),
        ({"permission": "read", "role_name": "triage"}, Permission.TRIAGE),
        ({"permission": "read", "role_name": "read"}, Permission.READ),
        ({"permission": "write", "role_name": "custom-role"}, Permission.WRITE),
        ({"permission": "none", "role_name": "none"}, None),
        ({}, None),
    ],
)
def test_permission_of(data: dict[str, str], expected: Permission | None) -> None:
    assert permission_of(data) is expected


# ---------------------------------------------------------------------------------- gateway URL


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("https://gateway.example.com/v1/a/b", False, True),
        ("http://127.0.0.1:8787/v1/a/b", False, True),
        ("http://localhost:8787/v1/a/b", False, True),
        ("http://gateway.internal/v1/a/b", False, False),
        ("http://10.0.0.5/v1/a/b", False, False),
        ("http://gateway.internal/v1/a/b", True, True),
    ],
)
def test_a_plain_http_gateway_off_loopback_is_refused_at_start(
    make_settings: SettingsFactory, url: str, allowed: bool, ok: bool
) -> None:
    settings = make_settings(aig_gateway_url=url, aig_allow_insecure_gateway=allowed)
    if ok:
        assert gateway_base(settings) == url
        settings.check_for_server()
        return
    with pytest.raises(GatewayConfigError, match="AIG_ALLOW_INSECURE_GATEWAY"):
        gateway_base(settings)
    with pytest.raises(SettingsError, match="plain http"):
        settings.check_for_server()
