"""Autonomy decisions, merge intents and once-per-head notices.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer, nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("matrix_decision", sa.String(16), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("guards", sa.Text, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("act", sa.Boolean, nullable=False),
        sa.Column("action_taken", sa.String(32), nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("check_run_id", sa.BigInteger, nullable=True),
        sa.Column("actor", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_decisions_pr", "decisions", ["repository", "pr_number", "head_sha"])
    op.create_index("ix_decisions_check_run", "decisions", ["check_run_id"])
    op.create_table(
        "merge_intents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer, nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("merge_method", sa.String(16), nullable=False),
        sa.Column("commit_title", sa.Text, nullable=False),
        sa.Column("commit_message", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recheck", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ux_merge_intents_head",
        "merge_intents",
        ["repository", "pr_number", "head_sha"],
        unique=True,
    )
    op.create_index("ix_merge_intents_sha", "merge_intents", ["repository", "head_sha"])
    op.create_table(
        "pr_notices",
        sa.Column("repository", sa.String(300), primary_key=True),
        sa.Column("pr_number", sa.Integer, primary_key=True),
        sa.Column("head_sha", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(100), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pr_notices")
    op.drop_index("ix_merge_intents_sha", "merge_intents")
    op.drop_index("ux_merge_intents_head", "merge_intents")
    op.drop_table("merge_intents")
    op.drop_index("ix_decisions_check_run", "decisions")
    op.drop_index("ix_decisions_pr", "decisions")
    op.drop_table("decisions")
