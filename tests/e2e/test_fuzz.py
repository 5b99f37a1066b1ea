"""Hostile input at every RPC, over real gRPC, on both backends.

Hypothesis builds requests for every method of MeteringService and
MeteringAdminService out of huge strings (up to about a megabyte), control
characters, odd Unicode, extreme int64 values, negative numbers, invalid UTF-8
and deeply nested JSON in the bytes fields, unknown enum numbers, any
Timestamp and Duration, and forged page tokens; and it sends raw garbage bytes
to every method path through a generic channel with identity serializers.

For every call:

- the status is OK (the input happened to be valid) or one of the caller's-fault
  codes; never INTERNAL, UNKNOWN or any other server-side failure;
- a call that failed wrote nothing (no table gained or lost a row);

and after each group the server still answers its health check and its ledger
verifies. A failure message carries the RPC, the input and the server's log.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from metering.api.servicers import MeteringAdminServicer, MeteringServicer
from metering.storage import schema
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import prices_pb2, types_pb2
from tests.e2e.conftest import Live

TIMEOUT = 60
M = TypeVar("M", bound=Message)
CALLERS_FAULT = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
# Tables a failed call must leave alone, beyond the ones Live.row_counts() counts.
EXTRA_TABLES = (
    schema.reservations,
    schema.prices,
    schema.budgets,
    schema.budget_events,
    schema.api_keys,
    schema.revisions,
    schema.usage_rollups,
)

# Accounts every group can aim at, so that some hostile calls get past "not found".
PREPAID = "fuzz-prepaid"
POSTPAID = "fuzz-postpaid"
REQUESTS = "fuzz-requests"
POOL = (PREPAID, POSTPAID, REQUESTS)


# Strategies -------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_EDGES64 = [0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, INT32_MAX, INT32_MIN]
_EDGES64 += [
    10**9,
    10**9 - 1,
    -(10**9),
    10**18,
    -(10**18),
    4 * 10**18,
    100_000_001,
    253_402_300_800,
]
int64s = st.one_of(st.sampled_from(_EDGES64), st.integers(INT64_MIN, INT64_MAX), st.integers(-5, 5))
int32s = st.one_of(
    st.sampled_from([0, 1, -1, INT32_MAX, INT32_MIN, 999_999_999, 1_000_000_000, -999_999_999]),
    st.integers(INT32_MIN, INT32_MAX),
)
enums = st.one_of(st.integers(-3, 10), st.sampled_from([INT32_MAX, INT32_MIN]), int32s)

_SPECIAL = [
    "",
    " ",
    "\x00",
    "\x00abc",
    "\t\r\n\x0b\x0c",
    "\x7f\x80\x9f",
    "\u202e\u200b\u2028\u2029",
    "\ufeff",
    "\ufffd",
    "\U0010ffff",
    "İıßẞǅ",
    "👍🏽👨‍👩‍👧",
    "%s%n%x%p",
    "{0}{1}",
    "'; DROP TABLE accounts; --",
    '" OR 1=1 --',
    "../../../../etc/passwd",
    "/etc/localtime",
    "\\\\?\\C:\\",
    "@revenue",
    "@grants",
    "a" * 64,
    "a" * 65,
    "a" * 128,
    "a" * 129,
    "x" * 257,
    "Europe/Berlin",
    "UTC",
    "posix/UTC",
    "cheap-model",
    "gpt-4o-mini",
    "@cf/test/x",
    "openai",
    "OpenAI",
    "USD",
    "usd",
    "XXX",
    "EUR",
    "NaN",
    "-0",
    "1e309",
    "0.000000000001",
    "99999999999999999999999999999",
    "-1",
    "test/cheap",
    "openai/gpt-4o-mini",
    *POOL,
]
_CHARS = st.characters(codec="utf-8")  # no lone surrogates: protobuf strings cannot carry them
_CONTROL = st.characters(min_codepoint=0, max_codepoint=0x9F)
huge_texts = st.builds(
    lambda piece, times: piece * times,
    st.text(_CHARS, min_size=1, max_size=4),
    st.integers(1_000, 250_000),
)
texts = st.one_of(
    st.sampled_from(_SPECIAL),
    st.text(_CHARS, max_size=40),
    st.text(_CONTROL, max_size=20),
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), max_size=8),
    huge_texts,
)
ids = st.one_of(st.sampled_from(POOL), texts)


def _nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "usage":
        return b'{"usage":' * depth + b"1" + b"}" * depth
    return b'{"a":' * depth + b"{}" + b"}" * depth


nested_json = st.builds(
    _nested, st.sampled_from([64, 1000, 10_000, 100_000]), st.sampled_from(["list", "obj", "usage"])
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        int64s,
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        texts.filter(lambda t: len(t) < 1000),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(_CHARS, max_size=10), inner, max_size=4),
    ),
    max_leaves=12,
)
_USAGE_KEYS = [
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "total_tokens",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
]


@st.composite
def provider_bodies(draw: st.DrawFn) -> bytes:
    """Response or request bodies shaped like a provider's, with hostile values."""
    counts = {
        key: draw(st.one_of(int64s, st.integers(), json_values))
        for key in draw(st.lists(st.sampled_from(_USAGE_KEYS), max_size=6))
    }
    shape = draw(st.sampled_from(["openai", "anthropic", "gemini", "workers", "dify", "request"]))
    body: Any
    if shape == "gemini":
        body = {"usageMetadata": counts}
    elif shape == "workers":
        body = {"result": {"usage": counts}}
    elif shape == "dify":
        body = {"metadata": {"usage": counts}}
    elif shape == "request":
        body = {
            "model": draw(texts.filter(lambda t: len(t) < 200)),
            "messages": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "role": st.sampled_from(["user", "system", "tool", "x"]),
                            "content": json_values,
                        }
                    ),
                    max_size=3,
                )
            ),
            "max_tokens": draw(st.one_of(int64s, json_values)),
            "tools": draw(json_values),
        }
    else:
        body = {"usage": counts, "choices": draw(json_values)}
        if shape == "anthropic":
            body["type"] = draw(st.sampled_from(["message", "message_delta", "message_start"]))
    text = json.dumps(body).encode()
    if draw(st.booleans()):
        text = b"data: " + text + b"\n\ndata: [DONE]\n\n"
    return text


invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc0\x80", b"\xed\xa0\x80", b'{"usage": "\xff"}', b"\x80" * 1000]
)
blobs = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    invalid_utf8,
    nested_json,
    provider_bodies(),
    st.builds(lambda s: s.encode(), texts),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.sampled_from(
        [b"null", b"1e999999", b"-" + b"9" * 5000, b"NaN", b'"\\ud800"', b"{}" * 100_000]
    ),
)


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    return st.builds(timestamp_pb2.Timestamp, seconds=int64s, nanos=int32s)


def durations() -> st.SearchStrategy[duration_pb2.Duration]:
    return st.builds(duration_pb2.Duration, seconds=int64s, nanos=int32s)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


page_tokens = st.one_of(
    texts,
    st.builds(_b64, st.binary(max_size=100)),
    st.builds(lambda v: _b64(json.dumps(v).encode()).rstrip("="), json_values),
    st.builds(
        lambda o, f: _b64(json.dumps({"o": o, "f": f}).encode()).rstrip("="),
        st.one_of(int64s, st.integers(), json_values),
        st.one_of(texts, json_values),
    ),
    st.builds(lambda n: _b64(str(n).encode()), st.one_of(int64s, st.integers())),
    st.builds(lambda n, e: _b64(f"{n}:{e}".encode()), st.one_of(int64s, st.integers()), texts),
)


def money() -> st.SearchStrategy[types_pb2.Money]:
    return st.builds(
        types_pb2.Money,
        currency_code=st.one_of(st.just("USD"), texts),
        units=int64s,
        nanos=int32s,
    )


