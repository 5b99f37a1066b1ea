"""Rate limits: token bucket math on a fake clock, LRU-bounded callers, call costs,
caller keys, the RESOURCE_EXHAUSTED status and the METERING_RATE_LIMIT_* settings."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, error_details_pb2

from metering.api.auth import CALLER
from metering.api.errors import to_status
from metering.api.ratelimit import (
    RULES,
    Limit,
    RateLimiter,
    TokenBucket,
    caller_key,
    peer_host,
    summary_cost,
)
from metering.config import ConfigError, load_settings
from metering.domain.auth import Caller, Role
from metering.domain.errors import ResourceExhausted
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_then_refuses_with_the_time_to_refill() -> None:
    bucket = TokenBucket(Limit(per_second=2, burst=3), now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1, 0.0) == pytest.approx(0.5)  # one token at 2/s
    assert bucket.take(1, 0.25) == pytest.approx(0.25)  # half a token came in
    assert bucket.take(1, 0.5) == 0.0
    assert bucket.tokens == pytest.approx(0.0)


def test_a_refused_take_takes_nothing() -> None:
    bucket = TokenBucket(Limit(per_second=1, burst=2), now=0.0)
    assert bucket.take(2, 0.0) == 0.0
    assert bucket.take(1, 0.5) == pytest.approx(0.5)
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.take(1, 1.0) == 0.0


def test_refill_stops_at_the_burst() -> None:
    bucket = TokenBucket(Limit(per_second=10, burst=5), now=0.0)
    assert bucket.take(5, 0.0) == 0.0
    bucket.take(0, 3600.0)
    assert bucket.tokens == pytest.approx(5.0)
    assert [bucket.take(1, 3600.0) for _ in range(6)][-1] == pytest.approx(0.1)


def test_a_cost_above_the_burst_costs_a_full_bucket() -> None:
    bucket = TokenBucket(Limit(per_second=1, burst=2), now=0.0)
    assert bucket.take(13, 0.0) == 0.0  # a full bucket passes it
    assert bucket.take(13, 0.0) == pytest.approx(2.0)  # then it waits for a full bucket again
    assert bucket.take(13, 2.0) == 0.0


def test_a_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(Limit(per_second=1, burst=1), now=10.0)
    assert bucket.take(1, 10.0) == 0.0
    assert bucket.take(1, 5.0) == pytest.approx(1.0)
    assert bucket.take(1, 11.0) == 0.0


def test_fractional_rates() -> None:
    bucket = TokenBucket(Limit(per_second=0.2, burst=1), now=0.0)
    assert bucket.take(1, 0.0) == 0.0
    assert bucket.take(1, 1.0) == pytest.approx(4.0)


def test_callers_and_groups_have_their_own_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        {"summary": Limit(1, 2), "estimate": Limit(1, 1)}, max_callers=10, clock=clock
    )
    assert limiter.acquire("a", "summary", 1) == 0.0
    assert limiter.acquire("a", "summary", 1) == 0.0
    assert limiter.acquire("a", "summary", 1) == pytest.approx(1.0)
    assert limiter.acquire("b", "summary", 1) == 0.0  # another caller
    assert limiter.acquire("a", "estimate", 1) == 0.0  # another group
    clock.now += 1.0
    assert limiter.acquire("a", "summary", 1) == 0.0


def test_unlimited_groups_and_free_calls_always_pass() -> None:
    limiter = RateLimiter({"summary": Limit(0, 1), "estimate": Limit(1, 1)}, clock=FakeClock())
    assert not limiter.limited("summary") and limiter.limited("estimate")
    assert all(limiter.acquire("a", "summary", 5) == 0.0 for _ in range(100))
    assert limiter.acquire("a", "import", 1) == 0.0  # a group without a limit
    assert all(limiter.acquire("a", "estimate", 0) == 0.0 for _ in range(100))
    assert limiter.tracked("summary") == 0 and limiter.tracked("estimate") == 0


def test_callers_are_bounded_least_recently_seen_first() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"summary": Limit(1, 1)}, max_callers=2, clock=clock)
    limiter.acquire("a", "summary", 1)
    limiter.acquire("b", "summary", 1)
    assert limiter.acquire("a", "summary", 1) > 0  # a is now the most recent
    limiter.acquire("c", "summary", 1)  # evicts b
    assert limiter.tracked("summary") == 2
    assert limiter.acquire("a", "summary", 1) > 0  # still tracked: still empty
    assert limiter.acquire("b", "summary", 1) == 0.0  # forgotten: a full bucket again
    for n in range(1000):
        limiter.acquire(f"caller-{n}", "summary", 1)
    assert limiter.tracked("summary") == 2
    with pytest.raises(ValueError):
        RateLimiter({}, max_callers=0)


def _summary(days: float | None) -> pb.UsageSummaryRequest:
    request = pb.UsageSummaryRequest()
    if days is not None:
        start = timestamp_pb2.Timestamp(seconds=1_767_225_600)
        request.start_time.CopyFrom(start)
        request.end_time.CopyFrom(
            timestamp_pb2.Timestamp(seconds=start.seconds + int(days * 86_400))
        )
    return request


@pytest.mark.parametrize(
    ("days", "cost"),
    [
        (None, 1),
        (-1, 1),
        (0, 1),
        (0.5, 1),
        (1, 1),
        (31, 1),
        (31.5, 2),
        (62, 2),
        (365, 12),
        (400, 13),
    ],
)
def test_summary_costs_a_token_per_31_days(days: float | None, cost: int) -> None:
    assert summary_cost(_summary(days)) == cost


def test_a_malformed_timestamp_is_priced_not_refused() -> None:
    request = _summary(62)
    request.start_time.nanos = 1_000_000_000  # invalid: the servicer refuses it
    assert summary_cost(request) == 2


def test_method_costs() -> None:
    estimate = "/metering.v1.MeteringService/EstimateTokens"
    authorize = "/metering.v1.MeteringService/AuthorizeUsage"
    imports = "/metering.v1.MeteringAdminService/ImportPrices"
    assert RULES[estimate][0] == "estimate"
    assert RULES[estimate][1](pb.EstimateTokensRequest(text="hi")) == 1
    assert RULES[authorize][0] == "estimate"
    assert RULES[authorize][1](pb.AuthorizeUsageRequest(request_json=b"{}")) == 1
    assert RULES[authorize][1](pb.AuthorizeUsageRequest(input_tokens=5)) == 0
    assert RULES[imports][0] == "import"
    assert RULES[imports][1](admin_pb.ImportPricesRequest(content=b"{}")) == 1
    assert "/metering.v1.MeteringService/RecordUsage" not in RULES


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:53211", "10.0.0.7"),
        ("ipv6:[::1]:53211", "::1"),
        ("ipv6:%5B2001:db8::5%5D:443", "2001:db8::5"),
        ("unix:/tmp/metering.sock", "unix:/tmp/metering.sock"),
        ("", "unknown"),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


class _Context:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"


def test_the_caller_is_the_token_else_the_peer_address() -> None:
    assert caller_key(_Context()) == "peer:127.0.0.1"  # type: ignore[arg-type]
    token = CALLER.set(Caller("0123456789ab", Role.READER))
    try:
        assert caller_key(_Context()) == "token:0123456789ab"  # type: ignore[arg-type]
    finally:
        CALLER.reset(token)


def test_resource_exhausted_carries_rate_limited_and_a_retry_delay() -> None:
    status = to_status(ResourceExhausted("RATE_LIMITED", "slow down", 0.2501, {"group": "x"}))
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "RATE_LIMITED"
    assert info.metadata["group"] == "x"
    assert status.details[1].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 251  # rounded up, never too early
    tiny = to_status(ResourceExhausted("RATE_LIMITED", "slow down", 0.0))
    assert tiny.details[1].Unpack(retry) and retry.retry_delay.ToMilliseconds() == 1


def test_rate_limit_settings() -> None:
    settings = load_settings({})
    assert (settings.rate_limit_estimate_per_second, settings.rate_limit_estimate_burst) == (
        200.0,
        400,
    )
    assert (settings.rate_limit_summary_per_second, settings.rate_limit_summary_burst) == (20.0, 40)
    assert settings.rate_limit_max_callers == 10_000
    custom = load_settings(
        {
            "METERING_RATE_LIMIT_SUMMARY_PER_SECOND": "0.5",
            "METERING_RATE_LIMIT_ESTIMATE_PER_SECOND": "0",
            "METERING_RATE_LIMIT_IMPORT_BURST": "7",
            "METERING_RATE_LIMIT_MAX_CALLERS": "50",
        }
    )
    assert (custom.rate_limit_summary_per_second, custom.rate_limit_summary_burst) == (0.5, 1)
    assert custom.rate_limit_estimate_per_second == 0.0
    assert custom.rate_limit_import_burst == 7
    assert custom.rate_limit_max_callers == 50


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METERING_RATE_LIMIT_SUMMARY_PER_SECOND", "fast"),
        ("METERING_RATE_LIMIT_SUMMARY_PER_SECOND", "-1"),
        ("METERING_RATE_LIMIT_ESTIMATE_PER_SECOND", "nan"),
        ("METERING_RATE_LIMIT_ESTIMATE_PER_SECOND", "inf"),
        ("METERING_RATE_LIMIT_SUMMARY_BURST", "0"),
        ("METERING_RATE_LIMIT_IMPORT_BURST", "1.5"),
        ("METERING_RATE_LIMIT_MAX_CALLERS", "0"),
    ],
)
def test_bad_rate_limit_settings_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert name in message and "\n" not in message
