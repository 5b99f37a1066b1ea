"""Budgets and their threshold events (an outbox), and accounts' time zones.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("budget_id", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("rolling_seconds", sa.BigInteger, nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("limit_value", sa.BigInteger, nullable=False),
        sa.Column("hard", sa.Boolean, nullable=False),
        sa.Column("thresholds_json", sa.Text, nullable=False),
        sa.Column("update_time_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "budget_events",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(32), primary_key=True),
        sa.Column("budget_id", sa.String(64), nullable=False),
        sa.Column("period_start_us", sa.BigInteger, nullable=False),
        sa.Column("threshold_percent", sa.Integer, nullable=False),
        sa.Column("used_value", sa.BigInteger, nullable=False),
        sa.Column("limit_value", sa.BigInteger, nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
    )
    # Once per threshold per period: the database refuses a second event.
    op.create_index(
        "ix_budget_events_once",
        "budget_events",
        ["account_id", "budget_id", "period_start_us", "threshold_percent"],
        unique=True,
    )
    op.create_index("ix_budget_events_time", "budget_events", ["create_time_us", "event_id"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC")
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("time_zone")
    op.drop_index("ix_budget_events_time", "budget_events")
    op.drop_index("ix_budget_events_once", "budget_events")
    op.drop_table("budget_events")
    op.drop_table("budgets")
