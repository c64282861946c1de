"""Actions as durable rows, the model answers a retry resumes from, intents' installations.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(300), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ux_actions_head_kind",
        "actions",
        ["repository", "pr_number", "head_sha", "kind"],
        unique=True,
    )
    op.create_index("ix_actions_status_due", "actions", ["status", "next_attempt_at"])
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("outcomes", sa.Text(), nullable=True))
    with op.batch_alter_table("merge_intents") as batch:
        batch.add_column(sa.Column("installation_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merge_intents") as batch:
        batch.drop_column("installation_id")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("outcomes")
    op.drop_index("ix_actions_status_due", "actions")
    op.drop_index("ux_actions_head_kind", "actions")
    op.drop_table("actions")
