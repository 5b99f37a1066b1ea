"""A partial index for the review queue: original calls recorded as ESTIMATED or MISSING.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# As metering.storage.schema.REVIEW_PREDICATE at this revision (migrations never import
# the live schema, which moves on).
_PREDICATE = "record_kind = 'USAGE' AND usage_source IN ('ESTIMATED', 'MISSING')"


def upgrade() -> None:
    op.create_index(
        "ix_usage_records_review",
        "usage_records",
        ["event_time_us", "account_id", "record_id"],
        sqlite_where=sa.text(_PREDICATE),
        postgresql_where=sa.text(_PREDICATE),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_records_review", table_name="usage_records")
