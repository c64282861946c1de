"""Claiming walks deliveries of one status in arrival order.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Replaces the (status, next_attempt_at) index, which the planner preferred and which made
    # every claim read and sort all queued rows.
    op.drop_index("ix_deliveries_claim", "deliveries")
    op.create_index(
        "ix_deliveries_status_received",
        "deliveries",
        ["status", "received_at", "id", "next_attempt_at", "lease_expires_at", "pr_key"],
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_received", "deliveries")
    op.create_index("ix_deliveries_claim", "deliveries", ["status", "next_attempt_at"])
