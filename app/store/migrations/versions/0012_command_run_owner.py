"""Command runs remember the delivery that claimed them and whether they finished.

A claim whose worker died mid-command belongs to that delivery: when the queue hands the delivery
out again, the command runs again instead of being skipped as "ran already" and lost.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("command_runs") as batch:
        batch.add_column(sa.Column("delivery_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    # Claims made before this revision finished, or were given back when they failed.
    op.execute("UPDATE command_runs SET finished_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("command_runs") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("delivery_id")
