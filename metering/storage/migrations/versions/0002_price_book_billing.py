"""Price book and billing modes: account billing settings, API key overrides,
account-scoped prices, adjustment records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("unpriced_policy", sa.String(16), nullable=False, server_default="REJECT")
        )
        batch.add_column(
            sa.Column("price_adjustment_bps", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("request_asset", sa.String(16), nullable=False, server_default="CREDITS")
        )
        batch.add_column(
            sa.Column(
                "default_request_price_nanos", sa.BigInteger, nullable=False, server_default="0"
            )
        )
        batch.add_column(
            sa.Column("default_request_credits", sa.BigInteger, nullable=False, server_default="1")
        )
    op.create_table(
        "api_keys",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("api_key_id", sa.String(128), primary_key=True),
        sa.Column("billing_mode", sa.String(16), nullable=True),
        sa.Column("update_time_us", sa.BigInteger, nullable=False),
    )
    # usage_records is append-only (its triggers refuse UPDATE); adding columns
    # with defaults does not update rows on either database.
    op.add_column(
        "usage_records",
        sa.Column("record_kind", sa.String(16), nullable=False, server_default="USAGE"),
    )
    op.add_column(
        "usage_records",
        sa.Column("request_count", sa.Integer, nullable=False, server_default="1"),
    )
    op.add_column("usage_records", sa.Column("corrects_record_id", sa.String(32), nullable=True))
    op.add_column(
        "usage_records",
        sa.Column("billing_mode", sa.String(16), nullable=False, server_default="TOKEN"),
    )
    op.add_column(
        "usage_records",
        sa.Column("unpriced", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "usage_records",
        sa.Column("batch", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_usage_records_corrects", "usage_records", ["account_id", "corrects_record_id"]
    )
    op.add_column(
        "prices",
        sa.Column("account_id", sa.String(128), nullable=False, server_default=""),
    )
    # A change of any price bumps this counter, so every process can tell
    # cheaply whether its cached price book is stale.
    op.create_table(
        "revisions",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO revisions (name, revision) VALUES ('prices', 1)")


def downgrade() -> None:
    op.drop_table("revisions")
    op.drop_column("prices", "account_id")
    op.drop_index("ix_usage_records_corrects", "usage_records")
    for column in (
        "batch",
        "unpriced",
        "billing_mode",
        "corrects_record_id",
        "request_count",
        "record_kind",
    ):
        op.drop_column("usage_records", column)
    op.drop_table("api_keys")
    with op.batch_alter_table("accounts") as batch:
        for column in (
            "default_request_credits",
            "default_request_price_nanos",
            "request_asset",
            "price_adjustment_bps",
            "unpriced_policy",
        ):
            batch.drop_column(column)
