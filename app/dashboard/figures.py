"""Every figure of the dashboard, read through the stores' own query functions.

``scope`` is what the viewer may see: None for the operator (everything), else the repositories
their GitHub token can read; a repository filter narrows it further. Each figure is a JSON-ready
dict, the same for the page and for ``/dashboard/api/...``.

Spend is what the ledger recorded per call (what the providers billed); the budgets beside it are
the ones last applied when reserving for the repository (``quota_budgets``: its
``.github/aigateway.yml`` as last read, with the operator's defaults and ceilings), so a change to
the file shows after the repository's next review. Escalations waiting and failed actions are
backlogs as they stand now: the date filter does not hide them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from app.feedback.outcomes import ChangeRecord
from app.feedback.registry import FeedbackStore
from app.feedback.report import build_report
from app.policy.decisions import DecisionRow, DecisionStore
from app.policy.outbox import Outbox
from app.quota import QuotaLedger
from app.review.store import ReviewStore
from app.store.db import Database

from .filters import Filters

__all__ = ["FIGURES", "Figures", "Scope"]

Scope = frozenset[str] | None
REVIEWS_SHOWN: Final = 50


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of one request: the stores, what the viewer may see, and the filters."""

    db: Database
    scope: Scope
    filters: Filters
    now: datetime
    web_url: str

    @property
    def repositories(self) -> Collection[str] | None:
        """The repositories to read: the filter within the scope (None: all of them)."""
        if self.filters.repositories:
            wanted = frozenset(self.filters.repositories)
            return wanted if self.scope is None else wanted & self.scope
        return self.scope

    def _visible(self, repository: str) -> bool:
        wanted = self.repositories
        return wanted is None or repository in wanted

    def pr_url(self, repository: str, number: int) -> str:
        return f"{self.web_url}/{repository}/pull/{number}"

    # ---------------------------------------------------------------- figures

    async def spend(self) -> dict[str, Any]:
        ledger = QuotaLedger(self.db)
        rows = await ledger.daily_spend(
            since=self.filters.start, until=self.filters.end, repositories=self.repositories
        )
        days = self.filters.days
        index = {day: n for n, day in enumerate(days)}
        per_repo: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = per_repo.setdefault(
                row.repository,
                {
                    "repository": row.repository,
                    "per_day": [0.0] * len(days),
                    "calls": 0,
                    "reconciled_usd": 0.0,
                    "reconciled_calls": 0,
                },
            )
            entry["per_day"][index[row.day]] += row.cost_usd
            entry["calls"] += row.calls
            entry["reconciled_usd"] += row.reconciled_usd
            entry["reconciled_calls"] += row.reconciled_calls
        budgets = await ledger.known_budgets(list(per_repo) if per_repo else ())
        repositories = []
        for name in sorted(per_repo):
            entry = per_repo[name]
            entry["per_day"] = [round(value, 6) for value in entry["per_day"]]
            entry["total_usd"] = round(sum(entry["per_day"]), 6)
            entry["reconciled_usd"] = round(entry["reconciled_usd"], 6)
            known = budgets.get(name)
            entry["budget"] = (
                None
                if known is None
                else {
                    "daily_usd": known.daily_usd,
                    "weekly_usd": known.weekly_usd,
                    "per_pr_usd": known.per_pr_usd,
                    "known_since": known.updated_at.isoformat(),
                }
            )
            entry["days_over_daily_budget"] = (
                0
                if known is None or known.daily_usd is None
                else sum(1 for value in entry["per_day"] if value > known.daily_usd + 1e-9)
            )
            repositories.append(entry)
        return {
            "days": [day.isoformat() for day in days],
            "repositories": repositories,
            "total_usd": round(sum(r["total_usd"] for r in repositories), 6),
            # The gateway's own figures where reconciliation found them (CF_API_TOKEN), else the
            # estimate: equal to total_usd until calls are reconciled.
            "reconciled_usd": round(sum(r["reconciled_usd"] for r in repositories), 6),
            "budgets_from": "the budgets last applied when reserving for each repository",
        }

    async def reviews(self) -> dict[str, Any]:
        found = await ReviewStore(self.db).recent(
            since=self.filters.start,
            until=self.filters.end,
            repositories=self.repositories,
            limit=REVIEWS_SHOWN,
        )
        latest: dict[tuple[str, int, str], DecisionRow] = {}
        for row in await DecisionStore(self.db).for_heads(
            {(r.repository, r.pr_number, r.head_sha) for r in found}
        ):
            latest[(row.repository, row.pr_number, row.head_sha)] = row  # oldest first: last wins
        items = []
        for review in found:
            decision = latest.get((review.repository, review.pr_number, review.head_sha))
            items.append(
                {
                    "repository": review.repository,
                    "pr_number": review.pr_number,
                    "url": self.pr_url(review.repository, review.pr_number),
                    "head_sha": review.head_sha,
                    "status": review.status,
                    "conclusion": review.conclusion,
                    "confidence": review.confidence,
                    "tier": decision.tier if decision else None,
                    "decision": decision.decision if decision else None,
                    "action_taken": decision.action_taken if decision else None,
                    "cost_usd": round(review.cost_usd, 6),
                    "started_at": review.started_at.isoformat(),
                }
            )
        return {"reviews": items, "limit": REVIEWS_SHOWN}

    async def escalations(self) -> dict[str, Any]:
        waiting = await FeedbackStore(self.db).open_with_decision("escalate", self.repositories)
        return {
            "escalations": [
                {
                    "repository": change.repository,
                    "pr_number": change.pr_number,
                    "url": self.pr_url(change.repository, change.pr_number),
                    "head_sha": change.head_sha,
                    "tier": change.tier,
                    "confidence": change.confidence,
                    "decided_at": change.decided_at.isoformat(),
                    "waiting_hours": round(
                        (self.now - change.decided_at).total_seconds() / 3600, 1
                    ),
                }
                for change in waiting
            ]
        }

    async def failed_actions(self) -> dict[str, Any]:
        failed = [a for a in await Outbox(self.db).failed() if self._visible(a.repository)]
        return {
            "failed_actions": [
                {
                    "id": action.id,
                    "kind": action.kind.value,
                    "repository": action.repository,
                    "pr_number": action.pr_number,
                    "url": self.pr_url(action.repository, action.pr_number),
                    "head_sha": action.head_sha,
                    "attempts": action.attempts,
                    "last_error": action.last_error,
                    "updated_at": action.updated_at.isoformat(),
                }
                for action in failed
            ],
            "retry": "python -m app actions retry ID",
        }

    async def _feedback(self) -> dict[str, Any]:
        store = FeedbackStore(self.db)
        changes: list[ChangeRecord] = []
        for repository in await store.repositories():
            if self._visible(repository):
                records = await store.records(repository, since=self.filters.start)
                changes += [c for c in records if c.decided_at < self.filters.end]
        label = (
            ", ".join(self.filters.repositories)
            if self.filters.repositories
            else "all repositories"
        )
        report = build_report(label, changes, at=self.now, since=self.filters.start)
        return report.to_json()

    async def outcomes(self) -> dict[str, Any]:
        report = await self._feedback()
        return {"rows": report["rows"], "totals": report["totals"], "at": report["at"]}

    async def calibration(self) -> dict[str, Any]:
        report = await self._feedback()
        calibration: dict[str, Any] = report["calibration"]
        return calibration

    async def all(self) -> dict[str, Any]:
        """Every figure, for the page (the feedback report is built once)."""
        report = await self._feedback()
        return {
            "spend": await self.spend(),
            "reviews": await self.reviews(),
            "escalations": await self.escalations(),
            "failed_actions": await self.failed_actions(),
            "outcomes": {"rows": report["rows"], "totals": report["totals"], "at": report["at"]},
            "calibration": report["calibration"],
        }


#: ``/dashboard/api/{name}``: each figure on its own.
FIGURES: Final[dict[str, Callable[[Figures], Awaitable[dict[str, Any]]]]] = {
    "spend": Figures.spend,
    "reviews": Figures.reviews,
    "escalations": Figures.escalations,
    "failed-actions": Figures.failed_actions,
    "outcomes": Figures.outcomes,
    "calibration": Figures.calibration,
}
