"""Deciding again, on fresh facts, right before acting.

A decision is taken when the review is published, but the action can come much later: a merge
waits for CI, sometimes for an hour. Meanwhile a human may add the no-automation label, mark the
pull request as a draft, or an admin may switch the repository to ``shadow`` or add a risk rule.
Acting on the facts of the review's moment would then overrule a person, so the acting stage
stores the decision's *basis* (everything the models and the diff said, which cannot change for a
pinned head) and, just before it acts, takes the decision again with the pull request and the
configuration as they are now. Any change that lowers the decision cancels the action.

The re-decision is the same pure ``decide`` over the same inputs, except the four that come from
outside the review: the labels, the draft flag, the autonomy settings, and the tiers (the
repository's risk rules and ``unreviewed_ok`` waivers as they are now on the default branch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pathspec import GitIgnoreSpec

from app.policy.autonomy import AutonomyDecision, Decision, DecisionInput, decide
from app.policy.carry import Carried, Unseen
from app.policy.risk import PathChange, Tier, classify_paths
from app.repo_config import AutonomyMode, RepoConfig
from app.review.model import Verdict

__all__ = ["DecisionBasis", "fresh_refusal", "human_merge_refusal", "waived", "with_tiers"]


def waived(config: RepoConfig, path: str) -> bool:
    """Whether ``review.unreviewed_ok`` lets ``path`` go unseen by the models."""
    globs = config.review.unreviewed_ok
    return bool(globs) and GitIgnoreSpec.from_lines(globs).match_file(path)


def with_tiers(
    unseen: Sequence[Unseen], tiers: dict[str, Tier], config: RepoConfig
) -> tuple[Unseen, ...]:
    """The unseen files with their tier and waiver as ``config`` says now."""
    return tuple(
        replace(u, tier=tiers.get(u.path, u.tier), waived=waived(config, u.path)) for u in unseen
    )


@dataclass(frozen=True, slots=True)
class DecisionBasis:
    """What a decision was taken from, apart from what may change before the action."""

    inp: DecisionInput
    paths: tuple[PathChange, ...]
    decision: Decision
    guards: frozenset[str]  # the guards that applied when it was decided

    @classmethod
    def of(
        cls, inp: DecisionInput, paths: Sequence[PathChange], decided: AutonomyDecision
    ) -> DecisionBasis:
        return cls(inp, tuple(paths), decided.decision, frozenset(g.guard for g in decided.guards))

    def refusal(self, *, labels: frozenset[str], draft: bool, config: RepoConfig) -> str | None:
        """Why the decided action must not happen with the facts as they are now, if it must not."""
        fresh = self.redecide(labels=labels, draft=draft, config=config)
        return fresh_refusal(self.decision, fresh, known=self.guards)

    def redecide(
        self, *, labels: frozenset[str], draft: bool, config: RepoConfig
    ) -> AutonomyDecision:
        """The decision as it would be taken now, with fresh labels, draft flag and config."""
        risk = classify_paths(self.paths, config.risk.rules)
        tiers = {p.path: p.tier for p in risk.paths}
        inp = replace(
            self.inp,
            tier=risk.tier,
            labels=labels,
            is_draft=draft,
            autonomy=config.autonomy,
            unseen=with_tiers(self.inp.unseen, tiers, config),
        )
        return decide(inp)

    def to_json(self) -> str:
        inp = self.inp
        carried = inp.carried
        return json.dumps(
            {
                "tier": inp.tier.value,
                "confidence": inp.confidence,
                "verdicts": {k: v.value for k, v in inp.verdicts.items()},
                "any_blocker": inp.any_blocker,
                "review_complete": inp.review_complete,
                "failed_reviewers": sorted(inp.failed_reviewers),
                "is_fork": inp.is_fork,
                "tightened": inp.tightened,
                "tripwire": list(inp.tripwire),
                "unseen": [[u.path, u.reason, u.tier.value, u.waived] for u in inp.unseen],
                "carried": None
                if carried is None
                else {
                    "since_sha": carried.since_sha,
                    "confidence": carried.confidence,
                    "blockers": carried.blockers,
                    "request_changes": list(carried.request_changes),
                    "failed": list(carried.failed),
                    "escalated": carried.escalated,
                },
                "paths": [[p.path, p.previous_path] for p in self.paths],
                "decision": self.decision.value,
                "guards": sorted(self.guards),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> DecisionBasis:
        data: dict[str, Any] = json.loads(text)
        c = data.get("carried")
        carried = (
            None
            if c is None
            else Carried(
                since_sha=str(c["since_sha"]),
                confidence=float(c["confidence"]),
                blockers=int(c["blockers"]),
                request_changes=tuple(c["request_changes"]),
                failed=tuple(c["failed"]),
                escalated=bool(c["escalated"]),
            )
        )
        inp = DecisionInput(
            tier=Tier(data["tier"]),
            confidence=float(data["confidence"]),
            verdicts={str(k): Verdict(v) for k, v in data["verdicts"].items()},
            any_blocker=bool(data["any_blocker"]),
            review_complete=bool(data["review_complete"]),
            failed_reviewers=frozenset(data["failed_reviewers"]),
            is_fork=bool(data["is_fork"]),
            is_draft=False,
            labels=frozenset(),
            unseen=tuple(Unseen(p, r, Tier(t), bool(w)) for p, r, t, w in data["unseen"]),
            carried=carried,
            tripwire=tuple(data["tripwire"]),
            tightened=bool(data["tightened"]),
        )
        paths = tuple(PathChange(p, prev) for p, prev in data["paths"])
        return cls(inp, paths, Decision(data["decision"]), frozenset(data["guards"]))


def fresh_refusal(
    decided: Decision, fresh: AutonomyDecision, *, known: frozenset[str] = frozenset()
) -> str | None:
    """Why the action decided as ``decided`` must not happen now; None when it still may.

    Lower is refused, and so is "the same, but not to be carried out" (the no-automation label,
    shadow mode, autonomy off). The reasons named are the guards that were not there before.
    """
    if fresh.act and fresh.decision.restrictiveness <= decided.restrictiveness:
        return None
    reasons = [g.reason for g in fresh.guards if g.guard.value not in known]
    if fresh.decision is not decided:
        head = f"the decision is now {fresh.decision.value}, not {decided.value}"
        if fresh.matrix_decision.restrictiveness > decided.restrictiveness:
            reasons.insert(0, f"the risk tier is now {fresh.tier.value}")
    else:
        head = "the decision is no longer to be carried out"
    return head + (": " + "; ".join(reasons) if reasons else "")


def human_merge_refusal(labels: frozenset[str], draft: bool, config: RepoConfig) -> str | None:
    """What stops a merge a person asked for, as the pull request and config are now."""
    autonomy = config.autonomy
    if autonomy.mode is not AutonomyMode.ACT:
        return f"autonomy.mode is now {autonomy.mode.value} in .github/aigateway.yml"
    wanted = autonomy.no_automation_label.casefold()
    if any(label.casefold() == wanted for label in labels):
        return f"the pull request now carries the {autonomy.no_automation_label!r} label"
    if draft:
        return "the pull request is now a draft"
    return None
