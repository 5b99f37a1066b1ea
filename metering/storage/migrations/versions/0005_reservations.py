"""Reservations: holds against the available balance, resolved at most once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("reservation_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger, nullable=False),
        sa.Column("request_credits", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(128), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("price_id", sa.String(200), nullable=False),
        sa.Column("price_version", sa.Integer, nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
        sa.Column("expire_time_us", sa.BigInteger, nullable=False),
        sa.Column("resolve_time_us", sa.BigInteger, nullable=True),
        # The usage record that captured it (or the estimate an expiry wrote).
        sa.Column("record_id", sa.String(32), nullable=True),
    )
    # The sweeper finds due holds without scanning resolved ones.
    op.create_index("ix_reservations_open_expiry", "reservations", ["state", "expire_time_us"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("held_nanos", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("held_credits", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column(
                "reservation_expiry_policy", sa.String(16), nullable=False, server_default="RELEASE"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for column in ("reservation_expiry_policy", "held_credits", "held_nanos"):
            batch.drop_column(column)
    op.drop_index("ix_reservations_open_expiry", "reservations")
    op.drop_table("reservations")
