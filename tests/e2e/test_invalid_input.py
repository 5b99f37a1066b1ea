"""Invalid input over real gRPC: the right status, reason and field, and nothing written.

Every case runs against a fresh account on both backends. For each one the
call must fail with the expected status code and ErrorInfo reason; an
INVALID_ARGUMENT must name exactly the offending field in its BadRequest; and
no table may gain or lose a row. The ledger is verified after each case.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2
from tests.e2e.conftest import Live
from tests.support.grpc_errors import details_of

TIMEOUT = 10
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

Call = Callable[[Live, str], object]


# Building requests -------------------------------------------------------------


@dataclass(frozen=True)
class _Per:
    """A request field computed at call time from the case's fresh account id."""

    make: Callable[[str], Any]


_ACCOUNT = _Per(lambda account: account)


def _fields(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any], account: str
) -> dict[str, Any]:
    """Merge overrides into defaults; resolve per-call values; None leaves a field unset."""
    out: dict[str, Any] = {}
    for name, value in {**defaults, **overrides}.items():
        resolved = value.make(account) if isinstance(value, _Per) else value
        if resolved is not None:
            out[name] = resolved
    return out


def _ts(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    return ts


def _from_now(seconds: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    ts.seconds += seconds
    return ts


def _raw_ts(seconds: int, nanos: int) -> timestamp_pb2.Timestamp:
    """A Timestamp as a careless client may send it, outside the protobuf spec."""
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _usage(**counts: int) -> types_pb2.TokenUsage:
    return types_pb2.TokenUsage(**counts)


def _usd(units: int = 0, nanos: int = 0, currency_code: str = "USD") -> types_pb2.Money:
    return types_pb2.Money(currency_code=currency_code, units=units, nanos=nanos)


def _token(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def record(**overrides: Any) -> Call:
    """RecordUsage: valid unless overridden."""
    defaults = {
        "account_id": _ACCOUNT,
        "request_id": "req-1",
        "model": "gpt-4o-mini",
        "usage": _usage(input_tokens=100, output_tokens=10),
    }

    def call(live: Live, account: str) -> object:
        request = pb.RecordUsageRequest(**_fields(defaults, overrides, account))
        return live.metering.RecordUsage(request, timeout=TIMEOUT)

    return call


def grant(**overrides: Any) -> Call:
    """GrantCredits: valid unless overridden."""
    defaults = {"account_id": _ACCOUNT, "request_id": "grant-1", "amount": _usd(units=1)}

    def call(live: Live, account: str) -> object:
        request = admin_pb.GrantCreditsRequest(**_fields(defaults, overrides, account))
        return live.admin.GrantCredits(request, timeout=TIMEOUT)

    return call


def create(**overrides: Any) -> Call:
    """CreateAccount: a new, valid account unless overridden."""
    defaults = {"account_id": _Per(lambda account: f"{account}-new"), "currency_code": "USD"}

    def call(live: Live, account: str) -> object:
        request = admin_pb.CreateAccountRequest(**_fields(defaults, overrides, account))
        return live.admin.CreateAccount(request, timeout=TIMEOUT)

    return call


def balance(**overrides: Any) -> Call:
    """GetBalance: valid unless overridden."""
    defaults = {"account_id": _ACCOUNT}

    def call(live: Live, account: str) -> object:
        request = pb.GetBalanceRequest(**_fields(defaults, overrides, account))
        return live.metering.GetBalance(request, timeout=TIMEOUT)

    return call


def summary(**overrides: Any) -> Call:
    """UsageSummary over the day around now: valid unless overridden."""
    defaults = {
        "account_id": _ACCOUNT,
        "start_time": _Per(lambda _: _from_now(-86_400)),
        "end_time": _Per(lambda _: _from_now(86_400)),
    }

    def call(live: Live, account: str) -> object:
        request = pb.UsageSummaryRequest(**_fields(defaults, overrides, account))
        return live.metering.UsageSummary(request, timeout=TIMEOUT)

    return call


def estimate(**overrides: Any) -> Call:
    """EstimateTokens: valid unless overridden."""
    defaults = {"model": "gpt-4o-mini", "text": "Hello, world"}

    def call(live: Live, account: str) -> object:
        request = pb.EstimateTokensRequest(**_fields(defaults, overrides, account))
        return live.metering.EstimateTokens(request, timeout=TIMEOUT)

    return call


def _prior_grant(request_id: str) -> Callable[[Live, str], None]:
    def prepare(live: Live, account: str) -> None:
        live.admin.GrantCredits(
            admin_pb.GrantCreditsRequest(account_id=account, request_id=request_id, amount=_usd(1)),
            timeout=TIMEOUT,
        )

    return prepare


def _prior_usage(request_id: str) -> Callable[[Live, str], None]:
    def prepare(live: Live, account: str) -> None:
        live.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id=request_id,
                model="cheap-model",
                usage=_usage(input_tokens=10),
            ),
            timeout=TIMEOUT,
        )

    return prepare


# The cases -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    call: Call
    code: grpc.StatusCode
    reason: str
    # The one BadRequest field violation expected (INVALID_ARGUMENT only).
    field: str | None = None
    # Keyword arguments of Live.new_account for the case's fresh account.
    account: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Valid writes made before the snapshot of row counts (e.g. for conflicts).
    prepare: Callable[[Live, str], None] | None = None


def invalid(case_id: str, call: Call, field_path: str, **kwargs: Any) -> Case:
    return Case(case_id, call, INVALID, "INVALID_ARGUMENT", field_path, **kwargs)


def failed(case_id: str, call: Call, code: grpc.StatusCode, reason: str, **kwargs: Any) -> Case:
    return Case(case_id, call, code, reason, None, **kwargs)


LONG_ID = "a" * 129

RECORD_CASES = [
    # Token counts: range and nesting.
    invalid(
        "record-negative-input-tokens", record(usage=_usage(input_tokens=-1)), "usage.input_tokens"
    ),
    invalid(
        "record-negative-reasoning-tokens",
        record(usage=_usage(output_tokens=10, reasoning_tokens=-5)),
        "usage.reasoning_tokens",
    ),
    invalid(
        "record-absurd-input-tokens",
        record(usage=_usage(input_tokens=100_000_001)),
        "usage.input_tokens",
    ),
    invalid(
        "record-int64-max-output-tokens",
        record(usage=_usage(output_tokens=2**63 - 1)),
        "usage.output_tokens",
    ),
    invalid(
        "record-cache-read-plus-write-exceeds-input",
        record(usage=_usage(input_tokens=100, cache_read_tokens=60, cache_write_tokens=50)),
        "usage.cache_read_tokens",
    ),
    invalid(
        "record-cache-write-1h-exceeds-cache-write",
        record(usage=_usage(input_tokens=100, cache_write_tokens=10, cache_write_1h_tokens=11)),
        "usage.cache_write_1h_tokens",
    ),
    invalid(
        "record-reasoning-exceeds-output",
        record(usage=_usage(output_tokens=10, reasoning_tokens=11)),
        "usage.reasoning_tokens",
    ),
    # account_id.
    invalid("record-empty-account-id", record(account_id=""), "account_id"),
    invalid("record-account-id-129-chars", record(account_id=LONG_ID), "account_id"),
    invalid("record-account-id-space", record(account_id="acct 1"), "account_id"),
    invalid("record-account-id-non-ascii", record(account_id="kundé"), "account_id"),
    invalid(
        "record-account-id-trailing-newline",
        record(account_id=_Per(lambda account: account + "\n")),
        "account_id",
    ),
    # request_id.
    invalid("record-empty-request-id", record(request_id=""), "request_id"),
    invalid("record-request-id-129-chars", record(request_id="r" * 129), "request_id"),
    invalid("record-request-id-non-ascii", record(request_id="réq-1"), "request_id"),
    invalid("record-request-id-control-char", record(request_id="req\x07"), "request_id"),
    invalid("record-request-id-newline", record(request_id="req-1\n"), "request_id"),
    # model and provider.
    invalid("record-empty-model", record(model=""), "model"),
    invalid("record-blank-model", record(model="   "), "model"),
    invalid("record-model-129-chars", record(model="m" * 129), "model"),
    invalid("record-model-control-char", record(model="gpt-4o-mini\n"), "model"),
    invalid("record-provider-bad-chars", record(provider="open ai!"), "provider"),
    invalid("record-provider-65-chars", record(provider="p" * 65), "provider"),
    invalid("record-provider-trailing-newline", record(provider="openai\n"), "provider"),
    # Grouping names.
    invalid("record-api-key-id-129-chars", record(api_key_id="k" * 129), "api_key_id"),
    invalid("record-service-nul-char", record(service="svc\x00"), "service"),
    # Labels.
    invalid(
        "record-17-labels",
        record(labels={f"k{index}": "v" for index in range(17)}),
        "labels",
    ),
    invalid("record-label-key-upper-case", record(labels={"Env": "prod"}), "labels['Env']"),
    invalid("record-label-key-empty", record(labels={"": "prod"}), "labels['']"),
    invalid("record-label-key-65-chars", record(labels={"k" * 65: "v"}), f"labels['{'k' * 64}']"),
    invalid(
        "record-label-key-trailing-newline",
        record(labels={"env\n": "prod"}),
        "labels['env\\n']",
    ),
    invalid("record-label-value-257-chars", record(labels={"env": "x" * 257}), "labels['env']"),
    invalid("record-label-value-control-char", record(labels={"env": "a\tb"}), "labels['env']"),
    # event_time.
    invalid(
        "record-event-time-before-2000",
        record(event_time=_ts("1999-12-31T23:59:59Z")),
        "event_time",
    ),
    invalid("record-event-time-epoch", record(event_time=_raw_ts(0, 0)), "event_time"),
    invalid(
        "record-event-time-25h-in-future",
        record(event_time=_Per(lambda _: _from_now(25 * 3600))),
        "event_time",
    ),
    invalid(
        "record-event-time-nanos-1e9",
        record(event_time=_raw_ts(1_767_225_600, 1_000_000_000)),
        "event_time",
    ),
    invalid(
        "record-event-time-negative-nanos",
        record(event_time=_raw_ts(1_767_225_600, -1)),
        "event_time",
    ),
    invalid(
        "record-event-time-after-year-9999",
        record(event_time=_raw_ts(253_402_300_800, 0)),
        "event_time",
    ),
    # Valid requests the system cannot serve.
    failed(
        "record-unknown-account",
        record(account_id=_Per(lambda account: account + "-missing")),
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    ),
    failed("record-system-account", record(account_id="@revenue"), NOT_FOUND, "ACCOUNT_NOT_FOUND"),
    failed(
        "record-before-the-model-had-a-price",
        record(event_time=_ts("2001-01-01T00:00:00Z")),
        FAILED_PRECONDITION,
        "PRICE_NOT_FOUND",
    ),
    failed(
        "record-no-price-in-account-currency",
        record(),
        FAILED_PRECONDITION,
        "PRICE_NOT_FOUND",
        account={"currency_code": "EUR"},
    ),
    failed(
        "record-request-id-already-used-by-grant",
        record(request_id="shared-key"),
        ALREADY_EXISTS,
        "REQUEST_ID_CONFLICT",
        prepare=_prior_grant("shared-key"),
    ),
]

GRANT_CASES = [
    invalid("grant-empty-account-id", grant(account_id=""), "account_id"),
    invalid("grant-account-id-forbidden-chars", grant(account_id="acct#1"), "account_id"),
    invalid("grant-empty-request-id", grant(request_id=""), "request_id"),
    invalid("grant-request-id-non-ascii", grant(request_id="grant-€"), "request_id"),
    invalid("grant-nothing", grant(amount=None), "amount"),
    invalid("grant-zero-amount-zero-credits", grant(amount=_usd(0), request_credits=0), "amount"),
    invalid("grant-negative-amount", grant(amount=_usd(units=-5)), "amount"),
    invalid("grant-negative-nanos-only", grant(amount=_usd(nanos=-1)), "amount"),
    invalid("grant-money-mixed-signs", grant(amount=_usd(units=1, nanos=-1)), "amount"),
    invalid(
        "grant-money-negative-units-positive-nanos",
        grant(amount=_usd(units=-1, nanos=5)),
        "amount",
    ),
    invalid("grant-money-nanos-1e9", grant(amount=_usd(units=0, nanos=1_000_000_000)), "amount"),
    invalid("grant-amount-over-1e9-units", grant(amount=_usd(units=10**9 + 1)), "amount"),
    invalid("grant-amount-int64-max-units", grant(amount=_usd(units=2**63 - 1)), "amount"),
    invalid(
        "grant-amount-without-currency",
        grant(amount=_usd(units=1, currency_code="")),
        "amount.currency_code",
    ),
    invalid(
        "grant-amount-lower-case-currency",
        grant(amount=_usd(units=1, currency_code="usd")),
        "amount.currency_code",
    ),
    invalid(
        "grant-amount-currency-trailing-newline",
        grant(amount=_usd(units=1, currency_code="USD\n")),
        "amount.currency_code",
    ),
    invalid(
        "grant-negative-request-credits",
        grant(amount=None, request_credits=-1),
        "request_credits",
    ),
    invalid(
        "grant-request-credits-over-1e9",
        grant(amount=None, request_credits=10**9 + 1),
        "request_credits",
    ),
    invalid("grant-reason-257-chars", grant(reason="r" * 257), "reason"),
    invalid("grant-reason-control-char", grant(reason="invoice\x1b[31m"), "reason"),
    failed(
        "grant-unknown-account",
        grant(account_id=_Per(lambda account: account + "-missing")),
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    ),
    failed("grant-system-account", grant(account_id="@grants"), NOT_FOUND, "ACCOUNT_NOT_FOUND"),
    failed(
        "grant-currency-mismatch",
        grant(amount=_usd(units=1, currency_code="EUR")),
        FAILED_PRECONDITION,
        "CURRENCY_MISMATCH",
    ),
    failed(
        "grant-request-id-already-used-by-usage",
        grant(request_id="shared-key"),
        ALREADY_EXISTS,
        "REQUEST_ID_CONFLICT",
        account={"units": 1},
        prepare=_prior_usage("shared-key"),
    ),
]

CREATE_CASES = [
    invalid("create-empty-account-id", create(account_id=""), "account_id"),
    invalid("create-account-id-129-chars", create(account_id=LONG_ID), "account_id"),
    invalid("create-account-id-forbidden-chars", create(account_id="acct#1"), "account_id"),
    invalid("create-account-id-space", create(account_id="acct 1"), "account_id"),
    invalid(
        "create-account-id-trailing-newline",
        create(account_id=_Per(lambda account: f"{account}-nl\n")),
        "account_id",
    ),
    invalid(
        "create-account-id-reserved-at-prefix",
        create(account_id=_Per(lambda account: "@" + account)),
        "account_id",
    ),
    invalid("create-lower-case-currency", create(currency_code="usd"), "currency_code"),
    invalid("create-numeric-currency", create(currency_code="840"), "currency_code"),
    invalid("create-four-letter-currency", create(currency_code="USDT"), "currency_code"),
    invalid("create-currency-trailing-newline", create(currency_code="EUR\n"), "currency_code"),
    invalid("create-unknown-billing-mode", create(billing_mode=99), "billing_mode"),
    failed(
        "create-duplicate-account",
        create(account_id=_ACCOUNT),
        ALREADY_EXISTS,
        "ACCOUNT_ALREADY_EXISTS",
    ),
]

BALANCE_CASES = [
    invalid("balance-empty-account-id", balance(account_id=""), "account_id"),
    invalid("balance-account-id-space", balance(account_id="acct 1"), "account_id"),
    invalid("balance-account-id-129-chars", balance(account_id=LONG_ID), "account_id"),
    failed(
        "balance-unknown-account",
        balance(account_id=_Per(lambda account: account + "-missing")),
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    ),
    failed("balance-system-account", balance(account_id="@grants"), NOT_FOUND, "ACCOUNT_NOT_FOUND"),
]

SUMMARY_CASES = [
    invalid("summary-missing-start", summary(start_time=None), "start_time"),
    invalid("summary-missing-end", summary(end_time=None), "end_time"),
    invalid(
        "summary-start-before-2000",
        summary(start_time=_ts("1999-06-01T00:00:00Z"), end_time=_ts("2000-06-01T00:00:00Z")),
        "start_time",
    ),
    invalid(
        "summary-inverted-range",
        summary(start_time=_ts("2026-03-02T00:00:00Z"), end_time=_ts("2026-03-01T00:00:00Z")),
        "end_time",
    ),
    invalid(
        "summary-empty-range",
        summary(start_time=_ts("2026-03-01T00:00:00Z"), end_time=_ts("2026-03-01T00:00:00Z")),
        "end_time",
    ),
    invalid(
        "summary-range-over-400-days",
        summary(start_time=_ts("2025-01-01T00:00:00Z"), end_time=_ts("2026-02-05T00:00:01Z")),
        "end_time",
    ),
    invalid(
        "summary-start-nanos-1e9",
        summary(start_time=_raw_ts(1_767_225_600, 1_000_000_000)),
        "start_time",
    ),
    invalid("summary-end-negative-nanos", summary(end_time=_raw_ts(1_767_225_600, -1)), "end_time"),
    invalid("summary-unknown-time-zone", summary(time_zone="Mars/Olympus"), "time_zone"),
    invalid("summary-time-zone-path-traversal", summary(time_zone="../../etc/passwd"), "time_zone"),
    invalid("summary-time-zone-absolute-path", summary(time_zone="/etc/localtime"), "time_zone"),
    invalid("summary-time-zone-region-directory", summary(time_zone="Europe"), "time_zone"),
    invalid("summary-time-zone-65-chars", summary(time_zone="Z" * 65), "time_zone"),
    invalid(
        "summary-duplicate-group-by",
        summary(group_by=[pb.GROUP_BY_MODEL, pb.GROUP_BY_API_KEY, pb.GROUP_BY_MODEL]),
        "group_by",
    ),
    invalid("summary-unknown-group-by", summary(group_by=[99]), "group_by[0]"),
    invalid("summary-unknown-granularity", summary(granularity=99), "granularity"),
    invalid("summary-page-size-1001", summary(page_size=1001), "page_size"),
    invalid("summary-negative-page-size", summary(page_size=-1), "page_size"),
    invalid("summary-garbage-page-token", summary(page_token="not a token!"), "page_token"),
    invalid("summary-non-ascii-page-token", summary(page_token="tökén"), "page_token"),
    invalid(
        "summary-forged-page-token",
        summary(page_token=_token({"o": 1, "f": "0" * 16})),
        "page_token",
    ),
    invalid("summary-page-token-not-an-object", summary(page_token=_token([1, 2])), "page_token"),
    invalid("summary-page-token-300-chars", summary(page_token="A" * 300), "page_token"),
    invalid("summary-lower-case-currency", summary(currency_code="usd"), "currency_code"),
    invalid(
        "summary-currency-trailing-newline",
        summary(currency_code="USD\n"),
        "currency_code",
    ),
    invalid("summary-bad-account-id", summary(account_id="acct 1"), "account_id"),
    failed(
        "summary-unknown-account",
        summary(account_id=_Per(lambda account: account + "-missing")),
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    ),
]

ESTIMATE_CASES = [
    invalid("estimate-text-1000001-chars", estimate(text="x" * 1_000_001), "text"),
    invalid(
        "estimate-completion-1000001-chars",
        estimate(completion_text="y" * 1_000_001),
        "completion_text",
    ),
    invalid(
        "estimate-negative-max-output-tokens", estimate(max_output_tokens=-1), "max_output_tokens"
    ),
    invalid(
        "estimate-absurd-max-output-tokens",
        estimate(max_output_tokens=100_000_001),
        "max_output_tokens",
    ),
    invalid("estimate-empty-model", estimate(model=""), "model"),
    invalid("estimate-model-129-chars", estimate(model="m" * 129), "model"),
    invalid("estimate-bad-provider", estimate(provider="open ai!"), "provider"),
    invalid("estimate-bad-account-id", estimate(account_id="acct 1"), "account_id"),
    failed(
        "estimate-unknown-account",
        estimate(account_id=_Per(lambda account: account + "-missing")),
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    ),
]

CASES = [
    *RECORD_CASES,
    *GRANT_CASES,
    *CREATE_CASES,
    *BALANCE_CASES,
    *SUMMARY_CASES,
    *ESTIMATE_CASES,
]


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_input_is_rejected_and_writes_nothing(verified: Live, case: Case) -> None:
    account = verified.new_account(**case.account)
    if case.prepare is not None:
        case.prepare(verified, account)
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        case.call(verified, account)
    error = details_of(caught.value)
    assert (error.code, error.reason) == (case.code, case.reason), error.message
    if case.code == INVALID:
        assert error.fields == [case.field], error.message
    else:
        assert error.fields == [], error.message
    assert verified.row_counts() == before


# Boundaries that must be accepted -------------------------------------------------


def test_all_violations_of_a_request_are_reported_at_once(verified: Live) -> None:
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id="",
                request_id="",
                model="",
                usage=_usage(input_tokens=-1, output_tokens=100_000_001),
            ),
            timeout=TIMEOUT,
        )
    error = details_of(caught.value)
    assert (error.code, error.reason) == (INVALID, "INVALID_ARGUMENT")
    assert sorted(error.fields) == sorted(
        ["account_id", "request_id", "model", "usage.input_tokens", "usage.output_tokens"]
    )
    assert verified.row_counts() == before


