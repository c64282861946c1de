"""Budgets: reservations, the cost ledger, exhaustion notices and the last budgets seen.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.Column("settled", sa.Boolean, nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actual_usd", sa.Float, nullable=True),
    )
    op.create_index("ix_reservations_window", "reservations", ["repository", "created_at"])
    op.create_index("ix_reservations_pr", "reservations", ["repository", "pr_number"])
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("installation_id", sa.BigInteger, nullable=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer, nullable=True),
        sa.Column("delivery_id", sa.String(100), nullable=True),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_input_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=True),
        sa.Column("log_id", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reservation_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_ledger_repository_at", "ledger", ["repository", "at"])
    op.create_table(
        "quota_notices",
        sa.Column("repository", sa.String(300), primary_key=True),
        sa.Column("pr_number", sa.Integer, primary_key=True),
        sa.Column("window_key", sa.String(32), primary_key=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quota_budgets",
        sa.Column("repository", sa.String(300), primary_key=True),
        sa.Column("daily_usd", sa.Float, nullable=True),
        sa.Column("weekly_usd", sa.Float, nullable=True),
        sa.Column("per_pr_usd", sa.Float, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_budgets")
    op.drop_table("quota_notices")
    op.drop_index("ix_ledger_repository_at", "ledger")
    op.drop_table("ledger")
    op.drop_index("ix_reservations_pr", "reservations")
    op.drop_index("ix_reservations_window", "reservations")
    op.drop_table("reservations")
