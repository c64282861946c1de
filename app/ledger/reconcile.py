"""Matching the gateway's logs to ledger rows: corrections and discrepancies, decided purely.

A ledger row holds every ``cf-aig-log-id`` of its call (a repair round or a retry is a request,
and a log, of its own). When the gateway has logged them all, the row is *corrected*: the
gateway's cost, tokens and cached flag are the sums over its logs (the cost is None when any log
has none: the gateway could not price it, so the estimate stands; a log served from the
gateway's cache costs nothing). What does not match is a
*discrepancy*:

* ``missing_from_gateway``: a row's log the gateway never recorded (logging off for a while, a
  call sent elsewhere, a log deleted);
* ``missing_from_ledger``: a log carrying the bot's metadata (``app: aigateway``) that no row
  holds (a retry the SDK made on its own, a row lost in a crash).

Neither is decided for calls younger than ``settled_before``: the gateway writes its logs a
little after the call, and the bot writes its row after the call's last request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.ledger.cf_logs import GatewayLog

__all__ = ["Correction", "Discrepancy", "Kind", "LedgerCall", "Reconciliation", "reconcile"]


class Kind(StrEnum):
    MISSING_FROM_GATEWAY = "missing_from_gateway"
    MISSING_FROM_LEDGER = "missing_from_ledger"


@dataclass(frozen=True, slots=True)
class LedgerCall:
    """A ledger row and its logs, as reconciliation sees it."""

    ledger_id: int
    at: datetime
    repository: str
    purpose: str
    provider: str
    model: str
    cost_usd: float | None
    log_ids: tuple[str, ...]
    reconciled: bool = False


@dataclass(frozen=True, slots=True)
class Correction:
    """What the gateway recorded for one ledger row, beside the row's estimate."""

    ledger_id: int
    cost_usd: float | None
    input_tokens: int
    output_tokens: int
    cached: bool
    estimated_usd: float | None
    first: bool = True  # False: the row was reconciled before (an overlapping run)

    @property
    def differs(self) -> bool:
        """Whether the gateway's cost is not the estimate (to a hundredth of a cent)."""
        if self.cost_usd is None or self.estimated_usd is None:
            return self.cost_usd != self.estimated_usd
        return abs(self.cost_usd - self.estimated_usd) >= 0.0001


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: Kind
    log_id: str
    at: datetime
    ledger_id: int | None
    repository: str | None
    purpose: str | None
    provider: str | None
    model: str | None
    cost_usd: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    corrections: tuple[Correction, ...]
    discrepancies: tuple[Discrepancy, ...]
    #: Fetched logs that belong to a ledger row (their figures are kept per log).
    matched: tuple[tuple[int, GatewayLog], ...]


def reconcile(
    logs: Iterable[GatewayLog], calls: Sequence[LedgerCall], *, settled_before: datetime
) -> Reconciliation:
    """Corrections for the rows whose logs are all in ``logs``, and the discrepancies.

    ``calls`` are the rows owning any of ``logs`` and the unreconciled rows of the time range
    the logs cover; a row reconciled earlier is corrected again (the same figures) but never
    reported missing.
    """
    by_id = {log.id: log for log in logs}
    owners = {log_id: call for call in calls for log_id in call.log_ids}
    corrections: list[Correction] = []
    discrepancies: list[Discrepancy] = []
    for call in calls:
        found = [by_id[log_id] for log_id in call.log_ids if log_id in by_id]
        if call.log_ids and len(found) == len(call.log_ids):
            corrections.append(_correction(call, found))
        elif not call.reconciled and call.at < settled_before:
            discrepancies += [
                Discrepancy(
                    kind=Kind.MISSING_FROM_GATEWAY,
                    log_id=log_id,
                    at=call.at,
                    ledger_id=call.ledger_id,
                    repository=call.repository,
                    purpose=call.purpose,
                    provider=call.provider,
                    model=call.model,
                    cost_usd=call.cost_usd,
                    detail=f"ledger row {call.ledger_id} ({call.model}): log {log_id} is not in "
                    "the gateway's logs",
                )
                for log_id in call.log_ids
                if log_id not in by_id
            ]
    for log in by_id.values():
        if log.id in owners or not log.is_ours or log.created_at >= settled_before:
            continue
        repository = log.metadata.get("repository")
        purpose = log.metadata.get("purpose")
        discrepancies.append(
            Discrepancy(
                kind=Kind.MISSING_FROM_LEDGER,
                log_id=log.id,
                at=log.created_at,
                ledger_id=None,
                repository=repository if isinstance(repository, str) else None,
                purpose=purpose if isinstance(purpose, str) else None,
                provider=log.provider or None,
                model=log.model or None,
                cost_usd=log.cost,
                detail=f"gateway log {log.id} ({log.model}, "
                f"{'no cost' if log.cost is None else f'${log.cost:.4f}'}) carries the bot's "
                "metadata but no ledger row holds it",
            )
        )
    matched = tuple((owners[log.id].ledger_id, log) for log in by_id.values() if log.id in owners)
    return Reconciliation(tuple(corrections), tuple(discrepancies), matched)


def _correction(call: LedgerCall, logs: Sequence[GatewayLog]) -> Correction:
    # An answer served from the gateway's cache called no provider: nothing was billed for it,
    # whatever cost the log shows (kept per log in ``ledger_logs``).
    costs = [0.0 if log.cached else log.cost for log in logs]
    return Correction(
        ledger_id=call.ledger_id,
        cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        input_tokens=sum(log.tokens_in or 0 for log in logs),
        output_tokens=sum(log.tokens_out or 0 for log in logs),
        cached=all(log.cached for log in logs),
        estimated_usd=call.cost_usd,
        first=not call.reconciled,
    )
