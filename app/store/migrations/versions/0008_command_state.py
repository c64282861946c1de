"""Slash-commands: which command lines ran, and which pull requests are paused.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "command_runs",
        sa.Column("comment_id", sa.BigInteger(), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("command", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "paused_pulls",
        sa.Column("repository", sa.String(300), primary_key=True),
        sa.Column("pr_number", sa.Integer(), primary_key=True),
        sa.Column("paused_by", sa.String(100), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paused_pulls")
    op.drop_table("command_runs")