def test_page_size_zero_means_the_default(verified: Live) -> None:
    account = verified.new_account()
    response = summary(page_size=0)(verified, account)
    assert isinstance(response, pb.UsageSummaryResponse)
    assert not response.next_page_token


def test_record_usage_at_its_limits_is_accepted(verified: Live) -> None:
    """The largest valid values of RecordUsage's bounded fields go through (the cases add one)."""
    account_id = "a" * 127 + uuid.uuid4().hex[0]
    verified.admin.CreateAccount(
        admin_pb.CreateAccountRequest(account_id=account_id, currency_code="USD"), timeout=TIMEOUT
    )
    response = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account_id,
            request_id="~" * 128,
            model="gpt-4o-mini",
            provider="openai",
            api_key_id="k" * 128,
            service="s" * 128,
            usage=_usage(
                input_tokens=100_000_000,
                output_tokens=100_000_000,
                cache_read_tokens=50_000_000,
                cache_write_tokens=50_000_000,
                cache_write_1h_tokens=50_000_000,
                reasoning_tokens=100_000_000,
            ),
            event_time=_from_now(23 * 3600),
            labels={f"{'k' * 62}{index:02d}": "v" * 256 for index in range(16)},
        ),
        timeout=TIMEOUT,
    )
    assert not response.replayed
    assert response.balance_exhausted


