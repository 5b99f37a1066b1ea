"""Initial schema: accounts, idempotency keys, usage records, ledger, prices.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY = ("ledger_transactions", "ledger_entries", "usage_records")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("billing_mode", sa.String(16), nullable=False),
        sa.Column("allow_negative_balance", sa.Boolean, nullable=False),
        sa.Column("balance_nanos", sa.BigInteger, nullable=False),
        sa.Column("request_credits", sa.BigInteger, nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "usage_records",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("event_time_us", sa.BigInteger, nullable=False),
        sa.Column("record_time_us", sa.BigInteger, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("api_key_id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("streamed", sa.Boolean, nullable=False),
        sa.Column("usage_source", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger, nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False),
        sa.Column("request_credits", sa.BigInteger, nullable=False),
        sa.Column("price_id", sa.String(200), nullable=False),
        sa.Column("price_version", sa.Integer, nullable=False),
        sa.Column("transaction_id", sa.String(32), nullable=False),
        sa.Column("labels_json", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_usage_records_account_request",
        "usage_records",
        ["account_id", "request_id"],
        unique=True,
    )
    op.create_index(
        "ix_usage_records_account_event_time", "usage_records", ["account_id", "event_time_us"]
    )
    op.create_index("ix_usage_records_event_time", "usage_records", ["event_time_us"])
    op.create_table(
        "ledger_transactions",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("transaction_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
        sa.Column("corrects_transaction_id", sa.String(32), nullable=True),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("transaction_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("ledger_account", sa.String(128), nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_ledger_entries_ledger_account", "ledger_entries", ["ledger_account", "asset"]
    )
    op.create_table(
        "prices",
        sa.Column("price_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("effective_time_us", sa.BigInteger, nullable=False),
        sa.Column("end_time_us", sa.BigInteger, nullable=True),
        sa.Column("entry_json", sa.Text, nullable=False),
        sa.Column("entry_sha256", sa.String(64), nullable=False),
        sa.Column("create_time_us", sa.BigInteger, nullable=False),
    )
    _forbid_update_and_delete()


def _forbid_update_and_delete() -> None:
    """The ledger is append-only: the database itself refuses UPDATE and DELETE."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION metering_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME; END $$"
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION metering_append_only()"
            )
    elif dialect == "sqlite":
        for table in _APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only'); END"
                )


def downgrade() -> None:
    for table in ("prices", "ledger_entries", "ledger_transactions", "usage_records"):
        op.drop_table(table)
    op.drop_table("idempotency_keys")
    op.drop_table("accounts")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS metering_append_only()")