def usages() -> st.SearchStrategy[types_pb2.TokenUsage]:
    return st.builds(
        types_pb2.TokenUsage,
        input_tokens=int64s,
        output_tokens=int64s,
        cache_read_tokens=int64s,
        cache_write_tokens=int64s,
        cache_write_1h_tokens=int64s,
        reasoning_tokens=int64s,
    )


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value, or None to leave it unset."""
    return st.one_of(st.none(), strategy)


def build(cls: type[M], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[M]:
    """A message with each field drawn, or left unset when the draw is None."""
    return st.fixed_dictionaries({name: maybe(s) for name, s in fields.items()}).map(
        lambda values: cls(**{k: v for k, v in values.items() if v is not None})
    )


labels = st.dictionaries(texts.filter(lambda t: len(t) < 300), texts, max_size=20)
record_requests = build(
    pb.RecordUsageRequest,
    account_id=ids,
    request_id=texts,
    model=st.one_of(st.sampled_from(["cheap-model", "gpt-4o-mini", "fee-model"]), texts),
    provider=texts,
    usage=usages(),
    api_key_id=texts,
    service=texts,
    event_time=timestamps(),
    streamed=st.booleans(),
    labels=labels,
    batch=st.booleans(),
    response_json=blobs,
    response_format=enums,
    reservation_id=texts,
)
price_entries = build(
    prices_pb2.PriceEntry,
    price_id=texts,
    version=int64s,
    provider=texts,
    model=texts,
    aliases=st.lists(texts, max_size=5),
    account_id=ids,
    currency_code=texts,
    effective_time=timestamps(),
    end_time=timestamps(),
    input_per_million=texts,
    output_per_million=texts,
    cache_read_per_million=texts,
    cache_write_5m_per_million=texts,
    cache_write_1h_per_million=texts,
    reasoning_per_million=texts,
    request_fee=texts,
    long_context=build(
        prices_pb2.LongContextTier,
        threshold_input_tokens=int64s,
        input_per_million=texts,
        output_per_million=texts,
        cache_read_per_million=texts,
    ),
    request_price=texts,
    request_credits=int64s,
    batch_discount_percent=texts,
    retired=st.booleans(),
    source=texts,
    source_date=texts,
)
accounts = build(
    admin_pb.Account,
    account_id=ids,
    currency_code=texts,
    billing_mode=enums,
    allow_negative_balance=st.booleans(),
    unpriced_policy=enums,
    price_adjustment_bps=int32s,
    request_asset=enums,
    default_request_price=money(),
    default_request_credits=int64s,
    tenant_id=texts,
    reservation_expiry_policy=enums,
    time_zone=texts,
)
_ACCOUNT_FIELDS = [
    "billing_mode",
    "allow_negative_balance",
    "unpriced_policy",
    "price_adjustment_bps",
    "request_asset",
    "default_request_price",
    "default_request_credits",
    "time_zone",
    "reservation_expiry_policy",
    "account_id",
    "currency_code",
    "create_time",
    "tenant_id",
]
budgets = build(
    admin_pb.Budget,
    account_id=ids,
    budget_id=texts,
    api_key_id=texts,
    model=texts,
    period=enums,
    rolling_window=durations(),
    metric=enums,
    limit=int64s,
    hard=st.booleans(),
    thresholds_percent=st.lists(int32s, max_size=15),
)


# Calling ----------------------------------------------------------------------


def _counts(live: Live) -> dict[str, int]:
    counts = live.row_counts()
    with live.database.engine.connect() as connection:
        for table in EXTRA_TABLES:
            counts[table.name] = int(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
            )
    return counts


def _short(value: object, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _log(live: Live, lines: int = 6) -> str:
    return "\n".join(_short(line, 700) for line in live.server.log_tail(lines).splitlines())


def _expect_callers_fault(
    live: Live, rpc: str, call: Callable[[], object], request: object
) -> None:
    """Make the call; a failure must be the caller's fault and must have written nothing."""
    before = _counts(live)
    try:
        call()
    except grpc.RpcError as error:
        code = error.code()
        assert code in CALLERS_FAULT, (
            f"{rpc} answered {code.name}: {error.details()!r}\n"
            f"request: {_short(request)}\nserver log:\n{_log(live)}"
        )
        after = _counts(live)
        assert after == before, (
            f"{rpc} failed with {code.name} but wrote rows: {before} -> {after}\n"
            f"request: {_short(request)}"
        )


