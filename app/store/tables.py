"""The database tables, as SQLAlchemy Core metadata.

Core rather than ORM: every statement the bot runs is a short, explicit query (claim a delivery,
reserve a budget), and the same statements must behave identically on SQLite and PostgreSQL.
Migrations in ``store/migrations`` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
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

# One row per review run: what was reviewed (head SHA), how it ended, and its check run, so a
# retried delivery reuses its check run and a later push can review only what changed since.
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("base_sha", String(64), nullable=True),
    Column("delivery_id", String(100), nullable=True),
    # running | published | superseded | skipped | failed
    Column("status", String(16), nullable=False),
    Column("check_run_id", BigInteger, nullable=True),
    Column("incremental_from", String(64), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("conclusion", String(32), nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("summary", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
)
Index("ix_reviews_pr", reviews.c.repository, reviews.c.pr_number, reviews.c.head_sha)

# Fingerprints of the inline comments already posted on a PR: a later review does not repeat them.
posted_comments = Table(
    "posted_comments",
    metadata,
    Column("repository", String(300), primary_key=True),
    Column("pr_number", Integer, primary_key=True),
    Column("fingerprint", String(32), primary_key=True),
    Column("head_sha", String(64), nullable=False),
    Column("posted_at", UTCDateTime(), nullable=False),
)
