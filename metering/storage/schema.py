"""The tables. Every table is keyed by ``account_id`` first, so that the
schema can later be distributed by account (Citus) without changing keys.

Times are integer microseconds since the Unix epoch (UTC): the same integer
arithmetic buckets them on SQLite and PostgreSQL, and no driver converts time
zones behind our back. Money is integer nanos; request credits are integers.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData()

# The rows of ix_usage_records_review. Queries must repeat it with literals, not
# parameters, for the planners to use the index.
REVIEW_PREDICATE = "record_kind = 'USAGE' AND usage_source IN ('ESTIMATED', 'MISSING')"

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("currency_code", String(3), nullable=False),
    Column("billing_mode", String(16), nullable=False),
    Column("allow_negative_balance", Boolean, nullable=False),
    # Cached sums of the account's ledger entries, updated in the same
    # transaction as the entries; `metering ledger verify` recomputes them.
    Column("balance_nanos", BigInteger, nullable=False),
    Column("request_credits", BigInteger, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    # Billing settings (0002). Settings may change; ledger rows never do.
    Column("unpriced_policy", String(16), nullable=False, server_default="REJECT"),
    Column("price_adjustment_bps", Integer, nullable=False, server_default="0"),
    Column("request_asset", String(16), nullable=False, server_default="CREDITS"),
    Column("default_request_price_nanos", BigInteger, nullable=False, server_default="0"),
    Column("default_request_credits", BigInteger, nullable=False, server_default="1"),
    # Open holds (0005): the sums of the account's OPEN reservations.
    Column("held_nanos", BigInteger, nullable=False, server_default="0"),
    Column("held_credits", BigInteger, nullable=False, server_default="0"),
    Column("reservation_expiry_policy", String(16), nullable=False, server_default="RELEASE"),
    # The IANA zone of the account's daily and monthly budget periods (0006).
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    # The tenant owning the account (0004); tenant-scoped tokens see only their own.
    Column("tenant_id", String(128), nullable=True),
    Index("ix_accounts_tenant", "tenant_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("api_key_id", String(128), primary_key=True),
    # Overrides the account's billing mode for this key; NULL inherits it.
    Column("billing_mode", String(16), nullable=True),
    Column("update_time_us", BigInteger, nullable=False),
)

# API tokens (0004): only the SHA-256 of a token is stored, keyed by its public id.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, server_default=""),
    Column("role", String(16), nullable=False),
    Column("tenant_id", String(128), nullable=True),
    Column("hash", String(64), nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Column("revoke_time_us", BigInteger, nullable=True),
)

revisions = Table(
    "revisions",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("revision", BigInteger, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("operation", String(32), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    # The stored result, returned as-is on a replay.
    Column("result_json", Text, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("record_id", String(32), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("event_time_us", BigInteger, nullable=False),
    Column("record_time_us", BigInteger, nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("api_key_id", String(128), nullable=False),
    Column("service", String(128), nullable=False),
    Column("streamed", Boolean, nullable=False),
    Column("usage_source", String(16), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cache_write_1h_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("request_credits", BigInteger, nullable=False),
    Column("price_id", String(200), nullable=False),
    Column("price_version", Integer, nullable=False),
    Column("transaction_id", String(32), nullable=False),
    Column("labels_json", Text, nullable=False),
    # 0002: an ADJUSTMENT row corrects the record it names (request_count 0);
    # the original row is never changed.
    Column("record_kind", String(16), nullable=False, server_default="USAGE"),
    Column("request_count", Integer, nullable=False, server_default="1"),
    Column("corrects_record_id", String(32), nullable=True),
    Column("billing_mode", String(16), nullable=False, server_default="TOKEN"),
    Column("unpriced", Boolean, nullable=False, server_default=false()),
    Column("batch", Boolean, nullable=False, server_default=false()),
    Index("ix_usage_records_account_request", "account_id", "request_id", unique=True),
    Index("ix_usage_records_account_event_time", "account_id", "event_time_us"),
    Index("ix_usage_records_event_time", "event_time_us"),
    Index("ix_usage_records_corrects", "account_id", "corrects_record_id"),
    # The review queue (0007): original calls that may need a later figure, in the
    # queue's key order; a small part of the table, so a partial index.
    Index(
        "ix_usage_records_review",
        "event_time_us",
        "account_id",
        "record_id",
        sqlite_where=text(REVIEW_PREDICATE),
        postgresql_where=text(REVIEW_PREDICATE),
    ),
)

ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("transaction_id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("reason", String(256), nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    # A correction names the transaction it corrects; the original is never changed.
    Column("corrects_transaction_id", String(32), nullable=True),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    # The customer account whose transaction this entry belongs to (the
    # distribution key); the entry's own ledger account may be a system one.
    Column("account_id", String(128), primary_key=True),
    Column("transaction_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("ledger_account", String(128), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Index("ix_ledger_entries_ledger_account", "ledger_account", "asset"),
)

prices = Table(
    "prices",
    metadata,
    Column("price_id", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("effective_time_us", BigInteger, nullable=False),
    Column("end_time_us", BigInteger, nullable=True),
    # The entry as JSON (rates, tiers, aliases, source); its hash guards
    # against a catalogue changing an entry without a new version.
    Column("entry_json", Text, nullable=False),
    Column("entry_sha256", String(64), nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    # "" for list prices; an account id for that account's override (0002).
    Column("account_id", String(128), nullable=False, server_default=""),
)

ROLLUP_KEYS = ("model", "provider", "api_key_id", "service", "usage_source", "currency_code")
ROLLUP_SUMS = (
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

# Sums of usage records per account, 15-minute slice (event_time_us // 900e6)
# and group keys (0003), updated in the transaction that writes the records.
usage_rollups = Table(
    "usage_rollups",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("slice", BigInteger, primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("api_key_id", String(128), primary_key=True),
    Column("service", String(128), primary_key=True),
    Column("usage_source", String(16), primary_key=True),
    Column("currency_code", String(3), primary_key=True),
    *(Column(name, BigInteger, nullable=False) for name in ROLLUP_SUMS),
    Index("ix_usage_rollups_slice", "slice"),
)

GLOBAL_ROLLUP_KEYS = ("model", "provider", "usage_source", "currency_code")

# The same sums over all accounts, by the keys dashboards group by (0003).
usage_rollups_global = Table(
    "usage_rollups_global",
    metadata,
    Column("slice", BigInteger, primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("usage_source", String(16), primary_key=True),
    Column("currency_code", String(3), primary_key=True),
    *(Column(name, BigInteger, nullable=False) for name in ROLLUP_SUMS),
)

# Holds against accounts' available balances (0005). A reservation is
# mutable only in its state: OPEN -> CAPTURED | RELEASED | EXPIRED, once.
reservations = Table(
    "reservations",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("reservation_id", String(32), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("request_credits", BigInteger, nullable=False),
    Column("model", String(128), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("api_key_id", String(128), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("price_id", String(200), nullable=False),
    Column("price_version", Integer, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Column("expire_time_us", BigInteger, nullable=False),
    Column("resolve_time_us", BigInteger, nullable=True),
    Column("record_id", String(32), nullable=True),
    Index("ix_reservations_open_expiry", "state", "expire_time_us"),
)

# Limits on usage per account, API key and model (0006).
budgets = Table(
    "budgets",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("budget_id", String(64), primary_key=True),
    Column("api_key_id", String(128), nullable=False),  # "" for any key
    Column("model", String(128), nullable=False),  # "" for any model
    Column("period", String(16), nullable=False),  # DAY, MONTH or ROLLING
    Column("rolling_seconds", BigInteger, nullable=False),
    Column("metric", String(16), nullable=False),  # COST, TOKENS or REQUESTS
    Column("limit_value", BigInteger, nullable=False),
    Column("hard", Boolean, nullable=False),
    Column("thresholds_json", Text, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)

# Threshold crossings, written once per threshold and period, for operators to poll.
budget_events = Table(
    "budget_events",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("event_id", String(32), primary_key=True),
    Column("budget_id", String(64), nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("threshold_percent", Integer, nullable=False),
    Column("used_value", BigInteger, nullable=False),
    Column("limit_value", BigInteger, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Index(
        "ix_budget_events_once",
        "account_id",
        "budget_id",
        "period_start_us",
        "threshold_percent",
        unique=True,
    ),
    Index("ix_budget_events_time", "create_time_us", "event_id"),
)

# Tables that may only grow: the migration installs triggers refusing UPDATE
# and DELETE on them.
APPEND_ONLY_TABLES = ("ledger_transactions", "ledger_entries", "usage_records")

__all__ = [
    "APPEND_ONLY_TABLES",
    "accounts",
    "api_keys",
    "api_tokens",
    "budget_events",
    "budgets",
    "idempotency_keys",
    "ledger_entries",
    "ledger_transactions",
    "metadata",
    "prices",
    "reservations",
    "revisions",
    "usage_records",
    "usage_rollups",
    "usage_rollups_global",
]

# 0007: how a call without usage is recorded and charged, per (account, provider, model).
missing_usage_policies = Table(
    "missing_usage_policies",
    metadata,
    Column("account_id", String(128), primary_key=True),  # "" for any account
    Column("provider", String(64), primary_key=True),  # "" for any provider
    Column("model", String(128), primary_key=True),  # "" for any model
    Column("estimate_disabled", Boolean, nullable=False),
    Column("fallback", String(16), nullable=False),  # NONE, FLAT_FEE or RESERVATION
    Column("flat_fee_nanos", BigInteger, nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)
