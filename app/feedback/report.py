"""The feedback report: outcomes per (risk tier, decision), and how well confidence predicts them.

Pure: it is fed the registered changes (with their effects and spend) and the moment to judge
them at. Only settled outcomes (``clean`` or an effect) count towards rates; changes still in
their window, open or closed unmerged are counted but not judged.

Calibration reads a confidence as the probability that the change turns out clean: among
changes decided at 0.95, about 5 % should go bad. Each bucket shows the bad-outcome rate seen
against the rate the confidence promised, and the Brier score sums it up (the mean squared
distance between the confidence and what happened, 1 for clean and 0 for bad; 0 is perfect,
0.25 is what always saying 0.5 scores).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from app.feedback.outcomes import ChangeRecord, Outcome, settle

__all__ = ["BUCKETS", "Bucket", "Report", "Row", "build_report", "markdown", "text_table"]

#: Confidence buckets, as [low, high) (the last one includes 1.0).
BUCKETS: Final = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 1.0))
TIER_ORDER: Final = ("low", "medium", "high", "critical", "unknown")
DECISION_ORDER: Final = ("auto_merge", "auto_pr", "escalate")


@dataclass(frozen=True, slots=True)
class Row:
    tier: str
    decision: str
    changes: int
    outcomes: Mapping[str, int]
    settled: int
    bad: int
    mean_confidence: float | None
    spend_usd: float

    @property
    def bad_rate(self) -> float | None:
        return self.bad / self.settled if self.settled else None


@dataclass(frozen=True, slots=True)
class Bucket:
    low: float
    high: float
    settled: int
    bad: int
    mean_confidence: float | None

    @property
    def bad_rate(self) -> float | None:
        return self.bad / self.settled if self.settled else None

    @property
    def expected_bad_rate(self) -> float | None:
        return None if self.mean_confidence is None else 1.0 - self.mean_confidence


@dataclass(frozen=True, slots=True)
class Report:
    repository: str
    since: datetime | None
    at: datetime
    rows: tuple[Row, ...]
    buckets: tuple[Bucket, ...]
    brier: float | None
    totals: Row = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        def row(r: Row) -> dict[str, Any]:
            return {
                "tier": r.tier,
                "decision": r.decision,
                "changes": r.changes,
                "outcomes": dict(r.outcomes),
                "settled": r.settled,
                "bad": r.bad,
                "bad_rate": r.bad_rate,
                "mean_confidence": r.mean_confidence,
                "spend_usd": round(r.spend_usd, 6),
            }

        return {
            "repository": self.repository,
            "since": self.since.isoformat() if self.since else None,
            "at": self.at.isoformat(),
            "rows": [row(r) for r in self.rows],
            "totals": row(self.totals),
            "calibration": {
                "buckets": [
                    {
                        "low": b.low,
                        "high": b.high,
                        "settled": b.settled,
                        "bad": b.bad,
                        "bad_rate": b.bad_rate,
                        "mean_confidence": b.mean_confidence,
                        "expected_bad_rate": b.expected_bad_rate,
                    }
                    for b in self.buckets
                ],
                "brier": self.brier,
            },
        }


def _row(tier: str, decision: str, judged: Sequence[tuple[ChangeRecord, Outcome]]) -> Row:
    outcomes = Counter(outcome.value for _, outcome in judged)
    settled = [(c, o) for c, o in judged if o.settled]
    confidences = [c.confidence for c, _ in judged if c.confidence is not None]
    return Row(
        tier=tier,
        decision=decision,
        changes=len(judged),
        outcomes=dict(sorted(outcomes.items())),
        settled=len(settled),
        bad=sum(1 for _, o in settled if o.bad),
        mean_confidence=sum(confidences) / len(confidences) if confidences else None,
        spend_usd=sum(c.spend_usd for c, _ in judged),
    )


def _bucket_of(confidence: float) -> int:
    for index, (low, high) in enumerate(BUCKETS):
        if low <= confidence < high:
            return index
    return len(BUCKETS) - 1


def _order(key: tuple[str, str]) -> tuple[int, int, str, str]:
    tier, decision = key
    t = TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)
    d = DECISION_ORDER.index(decision) if decision in DECISION_ORDER else len(DECISION_ORDER)
    return (t, d, tier, decision)


def build_report(
    repository: str,
    changes: Iterable[ChangeRecord],
    *,
    at: datetime,
    since: datetime | None = None,
) -> Report:
    """The report on ``changes`` (decided at or after ``since``) as judged at ``at``."""
    judged = [
        (change, settle(change, at).outcome)
        for change in changes
        if since is None or change.decided_at >= since
    ]
    groups: dict[tuple[str, str], list[tuple[ChangeRecord, Outcome]]] = {}
    for change, outcome in judged:
        groups.setdefault((change.tier or "unknown", change.decision), []).append((change, outcome))
    rows = tuple(_row(t, d, groups[(t, d)]) for t, d in sorted(groups, key=_order))

    per_bucket: list[list[tuple[float, bool]]] = [[] for _ in BUCKETS]
    for change, outcome in judged:
        if outcome.settled and change.confidence is not None:
            per_bucket[_bucket_of(change.confidence)].append((change.confidence, outcome.bad))
    buckets = tuple(
        Bucket(
            low,
            high,
            len(items),
            sum(1 for _, bad in items if bad),
            sum(c for c, _ in items) / len(items) if items else None,
        )
        for (low, high), items in zip(BUCKETS, per_bucket, strict=True)
    )
    scored = [item for items in per_bucket for item in items]
    brier = (
        sum((c - (0.0 if bad else 1.0)) ** 2 for c, bad in scored) / len(scored) if scored else None
    )
    return Report(repository, since, at, rows, buckets, brier, _row("all", "all", judged))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _outcomes(row: Row) -> str:
    return ", ".join(f"{name} {count}" for name, count in row.outcomes.items()) or "-"


_HEADERS: Final = ("tier", "decision", "changes", "bad", "bad rate", "confidence", "spend")


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.tier,
        row.decision,
        str(row.changes),
        f"{row.bad}/{row.settled}",
        _pct(row.bad_rate),
        _num(row.mean_confidence),
        f"${row.spend_usd:.2f}",
    )


def text_table(report: Report) -> str:
    """The report for a terminal: aligned columns, then the calibration."""
    lines = [f"Feedback for {report.repository} at {report.at:%Y-%m-%d %H:%M} UTC"]
    if report.since is not None:
        lines[0] += f" (changes decided since {report.since:%Y-%m-%d})"
    table = [_HEADERS, *(_cells(r) for r in report.rows), _cells(report.totals)]
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADERS))]
    for index, row in enumerate(table):
        if index == len(table) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    lines += ["", "Outcomes: " + _outcomes(report.totals), "", "Calibration (settled changes):"]
    lines.append("  confidence   changes  bad rate  promised")
    for b in report.buckets:
        lines.append(
            f"  {b.low:.2f}-{b.high:.2f}  {b.settled:>7}  {_pct(b.bad_rate):>8}  "
            f"{_pct(b.expected_bad_rate):>8}"
        )
    lines.append(
        f"  Brier score: {_num(report.brier) if report.brier is None else f'{report.brier:.3f}'}"
    )
    return "\n".join(lines)


def markdown(report: Report, *, title: str = "Feedback report") -> str:
    """The report for a pull-request comment or a check run."""
    if not report.rows:
        return (
            f"**{title}** for `{report.repository}`: no registered changes yet. Every pull "
            "request the bot decides on is registered; outcomes follow once they are merged."
        )
    lines = [
        f"**{title}** for `{report.repository}`: "
        f"{report.totals.changes} change(s), {report.totals.bad} of "
        f"{report.totals.settled} settled went wrong ({_pct(report.totals.bad_rate)}).",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "---|" * len(_HEADERS),
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in report.rows]
    lines += ["", "Outcomes: " + _outcomes(report.totals), ""]
    lines += ["| confidence | settled | bad rate | promised |", "|---|---|---|---|"]
    lines += [
        f"| {b.low:.2f}-{b.high:.2f} | {b.settled} | {_pct(b.bad_rate)} | "
        f"{_pct(b.expected_bad_rate)} |"
        for b in report.buckets
        if b.settled
    ]
    brier = "-" if report.brier is None else f"{report.brier:.3f}"
    lines += ["", f"Brier score: {brier} (0 is perfect; always saying 0.5 scores 0.25)."]
    return "\n".join(lines)


def summary_line(report: Report) -> str:
    """One line for a check run: how this repository's settled changes turned out."""
    t = report.totals
    if not t.settled:
        return ""
    return (
        f"Feedback so far in this repository: {t.bad} of {t.settled} settled changes went wrong "
        f"({_pct(t.bad_rate)})"
        + (f"; Brier score {report.brier:.3f}." if report.brier is not None else ".")
    )
