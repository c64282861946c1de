"""The feedback loop's outcome of a change, written to the gateway logs of the calls that reviewed it.

Once a change's outcome is settled (``app.feedback.outcomes``: clean after its window, or the
worst effect seen), every gateway log of the review calls of its pull request is patched with a
``feedback`` (+1 clean, -1 otherwise), a ``score`` (0..100, lower for worse effects) and
``metadata`` (the bot's own entries plus ``outcome``: a patch may replace the log's metadata,
so what identified the call is sent again; five entries at most). The gateway's analytics then
show which reviews led to reverts or broken CI.

Written once per (change, outcome) (``ledger_writebacks``): a second run writes nothing, and a
worse outcome seen later is written again. Needs AI Gateway Edit; the first 403 turns the
write-back off for the life of the process (one log line), as ``LEDGER_WRITEBACK=false`` does
from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select, update

from app.feedback.outcomes import Outcome, settle
from app.feedback.registry import FeedbackStore
from app.gateway.clients import METADATA_APP, METADATA_APP_KEY
from app.ledger.cf_logs import CloudflareApiError, GatewayLogsClient, MetadataValue, NoPermission
from app.quota import CallOutcome
from app.store.db import Database
from app.store.tables import changes, ledger, ledger_logs, ledger_writebacks
from app.store.types import utcnow

__all__ = ["Feedback", "OutcomeWriter", "WritebackReport", "feedback_for"]

logger = logging.getLogger(__name__)

#: Changes decided longer ago than this are not looked at again.
LOOKBACK: Final = timedelta(days=90)

_SCORES: Final = {
    Outcome.CLEAN: 100,
    Outcome.HUMAN_OVERRIDE: 50,
    Outcome.FOLLOW_UP_FIX: 40,
    Outcome.BROKE_CI: 20,
    Outcome.REVERTED: 0,
}


@dataclass(frozen=True, slots=True)
class Feedback:
    feedback: int
    score: int


def feedback_for(outcome: Outcome) -> Feedback | None:
    """The gateway feedback for a settled outcome; None while it is not settled."""
    if not outcome.settled:
        return None
    return Feedback(1 if outcome is Outcome.CLEAN else -1, _SCORES[outcome])


@dataclass(frozen=True, slots=True)
class WritebackReport:
    outcomes: int = 0
    logs: int = 0
    stopped: str | None = None  # why the write-back is off
    error: str | None = None  # why this run's write-back ended early (tried again next run)


class OutcomeWriter:
    def __init__(
        self,
        db: Database,
        client: GatewayLogsClient,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.client = client
        self.clock = clock
        self.stopped: str | None = None

    async def run(self) -> WritebackReport:
        """Write every settled outcome not written yet."""
        if self.stopped is not None:
            return WritebackReport(stopped=self.stopped)
        now = self.clock()
        feedback_store = FeedbackStore(self.db, clock=self.clock)
        async with self.db.read() as conn:
            repositories = list(
                (
                    await conn.execute(
                        select(changes.c.repository)
                        .distinct()
                        .where(changes.c.decided_at >= now - LOOKBACK)
                    )
                ).scalars()
            )
            written = {
                (int(row.change_id), row.outcome)
                for row in (await conn.execute(select(ledger_writebacks))).all()
            }
        outcomes = logs = 0
        for repository in sorted(repositories):
            for change in await feedback_store.records(repository, since=now - LOOKBACK):
                outcome = settle(change, now).outcome
                verdict = feedback_for(outcome)
                if verdict is None or (change.id, outcome.value) in written:
                    continue
                if not await self._claim(change.id, outcome):
                    continue  # another replica writes it
                try:
                    patched = await self._write(
                        change.repository, change.pr_number, outcome, verdict
                    )
                except NoPermission as exc:
                    await self._release(change.id, outcome)
                    self.stopped = f"the API token cannot patch gateway logs ({exc})"
                    logger.warning(
                        "outcomes are not written back to the gateway's logs: %s; give the token "
                        "AI Gateway Edit and restart, or set LEDGER_WRITEBACK=false",
                        exc,
                    )
                    return WritebackReport(outcomes, logs, self.stopped)
                except CloudflareApiError as exc:
                    await self._release(change.id, outcome)  # tried again next run
                    return WritebackReport(outcomes, logs, error=str(exc))
                async with self.db.write() as conn:
                    await conn.execute(
                        update(ledger_writebacks)
                        .where(
                            ledger_writebacks.c.change_id == change.id,
                            ledger_writebacks.c.outcome == outcome.value,
                        )
                        .values(logs=patched, written_at=self.clock())
                    )
                outcomes += 1
                logs += patched
        return WritebackReport(outcomes, logs)

    async def _claim(self, change_id: int, outcome: Outcome) -> bool:
        """Take the (change, outcome) before writing, so two replicas never both write it."""
        async with self.db.write() as conn:
            claimed = (
                await conn.execute(
                    self.db.insert(ledger_writebacks)
                    .values(
                        change_id=change_id, outcome=outcome.value, logs=0, written_at=self.clock()
                    )
                    .on_conflict_do_nothing()
                    .returning(ledger_writebacks.c.change_id)
                )
            ).first()
        return claimed is not None

    async def _release(self, change_id: int, outcome: Outcome) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(ledger_writebacks).where(
                    ledger_writebacks.c.change_id == change_id,
                    ledger_writebacks.c.outcome == outcome.value,
                )
            )

    async def _write(
        self, repository: str, pr_number: int, outcome: Outcome, verdict: Feedback
    ) -> int:
        """Patch the logs of the PR's review calls; how many the gateway knew."""
        query = (
            select(ledger_logs.c.log_id)
            .select_from(ledger_logs.join(ledger, ledger.c.id == ledger_logs.c.ledger_id))
            .where(
                ledger.c.repository == repository,
                ledger.c.pr_number == pr_number,
                ledger.c.purpose == "review",
                ledger.c.outcome != CallOutcome.REFUSED.value,
            )
            .order_by(ledger_logs.c.log_id)
        )
        async with self.db.read() as conn:
            log_ids = list((await conn.execute(query)).scalars())
        metadata: dict[str, MetadataValue] = {
            METADATA_APP_KEY: METADATA_APP,
            "purpose": "review",
            "repository": repository[:200],
            "pr": pr_number,
            "outcome": outcome.value,
        }
        patched = 0
        for log_id in log_ids:
            if await self.client.patch_log(
                log_id, feedback=verdict.feedback, score=verdict.score, metadata=metadata
            ):
                patched += 1
        return patched
