"""Reviews and the fingerprints of posted comments.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer, nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=True),
        sa.Column("delivery_id", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("check_run_id", sa.BigInteger, nullable=True),
        sa.Column("incremental_from", sa.String(64), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("conclusion", sa.String(32), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reviews_pr", "reviews", ["repository", "pr_number", "head_sha"])
    op.create_table(
        "posted_comments",
        sa.Column("repository", sa.String(300), primary_key=True),
        sa.Column("pr_number", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(32), primary_key=True),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("posted_comments")
    op.drop_index("ix_reviews_pr", "reviews")
    op.drop_table("reviews")
