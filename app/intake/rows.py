"""Intake rows in plain ``sqlite3``: the one statement that stores a batch of deliveries.

Used where SQLAlchemy is not: in the intake process (``app.intake.process``) and on the
writer's thread (``DeliveryQueue.insert_batch``). Kept free of SQLAlchemy and the rest of the
app, so that the process imports in milliseconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# (id, event, action, installation_id, repository, pr_key, payload, needs_handling): a
# delivery as intake stores it. ``needs_handling`` False means no handler wants it: it is
# stored already done, for the record and for replay.
IntakeRow = tuple[str, str, str | None, int | None, str | None, str | None, str, bool]

# The columns intake writes; the others start NULL.
INTAKE_COLUMNS = (
    "id",
    "event",
    "action",
    "installation_id",
    "repository",
    "pr_key",
    "payload",
    "received_at",
    "status",
    "attempts",
    "next_attempt_at",
    "finished_at",
)

QUEUED = "queued"
DONE = "done"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A verified delivery, as intake stores it."""

    id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    pr_key: str | None
    payload: str
    # False for events no handler is registered for: stored (for replay) but already done.
    needs_handling: bool = True

    def row(self) -> IntakeRow:
        return (
            self.id,
            self.event,
            self.action,
            self.installation_id,
            self.repository,
            self.pr_key,
            self.payload,
            self.needs_handling,
        )


_ROW = f"({', '.join('?' * len(INTAKE_COLUMNS))})"
# Rows per statement at most: well within SQLite's limit of 32766 parameters.
_MAX_ROWS = 1000
_statements: dict[int, str] = {}


def sqlite_time(value: datetime) -> str:
    """A UTC time as the ``UTCDateTime`` column keeps it on SQLite (naive UTC, microseconds
    always written): SQLite compares these as text, so every writer must use this one form."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _insert_sql(count: int) -> str:
    # Built from the constant column list and placeholders only: no value is spliced in.
    sql = _statements.get(count)
    if sql is None:
        sql = (
            f"INSERT INTO deliveries ({', '.join(INTAKE_COLUMNS)}) "  # noqa: S608
            f"VALUES {', '.join([_ROW] * count)} ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        _statements[count] = sql
    return sql


def store_deliveries(connection: sqlite3.Connection, rows: Sequence[IntakeRow]) -> list[str]:
    """Store the rows whose id is new, in one statement; the ids stored.

    One multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (per thousand rows): a
    redelivery (an id stored before, or twice in this batch) is skipped and not returned, and
    outside a transaction the statement is one by itself.
    """
    at = sqlite_time(datetime.now(UTC))
    stored: list[str] = []
    for start in range(0, len(rows), _MAX_ROWS):
        chunk = rows[start : start + _MAX_ROWS]
        params: list[object] = []
        for id_, event, action, installation, repository, pr_key, payload, handle in chunk:
            params += (id_, event, action, installation, repository, pr_key, payload, at)
            params += (QUEUED, 0, at, None) if handle else (DONE, 0, at, at)
        stored += [row[0] for row in connection.execute(_insert_sql(len(chunk)), params)]
    return stored
