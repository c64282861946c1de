"""The service API's coding-agent jobs.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("ref", sa.String(255), nullable=True),
        sa.Column("sandbox", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(300), nullable=False),
        sa.Column("caller_owner", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runner", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("stderr", sa.Text(), nullable=True),
        sa.Column("diff", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_api_jobs_status", "api_jobs", ["status", "heartbeat_at"])


def downgrade() -> None:
    op.drop_table("api_jobs")
