"""Conversion between protobuf messages and service-layer values."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from metering.domain.accounts import BillingMode
from metering.domain.errors import Violations
from metering.domain.money import AMOUNT_UNITS_MAX, Money, units_nanos_are_consistent
from metering.domain.summary import Aggregate, Granularity, GroupKey
from metering.domain.usage import TokenUsage, UsageSource
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2

_SOURCES: dict[UsageSource, types_pb2.UsageSource] = {
    UsageSource.REPORTED: types_pb2.USAGE_SOURCE_REPORTED,
    UsageSource.ESTIMATED: types_pb2.USAGE_SOURCE_ESTIMATED,
    UsageSource.MISSING: types_pb2.USAGE_SOURCE_MISSING,
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


def source_pb(source: UsageSource) -> types_pb2.UsageSource:
    return _SOURCES[source]


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
    )
    for key, value in zip(group_by, row.keys, strict=True):
        if key is GroupKey.USAGE_SOURCE:
            message.usage_source = _SOURCES_BY_NAME.get(value, types_pb2.USAGE_SOURCE_UNSPECIFIED)
        else:
            setattr(message, key.value, value)
    return message
