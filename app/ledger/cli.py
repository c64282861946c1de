"""``python -m app ledger reconcile|discrepancies`` and the reconciled column of ``quota``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from app.ledger.cf_logs import CloudflareApiError
from app.ledger.store import LedgerReconcileStore
from app.ledger.task import build_reconciler
from app.quota import format_usd
from app.settings import Settings
from app.store import migrate
from app.store.db import Database
from app.store.types import utcnow

__all__ = ["format_spend_sides", "run_ledger_command"]


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an ISO date or date-time (UTC unless it says otherwise)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def run_ledger_command(settings: Settings, command: str, since: str | None) -> int:
    try:
        start = parse_since(since)
    except ValueError:
        print(
            f"--since must be an ISO date (2026-12-01 or 2026-12-01T08:00), not {since!r}",
            file=sys.stderr,
        )
        return 2
    db = Database.from_url(settings.database_url)
    try:
        await migrate.upgrade(db.engine)
        if command == "discrepancies":
            rows = await LedgerReconcileStore(db).open_discrepancies(limit=200)
            if not rows:
                print("no open discrepancies")
            for row in rows:
                cost = "—" if row.cost_usd is None else format_usd(row.cost_usd)
                print(
                    f"{row.at.isoformat()}  {row.kind.value:<20}  {row.repository or '?'}  "
                    f"{cost}  {row.detail}"
                )
            return 0
        reconciler = build_reconciler(settings, db)
        if isinstance(reconciler, str):
            print(f"ledger reconciliation is off: {reconciler}", file=sys.stderr)
            return 2
        try:
            report = await reconciler.run(since=start)
        except CloudflareApiError as exc:
            print(f"ledger reconciliation failed: {exc}", file=sys.stderr)
            return 1
        finally:
            await reconciler.client.aclose()
        print("\n".join(report.lines()))
        return 0
    finally:
        await db.dispose()


async def format_spend_sides(db: Database, repository: str | None, *, days: int = 7) -> str:
    """The last ``days`` of ledger spend, estimated and as the gateway recorded it."""
    now = utcnow()
    sides = await LedgerReconcileStore(db).spend_sides(since=now - timedelta(days=days), until=now)
    sides = [s for s in sides if repository is None or s.repository == repository]
    if not sides:
        return ""
    lines = [
        f"**Ledger, last {days} days: estimated and reconciled with the gateway's logs**",
        "",
        "| repository | calls | reconciled | estimated | reconciled spend |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.repository} | {s.calls} | {s.reconciled_calls} | {format_usd(s.estimated_usd)} "
        f"| {format_usd(s.reconciled_usd)} |"
        for s in sides
    ]
    return "\n".join(lines)
