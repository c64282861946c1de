"""The database tables, as SQLAlchemy Core metadata.

Core rather than ORM: every statement the bot runs is a short, explicit query (claim a delivery,
reserve a budget), and the same statements must behave identically on SQLite and PostgreSQL.
Migrations in ``store/migrations`` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from app.store.types import UTCDateTime

metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    # X-GitHub-Delivery; GitHub keeps it on redelivery, which is what makes dedupe work.
    Column("id", String(100), primary_key=True),
    Column("event", String(100), nullable=False),
    Column("action", String(100), nullable=True),
    Column("installation_id", BigInteger, nullable=True),
    Column("repository", String(300), nullable=True),
    # Work for one pull request is serialised: at most one running delivery per key.
    Column("pr_key", String(320), nullable=True),
    Column("payload", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # queued | running | done | failed
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("leased_by", String(100), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
)
Index("ix_deliveries_claim", deliveries.c.status, deliveries.c.next_attempt_at)
Index("ix_deliveries_pr_key", deliveries.c.pr_key, deliveries.c.status)
