"""Missing-usage policies: how a call without usage is recorded and charged, per scope.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
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
        "missing_usage_policies",
        # The scope; "" means any.
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("estimate_disabled", sa.Boolean, nullable=False),
        sa.Column("fallback", sa.String(16), nullable=False),
        sa.Column("flat_fee_nanos", sa.BigInteger, nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("update_time_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("missing_usage_policies")
