"""The cost ledger reconciled against the gateway's logs, and outcomes written back to them.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(16), nullable=False, server_default="review")
        )
        batch.add_column(sa.Column("gateway_cost_usd", sa.Float(), nullable=True))
        batch.add_column(sa.Column("gateway_input_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("gateway_output_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("gateway_cached", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True))
    # Before this column a purpose was told by the ledger's delivery id: ``ask:`` and ``api:``.
    op.execute(
        "UPDATE ledger SET purpose = CASE"
        " WHEN delivery_id LIKE 'ask:%' THEN 'ask'"
        " WHEN delivery_id LIKE 'api:%' THEN 'api'"
        " ELSE 'review' END"
    )
    op.create_table(
        "ledger_logs",
        sa.Column("log_id", sa.String(200), primary_key=True),
        sa.Column("ledger_id", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=True),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_ledger_logs_ledger", "ledger_logs", ["ledger_id"])
    op.execute(
        "INSERT INTO ledger_logs (log_id, ledger_id) "
        "SELECT log_id, MIN(id) FROM ledger WHERE log_id IS NOT NULL GROUP BY log_id"
    )
    op.create_table(
        "ledger_discrepancies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("log_id", sa.String(200), nullable=False),
        sa.Column("ledger_id", sa.Integer(), nullable=True),
        sa.Column("repository", sa.String(300), nullable=True),
        sa.Column("purpose", sa.String(16), nullable=True),
        sa.Column("provider", sa.String(50), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_ledger_discrepancies_once", "ledger_discrepancies", ["kind", "log_id"], unique=True
    )
    op.create_index("ix_ledger_discrepancies_open", "ledger_discrepancies", ["resolved_at"])
    op.create_table(
        "ledger_reconciliations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logs_seen", sa.Integer(), nullable=False),
        sa.Column("rows_corrected", sa.Integer(), nullable=False),
        sa.Column("discrepancies", sa.Integer(), nullable=False),
    )
    op.create_table(
        "ledger_writebacks",
        sa.Column("change_id", sa.Integer(), primary_key=True),
        sa.Column("outcome", sa.String(24), primary_key=True),
        sa.Column("logs", sa.Integer(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_writebacks")
    op.drop_table("ledger_reconciliations")
    op.drop_table("ledger_discrepancies")
    op.drop_table("ledger_logs")
    with op.batch_alter_table("ledger") as batch:
        for column in (
            "reconciled_at",
            "gateway_cached",
            "gateway_output_tokens",
            "gateway_input_tokens",
            "gateway_cost_usd",
            "purpose",
        ):
            batch.drop_column(column)
