"""What ``review-diff`` prints: for a terminal (the default), as Markdown, or as JSON.

Built from the same facts the App's check run shows: the files and why some went unreviewed,
the risk per path, the slices, every slice's summary per model, the findings, the consensus, and
the decision the autonomy matrix would take with its reasons. Long lists stop at 50 entries
unless ``--all`` is given, and say how many more there are.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from app.policy.autonomy import AutonomyDecision, DecisionInput, decide
from app.policy.carry import Unseen
from app.policy.risk import RiskReport
from app.policy.tripwire import TripwireInput, scan
from app.repo_config import RepoConfig
from app.review.diff import FileDiff
from app.review.pipeline import ModelRun, PreparedReview, unseen_files

LIST_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Estimate:
    """Prompt tokens and, per model, the most its review can cost (None: no price known)."""

    tokens: int
    per_model: dict[str, float | None]

    @property
    def total_usd(self) -> float:
        return sum(usd or 0.0 for usd in self.per_model.values())

    def describe(self) -> str:
        costs = ", ".join(
            f"{model} ${usd:.4f}" if usd is not None else f"{model} (no price known)"
            for model, usd in self.per_model.items()
        )
        return f"about {self.tokens} prompt tokens; estimated cost at most {costs}"


@dataclass(frozen=True)
class Report:
    title: str
    files: tuple[FileDiff, ...]
    risk: RiskReport
    prepared: PreparedReview
    estimate: Estimate
    config: RepoConfig
    config_source: str | None
    run: ModelRun | None = None

    def with_run(self, run: ModelRun) -> Report:
        return dataclasses.replace(self, run=run)

    @cached_property
    def unseen(self) -> tuple[Unseen, ...]:
        return unseen_files(self.prepared.slicing.not_reviewed, None, self.risk, self.config)

    @cached_property
    def decision(self) -> AutonomyDecision | None:
        """What the autonomy matrix would do with this change (after a model run only)."""
        if self.run is None:
            return None
        consensus = self.run.consensus
        hits = scan(
            TripwireInput(title=self.title, body="", files=self.files),
            self.config.review.tripwire,
        )
        return decide(
            DecisionInput(
                tier=self.risk.tier,
                confidence=consensus.confidence,
                verdicts=consensus.verdicts,
                any_blocker=consensus.any_blocker,
                review_complete=consensus.complete,
                failed_reviewers=frozenset(consensus.failed_reviewers),
                is_fork=False,
                is_draft=False,
                labels=frozenset(),
                unseen=self.unseen,
                carried=None,
                tripwire=tuple(h.describe() for h in hits),
                autonomy=self.config.autonomy,
            )
        )

    @property
    def complete(self) -> bool:
        """Every reviewer answered every slice and no file went unseen without a waiver."""
        if self.run is None:
            return False
        return self.run.consensus.complete and all(u.waived for u in self.unseen)

    def summaries(self) -> list[tuple[str, int, str]]:
        """``(reviewer, slice index, summary)`` for every slice a reviewer answered, in order."""
        if self.run is None:
            return []
        found = [
            (o.reviewer, o.slice_index, o.review.summary)
            for o in self.run.outcomes
            if o.review is not None and o.review.summary.strip()
        ]
        order = {name: i for i, name in enumerate(r.reviewer for r in self.run.consensus.reviewers)}
        return sorted(found, key=lambda s: (order.get(s[0], 99), s[1]))


def _unseen_line(u: Unseen) -> str:
    return f"{u.reason} (waived by review.unreviewed_ok)" if u.waived else u.reason


def _more(shown: int, total: int, what: str) -> list[str]:
    hidden = total - shown
    return [f"- … and {hidden} more {what} (--all lists them)"] if hidden > 0 else []


def render_text(report: Report, *, markdown: bool = False, everything: bool = False) -> str:
    """The terminal rendering, or Markdown: the same sections, in the same order."""

    def code(text: str) -> str:
        return f"`{text}`" if markdown else text

    def heading(text: str) -> str:
        return f"\n### {text}" if markdown else f"\n{text}"

    limit = None if everything else LIST_LIMIT
    slicing = report.prepared.slicing
    lines = [
        f"## aigateway review: {report.title}" if markdown else f"aigateway review: {report.title}"
    ]
    reviewed = len(slicing.reviewed_paths)
    lines.append(
        f"{len(report.files)} file(s): {reviewed} reviewed in {len(slicing.slices)} part(s), "
        f"{len(report.unseen)} not reviewed; risk tier {report.risk.tier.value}; "
        f"config: {report.config_source or 'defaults'}"
    )
    run = report.run
    if run is None:
        lines.append(f"Dry run, no model called: {report.estimate.describe()}.")
    else:
        consensus = run.consensus
        lines.append(heading("Reviewers"))
        for r in consensus.reviewers:
            if r.verdict is not None and r.confidence is not None:
                status = f"{r.verdict.value}, confidence {r.confidence:.2f}"
                if r.failed:
                    status += f" (failed on {r.slices_failed} part(s): {', '.join(r.errors)})"
            else:
                status = f"no review ({', '.join(r.errors) or 'not run'})"
            lines.append(f"- {r.reviewer}: {status}")
        lines.append(f"- Combined confidence: {consensus.confidence:.2f}")
        if consensus.reasons:
            lines.append(f"  lowered because {'; '.join(consensus.reasons)}")
        decision = report.decision
        if decision is not None:
            lines.append(heading("Decision"))
            lines.append(f"- {decision.explain()} (matrix: {decision.matrix_decision.value})")
            lines.extend(f"- {g.guard.value}: {g.reason}" for g in decision.guards)
        summaries = report.summaries()
        if summaries:
            lines.append(heading("Summaries"))
            total = len(slicing.slices)
            for name, index, text in summaries:
                part = f" (part {index + 1} of {total})" if total > 1 else ""
                lines.append(f"- {name}{part}: {' '.join(text.split())}")
        findings = consensus.findings
        lines.append(heading(f"Findings ({len(findings)})"))
        shown = findings if limit is None else findings[:limit]
        for m in shown:
            f = m.finding
            where = code(f"{f.path}:{f.line}" + (f"-{f.end_line}" if f.end_line else ""))
            by = " and ".join(m.raised_by)
            lines.append(
                f"- {f.severity.value} · {f.category.value} {where}: {f.title} (raised by {by})"
            )
            body = " ".join(f.body.split())
            if body:
                lines.append(f"  {body[:600]}")
        lines.extend(_more(len(shown), len(findings), "findings"))
    if report.unseen:
        lines.append(heading(f"Not reviewed ({len(report.unseen)})"))
        unseen = report.unseen if limit is None else report.unseen[:limit]
        lines.extend(f"- {code(u.path)}: {_unseen_line(u)}" for u in unseen)
        lines.extend(_more(len(unseen), len(report.unseen), "files"))
    if run is None:
        lines.append(heading(f"Parts ({len(slicing.slices)})"))
        for index, piece in enumerate(slicing.slices):
            names = ", ".join(code(p) for p in piece.paths[:10])
            extra = f" and {len(piece.paths) - 10} more" if len(piece.paths) > 10 else ""
            lines.append(f"- part {index + 1}: {piece.tokens} tokens: {names}{extra}")
    lines.append(heading(f"Risk per path ({len(report.risk.paths)})"))
    ordered = sorted(report.risk.paths, key=lambda p: p.tier, reverse=True)
    rows = ordered if limit is None else ordered[:limit]
    for p in rows:
        rule = p.match.describe() if markdown else p.match.describe().replace("`", "")
        lines.append(f"- {p.tier.value:<8} {code(p.path)}: {rule}")
    lines.extend(_more(len(rows), len(ordered), "paths"))
    if run is not None:
        cost = f"${run.cost_usd:.4f}"
        if run.unpriced_models:
            cost += f" (no price known for {', '.join(run.unpriced_models)})"
        lines.append(
            f"\nUsage: {run.input_tokens} input + {run.output_tokens} output tokens, {cost}"
        )
    return "\n".join(lines)


def _decision_json(decision: AutonomyDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "decision": decision.decision.value,
        "matrix_decision": decision.matrix_decision.value,
        "act": decision.act,
        "mode": decision.mode.value,
        "reason": decision.explain(),
        "guards": [
            {"guard": g.guard.value, "effect": g.effect.value, "reason": g.reason}
            for g in decision.guards
        ],
    }


def _files_json(report: Report) -> list[dict[str, Any]]:
    tiers = {p.path: p for p in report.risk.paths}
    unseen = {u.path: u for u in report.unseen}
    out: list[dict[str, Any]] = []
    for f in report.files:
        entry = tiers.get(f.path)
        u = unseen.get(f.path)
        out.append(
            {
                "path": f.path,
                "old_path": f.old_path,
                "status": f.status.value,
                "additions": f.additions,
                "deletions": f.deletions,
                "tier": entry.tier.value if entry else None,
                "rule": entry.match.describe().replace("`", "") if entry else None,
                "reviewed": u is None,
                "skip_reason": u.reason if u else None,
                "waived": u.waived if u else False,
            }
        )
    return out


def render_json(report: Report) -> str:
    slicing = report.prepared.slicing
    run = report.run
    data: dict[str, Any] = {
        "title": report.title,
        "dry_run": run is None,
        "config": report.config_source,
        "complete": report.complete,
        "risk_tier": report.risk.tier.value,
        "files": _files_json(report),
        "not_reviewed": [
            {"path": u.path, "reason": u.reason, "waived": u.waived} for u in report.unseen
        ],
        "slices": [{"paths": list(s.paths), "tokens": s.tokens} for s in slicing.slices],
        "estimate": {
            "prompt_tokens": report.estimate.tokens,
            "max_cost_usd": report.estimate.per_model,
        },
        "decision": _decision_json(report.decision),
    }
    if run is not None:
        consensus = run.consensus
        summaries = report.summaries()
        data.update(
            {
                "confidence": consensus.confidence,
                "confidence_reasons": list(consensus.reasons),
                "reviewers": [
                    {
                        "name": r.reviewer,
                        "verdict": r.verdict.value if r.verdict else None,
                        "confidence": r.confidence,
                        "slices_ok": r.slices_ok,
                        "slices_failed": r.slices_failed,
                        "errors": list(r.errors),
                        "summaries": [
                            {"slice": index, "summary": text}
                            for name, index, text in summaries
                            if name == r.reviewer
                        ],
                    }
                    for r in consensus.reviewers
                ],
                "findings": [
                    {**m.finding.model_dump(mode="json"), "raised_by": list(m.raised_by)}
                    for m in consensus.findings
                ],
                "input_tokens": run.input_tokens,
                "output_tokens": run.output_tokens,
                "cost_usd": run.cost_usd,
            }
        )
    return json.dumps(data, indent=2)
