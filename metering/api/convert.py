"""Conversion between protobuf messages and service-layer values."""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from metering.domain.accounts import Account, BillingMode, RequestAsset, UnpricedPolicy
from metering.domain.budgets import THRESHOLDS_DEFAULT, Budget, BudgetMetric, BudgetPeriod
from metering.domain.errors import Violations
from metering.domain.exports import ExportTotals, RecordView
from metering.domain.missing import DEFAULT_POLICY, Fallback, MissingUsagePolicy
from metering.domain.money import AMOUNT_UNITS_MAX, Money, units_nanos_are_consistent
from metering.domain.reconcile import Kind
from metering.domain.reservations import ExpiryPolicy, ReservationState
from metering.domain.summary import Aggregate, Granularity, GroupKey
from metering.domain.upstream import UpstreamFormat
from metering.domain.usage import TOKEN_FIELDS, TokenUsage, UsageSource
from metering.service.exports import ExportKind
from metering.service.prices import time_text
from metering.service.reconcile import ReconcileReport
from metering.v1 import admin_service_pb2, prices_pb2, types_pb2
from metering.v1 import metering_service_pb2 as pb

_SOURCES: dict[UsageSource, types_pb2.UsageSource] = {
    UsageSource.REPORTED: types_pb2.USAGE_SOURCE_REPORTED,
    UsageSource.ESTIMATED: types_pb2.USAGE_SOURCE_ESTIMATED,
    UsageSource.MISSING: types_pb2.USAGE_SOURCE_MISSING,
    UsageSource.CORRECTED: types_pb2.USAGE_SOURCE_CORRECTED,
}
_SOURCES_BY_NAME = {source.value: proto for source, proto in _SOURCES.items()}
_MODES: dict[BillingMode, types_pb2.BillingMode] = {
    BillingMode.TOKEN: types_pb2.BILLING_MODE_TOKEN,
    BillingMode.REQUEST: types_pb2.BILLING_MODE_REQUEST,
    BillingMode.HYBRID: types_pb2.BILLING_MODE_HYBRID,
}
_MODES_FROM_PROTO: dict[int, BillingMode] = {proto: mode for mode, proto in _MODES.items()}
_GRANULARITIES: dict[int, Granularity] = {
    pb.GRANULARITY_UNSPECIFIED: Granularity.NONE,
    pb.GRANULARITY_NONE: Granularity.NONE,
    pb.GRANULARITY_HOUR: Granularity.HOUR,
    pb.GRANULARITY_DAY: Granularity.DAY,
    pb.GRANULARITY_MONTH: Granularity.MONTH,
}
_GROUP_KEYS: dict[int, GroupKey] = {
    pb.GROUP_BY_MODEL: GroupKey.MODEL,
    pb.GROUP_BY_PROVIDER: GroupKey.PROVIDER,
    pb.GROUP_BY_API_KEY: GroupKey.API_KEY,
    pb.GROUP_BY_SERVICE: GroupKey.SERVICE,
    pb.GROUP_BY_USAGE_SOURCE: GroupKey.USAGE_SOURCE,
    pb.GROUP_BY_ACCOUNT: GroupKey.ACCOUNT,
}

# Timestamp seconds are bounded by the protobuf spec to years 1-9999.
_TIMESTAMP_SECONDS_MAX = 253_402_300_799


def money_pb(money: Money) -> types_pb2.Money:
    units, nanos = money.units_nanos()
    return types_pb2.Money(currency_code=money.currency_code, units=units, nanos=nanos)


def money_from_pb(v: Violations, field: str, message: types_pb2.Money) -> Money:
    if not units_nanos_are_consistent(message.units, message.nanos):
        v.add(field, "nanos must be within ±999,999,999 and have the sign of units")
    if abs(message.units) > AMOUNT_UNITS_MAX:
        v.add(field, f"amount must be at most {AMOUNT_UNITS_MAX} units")
    return Money.from_units_nanos(message.currency_code, message.units, message.nanos)