def _healthy(live: Live) -> None:
    assert live.server.process is not None and live.server.process.poll() is None, (
        "the server exited:\n" + live.server.log_tail()
    )
    health = health_pb2_grpc.HealthStub(live.channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def fuzzed(verified: Live) -> Iterator[Live]:
    """The live server with the pool accounts; healthy after the group's hostile calls."""
    for account_id, negative, mode in (
        (PREPAID, False, types_pb2.BILLING_MODE_TOKEN),
        (POSTPAID, True, types_pb2.BILLING_MODE_TOKEN),
        (REQUESTS, False, types_pb2.BILLING_MODE_REQUEST),
    ):
        try:
            verified.admin.CreateAccount(
                admin_pb.CreateAccountRequest(
                    account_id=account_id,
                    allow_negative_balance=negative,
                    billing_mode=mode,
                ),
                timeout=TIMEOUT,
            )
            verified.admin.GrantCredits(
                admin_pb.GrantCreditsRequest(
                    account_id=account_id,
                    request_id="fuzz-seed",
                    amount=types_pb2.Money(currency_code="USD", units=5),
                    request_credits=100,
                ),
                timeout=TIMEOUT,
            )
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    yield verified
    _healthy(verified)


# MeteringService --------------------------------------------------------------


@FUZZ
@given(request=record_requests)
def test_record_usage(fuzzed: Live, request: pb.RecordUsageRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "RecordUsage",
        lambda: fuzzed.metering.RecordUsage(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    records=st.one_of(
        st.lists(record_requests, max_size=4),
        # Many copies of a small record: at and over the batch limit, without
        # the client spending minutes serializing copies of a huge one.
        st.builds(
            lambda r, n: [r] * n,
            record_requests.filter(lambda r: r.ByteSize() < 2_000),
            st.sampled_from([1000, 1001, 5000]),
        ),
    )
)
def test_record_usage_batch(fuzzed: Live, records: list[pb.RecordUsageRequest]) -> None:
    request = pb.RecordUsageBatchRequest(records=records)
    _expect_callers_fault(
        fuzzed,
        "RecordUsageBatch",
        lambda: fuzzed.metering.RecordUsageBatch(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    request=build(
        pb.EstimateTokensRequest,
        model=st.one_of(st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"]), texts),
        provider=texts,
        text=texts,
        completion_text=texts,
        max_output_tokens=int64s,
        account_id=ids,
        request_json=blobs,
        request_format=enums,
    )
)
def test_estimate_tokens(fuzzed: Live, request: pb.EstimateTokensRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "EstimateTokens",
        lambda: fuzzed.metering.EstimateTokens(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    request=build(
        pb.AuthorizeUsageRequest,
        account_id=ids,
        request_id=texts,
        model=st.one_of(st.sampled_from(["cheap-model", "gpt-4o"]), texts),
        provider=texts,
        amount=money(),
        request_json=blobs,
        request_format=enums,
        input_tokens=int64s,
        max_output_tokens=int64s,
        ttl=durations(),
        api_key_id=texts,
    )
)
def test_authorize_usage(fuzzed: Live, request: pb.AuthorizeUsageRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "AuthorizeUsage",
        lambda: fuzzed.metering.AuthorizeUsage(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(request=build(pb.ReleaseReservationRequest, account_id=ids, reservation_id=texts))
def test_release_reservation(fuzzed: Live, request: pb.ReleaseReservationRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "ReleaseReservation",
        lambda: fuzzed.metering.ReleaseReservation(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(request=build(pb.GetBalanceRequest, account_id=ids))
def test_get_balance(fuzzed: Live, request: pb.GetBalanceRequest) -> None:
    _expect_callers_fault(
        fuzzed, "GetBalance", lambda: fuzzed.metering.GetBalance(request, timeout=TIMEOUT), request
    )


@FUZZ
@given(
    request=build(
        pb.UsageSummaryRequest,
        account_id=ids,
        start_time=timestamps(),
        end_time=timestamps(),
        granularity=enums,
        time_zone=st.one_of(st.sampled_from(["Europe/Berlin", "America/Santiago"]), texts),
        group_by=st.lists(enums, max_size=8),
        page_size=int32s,
        page_token=page_tokens,
        currency_code=texts,
    )
)
def test_usage_summary(fuzzed: Live, request: pb.UsageSummaryRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "UsageSummary",
        lambda: fuzzed.metering.UsageSummary(request, timeout=TIMEOUT),
        request,
    )


# MeteringAdminService ---------------------------------------------------------


@FUZZ
@given(
    request=build(
        admin_pb.CreateAccountRequest,
        account_id=ids,
        currency_code=texts,
        billing_mode=enums,
        allow_negative_balance=st.booleans(),
        unpriced_policy=enums,
        price_adjustment_bps=int32s,
        request_asset=enums,
        default_request_price=money(),
        default_request_credits=int64s,
        tenant_id=texts,
        reservation_expiry_policy=enums,
        time_zone=texts,
    )
)
def test_create_account(fuzzed: Live, request: admin_pb.CreateAccountRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "CreateAccount",
        lambda: fuzzed.admin.CreateAccount(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    request=build(
        admin_pb.GrantCreditsRequest,
        account_id=ids,
        request_id=texts,
        amount=money(),
        request_credits=int64s,
        reason=texts,
    )
)
def test_grant_credits(fuzzed: Live, request: admin_pb.GrantCreditsRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "GrantCredits",
        lambda: fuzzed.admin.GrantCredits(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(account=accounts, paths=st.lists(st.one_of(st.sampled_from(_ACCOUNT_FIELDS), texts)))
def test_update_account(fuzzed: Live, account: admin_pb.Account, paths: list[str]) -> None:
    request = admin_pb.UpdateAccountRequest(account=account)
    request.update_mask.paths.extend(paths)
    _expect_callers_fault(
        fuzzed,
        "UpdateAccount",
        lambda: fuzzed.admin.UpdateAccount(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    request=build(
        admin_pb.SetApiKeyBillingModeRequest, account_id=ids, api_key_id=texts, billing_mode=enums
    )
)
def test_set_api_key_billing_mode(
    fuzzed: Live, request: admin_pb.SetApiKeyBillingModeRequest
) -> None:
    _expect_callers_fault(
        fuzzed,
        "SetApiKeyBillingMode",
        lambda: fuzzed.admin.SetApiKeyBillingMode(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    request=build(
        admin_pb.ListPricesRequest,
        provider=texts,
        model=texts,
        account_id=ids,
        all_versions=st.booleans(),
        page_size=int32s,
        page_token=page_tokens,
    )
)
def test_list_prices(fuzzed: Live, request: admin_pb.ListPricesRequest) -> None:
    _expect_callers_fault(
        fuzzed, "ListPrices", lambda: fuzzed.admin.ListPrices(request, timeout=TIMEOUT), request
    )


@FUZZ
@given(price=price_entries)
def test_add_price(fuzzed: Live, price: prices_pb2.PriceEntry) -> None:
    request = admin_pb.AddPriceRequest(price=price)
    _expect_callers_fault(
        fuzzed, "AddPrice", lambda: fuzzed.admin.AddPrice(request, timeout=TIMEOUT), request
    )


@FUZZ
@given(
    request=build(
        admin_pb.RetirePriceRequest,
        price_id=st.one_of(st.sampled_from(["fuzz/none", "x" * 300]), texts),
        retire_time=timestamps(),
    )
)
def test_retire_price(fuzzed: Live, request: admin_pb.RetirePriceRequest) -> None:
    _expect_callers_fault(
        fuzzed, "RetirePrice", lambda: fuzzed.admin.RetirePrice(request, timeout=TIMEOUT), request
    )


@st.composite
def price_files(draw: st.DrawFn) -> bytes:
    """Price files: garbage, or metering/LiteLLM shapes with hostile entries."""
    entry = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "price_id",
                    "version",
                    "provider",
                    "model",
                    "aliases",
                    "effective_time",
                    "input_per_million",
                    "output_per_million",
                    "long_context",
                    "request_credits",
                    "input_cost_per_token",
                    "output_cost_per_token",
                    "litellm_provider",
                    "mode",
                ]
            ),
            json_values,
            max_size=8,
        )
    )
    shape = draw(st.sampled_from(["metering", "litellm", "raw"]))
    if shape == "metering":
        return json.dumps({"prices": [entry] * draw(st.integers(0, 3))}).encode()
    if shape == "litellm":
        return json.dumps({draw(texts.filter(lambda t: len(t) < 100)): entry}).encode()
    return bytes(draw(blobs))


@FUZZ
@given(
    request=build(
        admin_pb.ImportPricesRequest,
        content=st.one_of(price_files(), blobs),
        format=enums,
        effective_time=timestamps(),
        dry_run=st.booleans(),
        source=texts,
    )
)
def test_import_prices(fuzzed: Live, request: admin_pb.ImportPricesRequest) -> None:
    _expect_callers_fault(
        fuzzed,
        "ImportPrices",
        lambda: fuzzed.admin.ImportPrices(request, timeout=TIMEOUT),
        request,
    )


@FUZZ
@given(
    data=st.data(),
    rpc=st.sampled_from(["SetBudget", "ListBudgets", "DeleteBudget", "ListBudgetEvents"]),
)
def test_budgets(fuzzed: Live, data: st.DataObject, rpc: str) -> None:
    request: Message
    if rpc == "SetBudget":
        request = admin_pb.SetBudgetRequest(budget=data.draw(budgets))
    elif rpc == "ListBudgets":
        request = data.draw(build(admin_pb.ListBudgetsRequest, account_id=ids))
    elif rpc == "DeleteBudget":
        request = data.draw(build(admin_pb.DeleteBudgetRequest, account_id=ids, budget_id=texts))
    else:
        request = data.draw(
            build(
                admin_pb.ListBudgetEventsRequest,
                account_id=ids,
                page_size=int32s,
                page_token=page_tokens,
            )
        )
    method = getattr(fuzzed.admin, rpc)
    _expect_callers_fault(fuzzed, rpc, lambda: method(request, timeout=TIMEOUT), request)


# Raw bytes on the wire --------------------------------------------------------

# Every method the server serves: the contract may name methods before a servicer
# implements them, and those answer UNIMPLEMENTED until it does.
METHOD_PATHS = [
    f"/{service.full_name}/{method.name}"
    for module, name, servicer, generated in (
        (pb, "MeteringService", MeteringServicer, pb_grpc.MeteringServiceServicer),
        (
            admin_pb,
            "MeteringAdminService",
            MeteringAdminServicer,
            admin_grpc.MeteringAdminServiceServicer,
        ),
    )
    for service in [module.DESCRIPTOR.services_by_name[name]]
    for method in service.methods
    if getattr(servicer, method.name) is not getattr(generated, method.name)
]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@st.composite
def wire_garbage(draw: st.DrawFn) -> bytes:
    """Bytes that look like protobuf to a varying degree, or not at all."""
    kind = draw(st.sampled_from(["random", "fields", "other message", "truncated"]))
    if kind == "random":
        return draw(st.binary(max_size=2_000))
    if kind == "other message":
        message = draw(
            st.one_of(record_requests, build(pb.GetBalanceRequest, account_id=ids), price_entries)
        )
        return bytes(message.SerializeToString())
    out = bytearray()
    for _ in range(draw(st.integers(1, 6))):
        number = draw(st.one_of(st.integers(1, 20), st.integers(1, 2**29 - 1)))
        wire_type = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
        out += _varint(number << 3 | wire_type)
        if wire_type == 0:
            out += _varint(draw(int64s))
        elif wire_type == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire_type == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire_type == 2:
            payload = draw(st.one_of(st.binary(max_size=50), invalid_utf8, blobs))
            length = draw(st.sampled_from([len(payload), len(payload) + 7, 2**31, 2**63]))
            out += _varint(length) + payload
    if kind == "truncated" and out:
        out = out[: draw(st.integers(0, len(out) - 1))]
    return bytes(out)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(METHOD_PATHS), payload=wire_garbage())
def test_raw_garbage_to_every_method(fuzzed: Live, path: str, payload: bytes) -> None:
    call = fuzzed.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    _expect_callers_fault(fuzzed, path, lambda: call(payload, timeout=TIMEOUT), payload)


def test_still_serving_after_all_of_it(verified: Live) -> None:
    _healthy(verified)
    assert verified.verify_ledger() == []
