"""What a review found, kept for the next head's decision; what a merge intent was decided from.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("facts", sa.Text(), nullable=True))
        batch.add_column(sa.Column("cleared_by", sa.String(100), nullable=True))
    with op.batch_alter_table("merge_intents") as batch:
        batch.add_column(sa.Column("basis", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merge_intents") as batch:
        batch.drop_column("basis")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("cleared_by")
        batch.drop_column("facts")