def time_us_from_pb(v: Violations, field: str, ts: timestamp_pb2.Timestamp) -> int:
    if not 0 <= ts.nanos < 1_000_000_000 or abs(ts.seconds) > _TIMESTAMP_SECONDS_MAX:
        v.add(field, f"{field} is not a valid timestamp")
        return 0
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def timestamp_pb(time_us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(time_us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def usage_from_pb(message: types_pb2.TokenUsage) -> TokenUsage:
    return TokenUsage(
        input_tokens=message.input_tokens,
        output_tokens=message.output_tokens,
        cache_read_tokens=message.cache_read_tokens,
        cache_write_tokens=message.cache_write_tokens,
        cache_write_1h_tokens=message.cache_write_1h_tokens,
        reasoning_tokens=message.reasoning_tokens,
    )


def usage_pb(usage: TokenUsage) -> types_pb2.TokenUsage:
    return types_pb2.TokenUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


API_FORMATS_BY_NAME: dict[str, types_pb2.ApiFormat] = {
    "OPENAI_CHAT_COMPLETIONS": types_pb2.API_FORMAT_OPENAI_CHAT_COMPLETIONS,
    "OPENAI_RESPONSES": types_pb2.API_FORMAT_OPENAI_RESPONSES,
    "ANTHROPIC_MESSAGES": types_pb2.API_FORMAT_ANTHROPIC_MESSAGES,
    "GEMINI_GENERATE_CONTENT": types_pb2.API_FORMAT_GEMINI_GENERATE_CONTENT,
    "WORKERS_AI": types_pb2.API_FORMAT_WORKERS_AI,
    "DIFY": types_pb2.API_FORMAT_DIFY,
}


_API_FORMAT_NAMES: dict[int, str] = {int(v): k for k, v in API_FORMATS_BY_NAME.items()}


def api_format_name(v: Violations, value: int, field: str = "response_format") -> str:
    """The format's name, "" for UNSPECIFIED (detect)."""
    if value == types_pb2.API_FORMAT_UNSPECIFIED:
        return ""
    name = _API_FORMAT_NAMES.get(value)
    if name is None:
        v.add(field, f"unknown format {value}")
        return ""
    return name


def source_pb(source: UsageSource) -> types_pb2.UsageSource:
    return _SOURCES[source]


_FALLBACKS: dict[Fallback, types_pb2.MissingUsageFallback] = {
    Fallback.NONE: types_pb2.MISSING_USAGE_FALLBACK_NONE,
    Fallback.FLAT_FEE: types_pb2.MISSING_USAGE_FALLBACK_FLAT_FEE,
    Fallback.RESERVATION: types_pb2.MISSING_USAGE_FALLBACK_RESERVATION,
}
_FALLBACKS_FROM_PROTO: dict[int, Fallback] = {
    int(proto): fallback for fallback, proto in _FALLBACKS.items()
}


def fallback_pb(name: str) -> types_pb2.MissingUsageFallback:
    """A Fallback's value ("" for none) as its proto enum."""
    if not name:
        return types_pb2.MISSING_USAGE_FALLBACK_UNSPECIFIED
    return _FALLBACKS[Fallback(name)]


def fallback_from_pb(v: Violations, field: str, value: int) -> Fallback:
    if value == types_pb2.MISSING_USAGE_FALLBACK_UNSPECIFIED:
        return DEFAULT_POLICY.fallback
    fallback = _FALLBACKS_FROM_PROTO.get(value)
    if fallback is None:
        v.add(field, f"unknown fallback {value}")
        return DEFAULT_POLICY.fallback
    return fallback


def missing_policy_pb(policy: MissingUsagePolicy) -> admin_service_pb2.MissingUsagePolicy:
    return admin_service_pb2.MissingUsagePolicy(
        account_id=policy.account_id,
        provider=policy.provider,
        model=policy.model,
        estimate_disabled=policy.estimate_disabled,
        fallback=_FALLBACKS[policy.fallback],
        flat_fee=(
            money_pb(Money(policy.currency_code, policy.flat_fee_nanos))
            if policy.fallback is Fallback.FLAT_FEE
            else None
        ),
    )


def missing_policy_from_pb(
    v: Violations, message: admin_service_pb2.MissingUsagePolicy
) -> MissingUsagePolicy:
    fee = (
        money_from_pb(v, "policy.flat_fee", message.flat_fee)
        if message.HasField("flat_fee")
        else None
    )
    return MissingUsagePolicy(
        account_id=message.account_id,
        provider=message.provider,
        model=message.model,
        estimate_disabled=message.estimate_disabled,
        fallback=fallback_from_pb(v, "policy.fallback", message.fallback),
        flat_fee_nanos=fee.nanos if fee else 0,
        currency_code=fee.currency_code if fee else "USD",
    )


_SOURCES_FROM_PROTO: dict[int, UsageSource] = {
    int(proto): source for source, proto in _SOURCES.items()
}


def sources_from_pb(v: Violations, field: str, values: list[int]) -> tuple[UsageSource, ...]:
    found = []
    for index, value in enumerate(values[:16]):
        source = _SOURCES_FROM_PROTO.get(value)
        if source is None:
            v.add(f"{field}[{index}]", f"unknown usage source {value}")
        else:
            found.append(source)
    if len(values) > 16:
        v.add(field, "at most 16 usage sources")
    return tuple(found)


_UPSTREAM_FORMATS: dict[int, UpstreamFormat] = {
    admin_service_pb2.UPSTREAM_FORMAT_OPENAI_USAGE: UpstreamFormat.OPENAI_USAGE,
    admin_service_pb2.UPSTREAM_FORMAT_OPENAI_COSTS: UpstreamFormat.OPENAI_COSTS,
    admin_service_pb2.UPSTREAM_FORMAT_ANTHROPIC_USAGE: UpstreamFormat.ANTHROPIC_USAGE,
    admin_service_pb2.UPSTREAM_FORMAT_ANTHROPIC_COST: UpstreamFormat.ANTHROPIC_COST,
    admin_service_pb2.UPSTREAM_FORMAT_GENERIC_CSV: UpstreamFormat.GENERIC_CSV,
}
_KINDS: dict[Kind, admin_service_pb2.DiscrepancyKind] = {
    Kind.MATCHED: admin_service_pb2.DISCREPANCY_KIND_MATCHED,
    Kind.LOCAL_ONLY: admin_service_pb2.DISCREPANCY_KIND_LOCAL_ONLY,
    Kind.UPSTREAM_ONLY: admin_service_pb2.DISCREPANCY_KIND_UPSTREAM_ONLY,
    Kind.TOKENS: admin_service_pb2.DISCREPANCY_KIND_TOKENS,
    Kind.COST: admin_service_pb2.DISCREPANCY_KIND_COST,
}


def upstream_format_from_pb(v: Violations, value: int) -> UpstreamFormat | None:
    if value == admin_service_pb2.UPSTREAM_FORMAT_UNSPECIFIED:
        return None
    fmt = _UPSTREAM_FORMATS.get(value)
    if fmt is None:
        v.add("format", f"unknown format {value}")
    return fmt


def reconcile_response_pb(report: ReconcileReport) -> admin_service_pb2.ReconcileResponse:
    lines = []
    for line in report.lines:
        message = admin_service_pb2.Discrepancy(
            kind=_KINDS[line.kind],
            day=line.key.day,
            model=line.model,
            api_key_id=line.key.api_key_id,
            request_id=line.key.request_id,
            account_id=line.account_id,
            applied=line.applied,
            problem=line.problem,
        )
        if line.local is not None:
            message.local_request_count = line.local.request_count or 0
            message.local_usage.CopyFrom(usage_pb(line.local.usage))
            if line.local.cost_nanos is not None and line.local.currency_code:
                message.local_cost.CopyFrom(
                    money_pb(Money(line.local.currency_code, line.local.cost_nanos))
                )
        if line.upstream is not None:
            message.upstream_request_count = line.upstream.request_count or 0
            message.upstream_usage.CopyFrom(usage_pb(line.upstream.usage))
            if line.upstream.cost_nanos is not None and line.upstream.currency_code:
                message.upstream_cost.CopyFrom(
                    money_pb(Money(line.upstream.currency_code, line.upstream.cost_nanos))
                )
        currency = (line.upstream and line.upstream.currency_code) or (
            line.local and line.local.currency_code
        )
        if line.cost_difference_nanos is not None and currency:
            message.cost_difference.CopyFrom(money_pb(Money(currency, line.cost_difference_nanos)))
        lines.append(message)
    return admin_service_pb2.ReconcileResponse(
        import_id=report.import_id,
        discrepancies=lines,
        matched_count=report.matched_count,
        discrepancy_count=report.discrepancy_count,
        applied_count=report.applied_count,
        upstream_row_count=report.upstream_row_count,
    )


def mode_pb(mode: BillingMode) -> types_pb2.BillingMode:
    return _MODES[mode]


def mode_from_pb(v: Violations, value: int) -> BillingMode:
    if value == types_pb2.BILLING_MODE_UNSPECIFIED:
        return BillingMode.TOKEN
    mode: BillingMode | None = _MODES_FROM_PROTO.get(value)
    if mode is None:
        v.add("billing_mode", f"unknown billing_mode {value}")
        return BillingMode.TOKEN
    return mode


def granularity_from_pb(v: Violations, value: int) -> Granularity:
    granularity: Granularity | None = _GRANULARITIES.get(value)
    if granularity is None:
        v.add("granularity", f"unknown granularity {value}")
        return Granularity.NONE
    return granularity


def group_keys_from_pb(v: Violations, values: list[int]) -> tuple[GroupKey, ...]:
    keys: list[GroupKey] = []
    for index, value in enumerate(values):
        key: GroupKey | None = _GROUP_KEYS.get(value)
        if key is None:
            v.add(f"group_by[{index}]", f"unknown group_by dimension {value}")
        else:
            keys.append(key)
    return tuple(keys)


def summary_row_pb(row: Aggregate, group_by: tuple[GroupKey, ...]) -> pb.UsageSummaryRow:
    message = pb.UsageSummaryRow(
        start_time=timestamp_pb(row.start_us),
        request_count=row.request_count,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens,
        cache_write_1h_tokens=row.cache_write_1h_tokens,
        reasoning_tokens=row.reasoning_tokens,
        cost=money_pb(Money(row.currency_code, row.cost_nanos)),
        request_credits=row.request_credits,
        unpriced_request_count=row.unpriced_request_count,
        estimated_request_count=row.estimated_request_count,
        estimated_cost=money_pb(Money(row.currency_code, row.estimated_cost_nanos)),
        missing_request_count=row.missing_request_count,
        missing_cost=money_pb(Money(row.currency_code, row.missing_cost_nanos)),
    )
    for key, value in zip(group_by, row.keys, strict=True):
        if key is GroupKey.USAGE_SOURCE:
            message.usage_source = _SOURCES_BY_NAME.get(value, types_pb2.USAGE_SOURCE_UNSPECIFIED)
        else:
            setattr(message, key.value, value)
    return message


_ENTRY_STRINGS = (
    "price_id",
    "provider",
    "model",
    "account_id",
    "currency_code",
    "input_per_million",
    "output_per_million",
    "cache_read_per_million",
    "cache_write_5m_per_million",
    "cache_write_1h_per_million",
    "reasoning_per_million",
    "request_fee",
    "request_price",
    "batch_discount_percent",
    "source",
    "source_date",
)
_TIER_STRINGS = (
    "input_per_million",
    "output_per_million",
    "cache_read_per_million",
    "cache_write_5m_per_million",
    "cache_write_1h_per_million",
    "reasoning_per_million",
)


def price_entry_to_dict(v: Violations, message: prices_pb2.PriceEntry) -> dict[str, Any]:
    """A PriceEntry as a catalogue entry (the one format prices are stored in)."""
    entry: dict[str, Any] = {
        name: getattr(message, name) for name in _ENTRY_STRINGS if getattr(message, name)
    }
    if message.aliases:
        entry["aliases"] = list(message.aliases)
    for name in ("effective_time", "end_time"):
        if message.HasField(name):
            time_us = time_us_from_pb(v, f"price.{name}", getattr(message, name))
            entry[name] = time_text(time_us)
    if message.HasField("request_credits"):
        entry["request_credits"] = message.request_credits
    if message.retired:
        entry["retired"] = True
    if message.HasField("long_context"):
        tier = message.long_context
        entry["long_context"] = {
            "threshold_input_tokens": tier.threshold_input_tokens,
            **{name: getattr(tier, name) for name in _TIER_STRINGS if getattr(tier, name)},
        }
    return entry


def price_entry_pb(entry: dict[str, Any]) -> prices_pb2.PriceEntry:
    message = prices_pb2.PriceEntry(
        version=int(entry.get("version", 1)),
        aliases=list(entry.get("aliases", [])),
        retired=bool(entry.get("retired", False)),
    )
    for name in _ENTRY_STRINGS:
        if entry.get(name) is not None:
            setattr(message, name, str(entry[name]))
    for name in ("effective_time", "end_time"):
        if entry.get(name):
            getattr(message, name).FromJsonString(entry[name])
    if entry.get("request_credits") is not None:
        message.request_credits = int(entry["request_credits"])
    tier = entry.get("long_context")
    if isinstance(tier, dict):
        message.long_context.CopyFrom(
            prices_pb2.LongContextTier(
                threshold_input_tokens=int(tier.get("threshold_input_tokens", 0)),
                **{name: str(tier[name]) for name in _TIER_STRINGS if tier.get(name) is not None},
            )
        )
    return message


_POLICIES = {
    UnpricedPolicy.REJECT: prices_pb2.UNPRICED_POLICY_REJECT,
    UnpricedPolicy.RECORD: prices_pb2.UNPRICED_POLICY_RECORD,
}
_POLICIES_FROM_PROTO: dict[int, UnpricedPolicy] = {proto: p for p, proto in _POLICIES.items()}
_ASSETS = {
    RequestAsset.CREDITS: prices_pb2.REQUEST_ASSET_CREDITS,
    RequestAsset.MONEY: prices_pb2.REQUEST_ASSET_MONEY,
}
_ASSETS_FROM_PROTO: dict[int, RequestAsset] = {proto: a for a, proto in _ASSETS.items()}


def policy_from_pb(v: Violations, value: int) -> UnpricedPolicy:
    if value == prices_pb2.UNPRICED_POLICY_UNSPECIFIED:
        return UnpricedPolicy.REJECT
    policy = _POLICIES_FROM_PROTO.get(value)
    if policy is None:
        v.add("unpriced_policy", f"unknown unpriced_policy {value}")
        return UnpricedPolicy.REJECT
    return policy


def asset_from_pb(v: Violations, value: int) -> RequestAsset:
    if value == prices_pb2.REQUEST_ASSET_UNSPECIFIED:
        return RequestAsset.CREDITS
    asset = _ASSETS_FROM_PROTO.get(value)
    if asset is None:
        v.add("request_asset", f"unknown request_asset {value}")
        return RequestAsset.CREDITS
    return asset


_EXPIRY: dict[ExpiryPolicy, types_pb2.ReservationExpiryPolicy] = {
    ExpiryPolicy.RELEASE: types_pb2.RESERVATION_EXPIRY_POLICY_RELEASE,
    ExpiryPolicy.CAPTURE: types_pb2.RESERVATION_EXPIRY_POLICY_CAPTURE,
}
_EXPIRY_FROM_PROTO: dict[int, ExpiryPolicy] = {int(v): k for k, v in _EXPIRY.items()}


def reservation_state_pb(state: ReservationState) -> pb.ReservationState:
    return {
        ReservationState.OPEN: pb.RESERVATION_STATE_OPEN,
        ReservationState.CAPTURED: pb.RESERVATION_STATE_CAPTURED,
        ReservationState.RELEASED: pb.RESERVATION_STATE_RELEASED,
        ReservationState.EXPIRED: pb.RESERVATION_STATE_EXPIRED,
    }[state]


def expiry_policy_from_pb(v: Violations, value: int) -> ExpiryPolicy:
    if value == types_pb2.RESERVATION_EXPIRY_POLICY_UNSPECIFIED:
        return ExpiryPolicy.RELEASE
    policy = _EXPIRY_FROM_PROTO.get(value)
    if policy is None:
        v.add("reservation_expiry_policy", f"unknown reservation_expiry_policy {value}")
        return ExpiryPolicy.RELEASE
    return policy


def account_pb(account: Account) -> admin_service_pb2.Account:
    return admin_service_pb2.Account(
        account_id=account.account_id,
        currency_code=account.currency_code,
        billing_mode=mode_pb(account.billing_mode),
        allow_negative_balance=account.allow_negative_balance,
        create_time=timestamp_pb(account.create_time_us),
        unpriced_policy=_POLICIES[account.unpriced_policy],
        price_adjustment_bps=account.price_adjustment_bps,
        request_asset=_ASSETS[account.request_asset],
        default_request_price=money_pb(
            Money(account.currency_code, account.default_request_price_nanos)
        ),
        default_request_credits=account.default_request_credits,
        reservation_expiry_policy=_EXPIRY[account.reservation_expiry_policy],
        time_zone=account.time_zone,
        tenant_id=account.tenant_id or "",
    )


def account_changes_from_pb(
    v: Violations, message: admin_service_pb2.Account, paths: list[str]
) -> dict[str, object]:
    """The settings an UpdateAccount names in its mask, converted."""
    changes: dict[str, object] = {}
    for path in paths:
        if path == "billing_mode":
            changes[path] = mode_from_pb(v, message.billing_mode)
        elif path == "allow_negative_balance":
            changes[path] = message.allow_negative_balance
        elif path == "unpriced_policy":
            changes[path] = policy_from_pb(v, message.unpriced_policy)
        elif path == "price_adjustment_bps":
            changes[path] = message.price_adjustment_bps
        elif path == "request_asset":
            changes[path] = asset_from_pb(v, message.request_asset)
        elif path == "default_request_price":
            price = money_from_pb(v, "account.default_request_price", message.default_request_price)
            changes["default_request_price_nanos"] = price.nanos
        elif path == "default_request_credits":
            changes[path] = message.default_request_credits
        elif path == "time_zone":
            changes[path] = message.time_zone
        elif path == "reservation_expiry_policy":
            changes[path] = expiry_policy_from_pb(v, message.reservation_expiry_policy)
        else:
            v.add("update_mask", f"{path!r} cannot be updated")
    return changes


_PERIODS: dict[BudgetPeriod, int] = {
    BudgetPeriod.DAY: admin_service_pb2.BUDGET_PERIOD_DAY,
    BudgetPeriod.MONTH: admin_service_pb2.BUDGET_PERIOD_MONTH,
    BudgetPeriod.ROLLING: admin_service_pb2.BUDGET_PERIOD_ROLLING,
}
_METRICS: dict[BudgetMetric, int] = {
    BudgetMetric.COST: admin_service_pb2.BUDGET_METRIC_COST,
    BudgetMetric.TOKENS: admin_service_pb2.BUDGET_METRIC_TOKENS,
    BudgetMetric.REQUESTS: admin_service_pb2.BUDGET_METRIC_REQUESTS,
    BudgetMetric.BALANCE_FLOOR: admin_service_pb2.BUDGET_METRIC_BALANCE_FLOOR,
}


def budget_from_pb(v: Violations, message: admin_service_pb2.Budget) -> Budget:
    period = {int(p): k for k, p in _PERIODS.items()}.get(message.period)
    metric = {int(m): k for k, m in _METRICS.items()}.get(message.metric)
    if period is None:
        v.add("budget.period", "period must be DAY, MONTH or ROLLING")
    if metric is None:
        v.add("budget.metric", "metric must be COST, TOKENS or REQUESTS")
    window = message.rolling_window
    if window.nanos or window.seconds < 0:
        v.add("budget.rolling_window", "rolling_window must be whole positive seconds")
    return Budget(
        account_id=message.account_id,
        budget_id=message.budget_id,
        period=period or BudgetPeriod.DAY,
        metric=metric or BudgetMetric.COST,
        limit_value=message.limit,
        hard=message.hard,
        api_key_id=message.api_key_id,
        model=message.model,
        rolling_seconds=window.seconds,
        thresholds=tuple(message.thresholds_percent) or THRESHOLDS_DEFAULT,
    )


def budget_pb(budget: Budget) -> admin_service_pb2.Budget:
    message = admin_service_pb2.Budget(
        account_id=budget.account_id,
        budget_id=budget.budget_id,
        api_key_id=budget.api_key_id,
        model=budget.model,
        period=_PERIODS[budget.period],  # type: ignore[arg-type]
        metric=_METRICS[budget.metric],  # type: ignore[arg-type]
        limit=budget.limit_value,
        hard=budget.hard,
        thresholds_percent=list(budget.thresholds),
    )
    if budget.rolling_seconds:
        message.rolling_window.seconds = budget.rolling_seconds
    return message


def budget_event_pb(event: dict[str, Any]) -> admin_service_pb2.BudgetEvent:
    return admin_service_pb2.BudgetEvent(
        event_id=event["event_id"],
        account_id=event["account_id"],
        budget_id=event["budget_id"],
        period_start_time=timestamp_pb(int(event["period_start_us"])),
        threshold_percent=int(event["threshold_percent"]),
        used=int(event["used_value"]),
        limit=int(event["limit_value"]),
        create_time=timestamp_pb(int(event["create_time_us"])),
    )


_EXPORT_KINDS: dict[int, ExportKind] = {
    admin_service_pb2.EXPORT_KIND_UNSPECIFIED: ExportKind.RECORDS,
    admin_service_pb2.EXPORT_KIND_RECORDS: ExportKind.RECORDS,
    admin_service_pb2.EXPORT_KIND_SUMMARY: ExportKind.SUMMARY,
}


def export_kind_from_pb(v: Violations, value: int) -> ExportKind:
    kind: ExportKind | None = _EXPORT_KINDS.get(value)
    if kind is None:
        v.add("kind", f"unknown kind {value}")
        return ExportKind.RECORDS
    return kind


def record_view_pb(view: RecordView) -> types_pb2.UsageRecordView:
    record = view.record
    return types_pb2.UsageRecordView(
        record_id=record.record_id,
        account_id=record.account_id,
        request_id=record.request_id,
        event_time=timestamp_pb(record.event_time_us),
        record_time=timestamp_pb(record.record_time_us),
        provider=record.provider,
        model=record.model,
        api_key_id=record.api_key_id,
        service=record.service,
        usage_source=source_pb(record.usage_source),
        usage=usage_pb(record.usage),
        cost=money_pb(Money(record.currency_code, record.cost_nanos)),
        request_credits=record.request_credits,
        price_id=record.price_id,
        price_version=record.price_version,
        record_kind=record.record_kind,
        corrects_record_id=record.corrects_record_id or "",
        request_count=record.request_count,
        corrected=view.corrected,
        labels=record.labels,
        streamed=record.streamed,
        unpriced=record.unpriced,
        transaction_id=record.transaction_id,
    )


def export_row_pb(row: Aggregate, group_by: tuple[GroupKey, ...]) -> pb.UsageSummaryRow:
    """A summary row grouped by usage source: its estimated and missing parts are all or
    nothing of it."""
    message = summary_row_pb(row, group_by)
    if message.usage_source == types_pb2.USAGE_SOURCE_ESTIMATED:
        message.estimated_request_count = row.request_count
        message.estimated_cost.CopyFrom(message.cost)
    elif message.usage_source == types_pb2.USAGE_SOURCE_MISSING:
        message.missing_request_count = row.request_count
        message.missing_cost.CopyFrom(message.cost)
    return message


def export_totals_pb(totals: ExportTotals) -> admin_service_pb2.ExportTotals:
    return admin_service_pb2.ExportTotals(
        row_count=totals.row_count,
        request_count=totals.request_count,
        cost=[
            money_pb(Money(currency, nanos))
            for currency, nanos in sorted(totals.cost_nanos.items())
        ],
        request_credits=totals.request_credits,
        usage=types_pb2.TokenUsage(**{name: totals.tokens[name] for name in TOKEN_FIELDS}),
    )
