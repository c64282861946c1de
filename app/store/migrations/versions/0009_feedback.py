"""The feedback loop: registered changes, their commits, their effects, and resets of the tightening.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("untightened_decision", sa.String(16), nullable=False),
        sa.Column("acted", sa.Boolean(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merge_sha", sa.String(64), nullable=True),
        sa.Column("merged_by_bot", sa.Boolean(), nullable=True),
        sa.Column("touched", sa.Text(), nullable=True),
        sa.Column("passed_checks", sa.Text(), nullable=True),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_changes_pr", "changes", ["repository", "pr_number"], unique=True)
    op.create_index("ix_changes_merge_sha", "changes", ["repository", "merge_sha"])
    op.create_table(
        "change_commits",
        sa.Column("change_id", sa.Integer(), primary_key=True),
        sa.Column("sha", sa.String(64), primary_key=True),
        sa.Column("repository", sa.String(300), nullable=False),
    )
    op.create_index("ix_change_commits_sha", "change_commits", ["repository", "sha"])
    op.create_table(
        "change_effects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("evidence", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_change_effects_once",
        "change_effects",
        ["change_id", "kind", "evidence"],
        unique=True,
    )
    op.create_table(
        "autonomy_resets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("reset_by", sa.String(100), nullable=False),
        sa.Column("reset_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_autonomy_resets_repository", "autonomy_resets", ["repository", "reset_at"])


def downgrade() -> None:
    op.drop_table("autonomy_resets")
    op.drop_table("change_effects")
    op.drop_table("change_commits")
    op.drop_table("changes")
