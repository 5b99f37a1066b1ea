"""Usage rollups: sums per account, 15-minute slice and group keys, kept on write.

Summaries read these instead of scanning every record; each slice is a
multiple of every UTC offset in use, so local hours, days and months are
exact unions of slices.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SUMS = (
    "request_count",
    "unpriced_request_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "request_credits",
)


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("slice", sa.BigInteger, primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.String(128), primary_key=True),
        sa.Column("service", sa.String(128), primary_key=True),
        sa.Column("usage_source", sa.String(16), primary_key=True),
        sa.Column("currency_code", sa.String(3), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _SUMS),
    )
    op.create_index("ix_usage_rollups_slice", "usage_rollups", ["slice"])
    # All accounts together, by the keys an operator's dashboard groups by: a month is
    # ~2,880 slices x models rows however many records and accounts there are.
    op.create_table(
        "usage_rollups_global",
        sa.Column("slice", sa.BigInteger, primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("usage_source", sa.String(16), primary_key=True),
        sa.Column("currency_code", sa.String(3), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _SUMS),
    )
    # Backfill from the records already there, in one statement.
    sums = ", ".join(
        "SUM(CASE WHEN unpriced THEN request_count ELSE 0 END)"
        if name == "unpriced_request_count"
        else f"SUM({name})"
        for name in _SUMS
    )
    columns = ", ".join(_SUMS)
    # Built from the constant column names above, nothing from outside.
    backfill = (
        "INSERT INTO usage_rollups (account_id, slice, model, provider, "  # noqa: S608
        f"api_key_id, service, usage_source, currency_code, {columns}) "
        "SELECT account_id, event_time_us / 900000000, model, provider, api_key_id, service, "
        f"usage_source, currency_code, {sums} FROM usage_records "
        "GROUP BY account_id, event_time_us / 900000000, model, provider, api_key_id, service, "
        "usage_source, currency_code"
    )
    op.execute(backfill)
    op.execute(
        "INSERT INTO usage_rollups_global (slice, model, provider, usage_source, "  # noqa: S608
        f"currency_code, {columns}) SELECT slice, model, provider, usage_source, currency_code, "
        f"{', '.join(f'SUM({name})' for name in _SUMS)} FROM usage_rollups "
        "GROUP BY slice, model, provider, usage_source, currency_code"
    )


def downgrade() -> None:
    op.drop_table("usage_rollups_global")
    op.drop_index("ix_usage_rollups_slice", "usage_rollups")
    op.drop_table("usage_rollups")
