"""Free-text model calls held to a repository's budgets: the ``ask`` command's and the service
API's ``analyze``, which spend money as a review does but answer in prose.

One path for both, so a question costs and is recorded the same wherever it comes from:
the spend report, ``plan_calls`` over one round (a free-text answer has no repair), the
reservation before any request (``QuotaLedger.reserve``; a plan that skips or a refused
reservation leaves one ``refused`` row per model and sends nothing), every model at once through
``Reviewer.answer()``, each call told to the health monitor and recorded in the ledger as it
finishes, and the reservation settled with what they cost (the rest of the money held is
released), whatever happened to the calls.

The caller picks the ledger's ``delivery_id`` (``ask:<delivery>``, ``api:<request id>``): the
ledger's ``purpose`` column is read from its prefix (:func:`app.quota.purpose_of`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from app.gateway import AnswerCall, CallMetadata
from app.health import HealthMonitor
from app.quota import Plan, QuotaLedger, Refusal, SpendReport, plan_calls
from app.repo_config import QuotaConfig
from app.review.pipeline import ReviewerSpec, provider_ok
from app.settings import Settings

__all__ = ["Answered", "Unfunded", "answer_within_budget"]


@dataclass(frozen=True, slots=True)
class Answered:
    """The calls made (one per reviewer, in the order given), and the plan they were made on."""

    calls: list[AnswerCall]
    plan: Plan
    report: SpendReport


@dataclass(frozen=True, slots=True)
class Unfunded:
    """No request was sent: the budget's own reason, and the spend it was read from."""

    reason: str
    report: SpendReport


async def answer_within_budget(
    ledger: QuotaLedger,
    settings: Settings,
    health: HealthMonitor,
    *,
    specs: Sequence[ReviewerSpec],
    budget: QuotaConfig,
    metadata: CallMetadata,
    delivery_id: str | None,
    system: str,
    prompt: str,
    max_tokens: int,
) -> Answered | Unfunded:
    """Each reviewer of ``specs`` answers, if the budgets hold the most it can cost.

    ``metadata`` is sent with every call and names the repository and pull request (None for
    none) the budgets are read for; ``delivery_id`` replaces its delivery in the ledger's rows.
    """
    repository = metadata.repository or ""
    report = await ledger.spend(repository, pr_number=metadata.pr, budget=budget)
    wanted = {reviewer.provider: model or reviewer.model for _, reviewer, model in specs}
    plan = plan_calls(
        settings,
        wanted=wanted,
        report=report,
        budget=budget,
        prompt_text=system + prompt,
        max_output_tokens=max_tokens,
        rounds=1,
    )
    if plan.skip_reason is not None:
        await ledger.record_refused(metadata, wanted, delivery_id=delivery_id)
        return Unfunded(plan.skip_reason, report)
    reservation = await ledger.reserve(
        repository=repository,
        pr_number=metadata.pr,
        amount_usd=plan.estimated_usd or 0.0,
        budget=budget,
    )
    if isinstance(reservation, Refusal):
        await ledger.record_refused(metadata, wanted, delivery_id=delivery_id)
        return Unfunded(reservation.message, report)
    spent = 0.0

    async def one(spec: ReviewerSpec) -> AnswerCall:
        nonlocal spent
        _, reviewer, model = spec
        call = await reviewer.answer(
            system=system,
            prompt=prompt,
            metadata=metadata,
            max_tokens=max_tokens,
            model=plan.models.get(reviewer.provider, model),
        )
        health.record(f"gateway:{call.provider}", call.latency_s, provider_ok(call))
        spent += call.cost_usd or 0.0
        await ledger.record_model_call(
            call, metadata=metadata, reservation_id=reservation.id, delivery_id=delivery_id
        )
        return call

    try:
        calls = list(await asyncio.gather(*(one(spec) for spec in specs)))
    finally:
        await ledger.settle(reservation, actual_usd=spent)
    return Answered(calls, plan, report)