def test_estimate_at_its_limits_is_accepted(verified: Live) -> None:
    response = estimate(max_output_tokens=100_000_000, provider="openai")(verified, "")
    assert isinstance(response, pb.EstimateTokensResponse)
    assert response.HasField("worst_case_cost")


def test_grant_at_the_documented_maximum_is_accepted(verified: Live) -> None:
    """GrantCreditsRequest.amount: 'positive, at most 1e9 units'; request_credits at most 1e9."""
    account = verified.new_account()
    response = verified.admin.GrantCredits(
        admin_pb.GrantCreditsRequest(
            account_id=account,
            request_id="g" * 128,
            amount=_usd(units=10**9),
            request_credits=10**9,
            reason="r" * 256,
        ),
        timeout=TIMEOUT,
    )
    assert (response.balance.units, response.balance.nanos) == (10**9, 0)
    assert response.request_credits == 10**9


def test_grant_beyond_the_balance_range_is_refused_and_writes_nothing(verified: Live) -> None:
    """A balance stays within ±4e9 units, so int64 sums can never overflow on any database."""
    account = verified.new_account()
    for index in range(4):
        verified.admin.GrantCredits(
            admin_pb.GrantCreditsRequest(
                account_id=account, request_id=f"max-{index}", amount=_usd(units=10**9)
            ),
            timeout=TIMEOUT,
        )
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.admin.GrantCredits(
            admin_pb.GrantCreditsRequest(
                account_id=account, request_id="one-too-many", amount=_usd(nanos=1)
            ),
            timeout=TIMEOUT,
        )
    error = details_of(caught.value)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "BALANCE_OUT_OF_RANGE",
    )
    assert verified.row_counts() == before
    balance = verified.metering.GetBalance(
        pb.GetBalanceRequest(account_id=account), timeout=TIMEOUT
    )
    assert (balance.balance.units, balance.balance.nanos) == (4 * 10**9, 0)
