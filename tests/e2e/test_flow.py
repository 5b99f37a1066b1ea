"""The relay's whole flow over real gRPC: account, credits, usage, balance, summary."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import timestamp_pb2

from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2
from tests.e2e.conftest import Live
from tests.support.grpc_errors import details_of


def _ts(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    return ts


def _around_now() -> tuple[timestamp_pb2.Timestamp, timestamp_pb2.Timestamp]:
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.GetCurrentTime()
    start.seconds -= 86_400
    end.GetCurrentTime()
    end.seconds += 86_400
    return start, end


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _record(
    account_id: str, request_id: str, model: str = "gpt-4o-mini", **usage: int
) -> pb.RecordUsageRequest:
    return pb.RecordUsageRequest(
        account_id=account_id,
        request_id=request_id,
        model=model,
        usage=types_pb2.TokenUsage(**usage),
    )


def test_record_usage_debits_exact_cost_and_balance(verified: Live) -> None:
    account = verified.new_account(units=10)
    response = verified.metering.RecordUsage(
        _record(account, "r1", input_tokens=1000, output_tokens=500, cache_read_tokens=200),
        timeout=10,
    )
    # 800 uncached x $0.15/M + 200 cached x $0.075/M + 500 x $0.60/M = $0.000435
    assert _nanos(response.cost) == 435_000
    assert response.cost.currency_code == "USD"
    assert _nanos(response.balance) == 10_000_000_000 - 435_000
    assert response.usage_source == types_pb2.USAGE_SOURCE_REPORTED
    assert (response.price_id, response.price_version) == ("openai/gpt-4o-mini", 1)
    assert not response.replayed and not response.balance_exhausted
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=10)
    assert _nanos(balance.balance) == 10_000_000_000 - 435_000
    assert _nanos(balance.held) == 0
    assert _nanos(balance.available) == _nanos(balance.balance)
    assert balance.currency_code == "USD"
    assert balance.billing_mode == types_pb2.BILLING_MODE_TOKEN


def test_replay_returns_stored_response_and_writes_nothing(verified: Live) -> None:
    account = verified.new_account(units=1)
    request = _record(account, "same", input_tokens=100, output_tokens=10)
    first = verified.metering.RecordUsage(request, timeout=10)
    before = verified.row_counts()
    second = verified.metering.RecordUsage(request, timeout=10)
    assert second.replayed
    assert second.record_id == first.record_id
    assert _nanos(second.cost) == _nanos(first.cost)
    assert _nanos(second.balance) == _nanos(first.balance)
    assert verified.row_counts() == before


def test_same_request_id_different_payload_is_conflict(verified: Live) -> None:
    account = verified.new_account(units=1)
    verified.metering.RecordUsage(_record(account, "k", input_tokens=100), timeout=10)
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.RecordUsage(_record(account, "k", input_tokens=101), timeout=10)
    error = details_of(caught.value)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "REQUEST_ID_CONFLICT"
    assert verified.row_counts() == before


def test_request_id_is_scoped_per_account(verified: Live) -> None:
    first, second = verified.new_account(units=1), verified.new_account(units=1)
    a = verified.metering.RecordUsage(_record(first, "shared", input_tokens=10), timeout=10)
    b = verified.metering.RecordUsage(_record(second, "shared", input_tokens=10), timeout=10)
    assert not a.replayed and not b.replayed
    assert a.record_id != b.record_id


def test_grant_is_idempotent_and_conflicts_on_other_payload(verified: Live) -> None:
    account = verified.new_account()
    grant = admin_pb.GrantCreditsRequest(
        account_id=account,
        request_id="top-up-1",
        amount=types_pb2.Money(currency_code="USD", units=5, nanos=250_000_000),
        reason="invoice 1",
    )
    first = verified.admin.GrantCredits(grant, timeout=10)
    again = verified.admin.GrantCredits(grant, timeout=10)
    assert _nanos(first.balance) == 5_250_000_000
    assert again.replayed and again.transaction_id == first.transaction_id
    assert _nanos(again.balance) == 5_250_000_000
    grant.amount.units = 6
    with pytest.raises(grpc.RpcError) as caught:
        verified.admin.GrantCredits(grant, timeout=10)
    assert details_of(caught.value).reason == "REQUEST_ID_CONFLICT"
    # The idempotency key space is shared with RecordUsage.
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.RecordUsage(_record(account, "top-up-1", input_tokens=1), timeout=10)
    assert details_of(caught.value).reason == "REQUEST_ID_CONFLICT"
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=10)
    assert _nanos(balance.balance) == 5_250_000_000


def test_prepaid_account_is_debited_below_zero_and_reported_exhausted(verified: Live) -> None:
    account = verified.new_account()  # zero balance, prepaid
    verified.admin.GrantCredits(
        admin_pb.GrantCreditsRequest(
            account_id=account,
            request_id="g",
            amount=types_pb2.Money(currency_code="USD", nanos=100),
        ),
        timeout=10,
    )
    response = verified.metering.RecordUsage(
        _record(account, "big", model="claude-sonnet-4-5", input_tokens=1000, output_tokens=1000),
        timeout=10,
    )
    # 1000 x $3/M + 1000 x $15/M = $0.018, recorded in full although only 100 nanos were left.
    assert _nanos(response.cost) == 18_000_000
    assert _nanos(response.balance) == 100 - 18_000_000
    assert response.balance_exhausted
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=10)
    assert _nanos(balance.balance) == 100 - 18_000_000
    assert balance.balance_exhausted


def test_postpaid_account_goes_negative_without_exhaustion(verified: Live) -> None:
    account = verified.new_account(allow_negative_balance=True)
    response = verified.metering.RecordUsage(
        _record(account, "r", input_tokens=1_000_000), timeout=10
    )
    assert _nanos(response.balance) == -150_000_000
    assert not response.balance_exhausted


def test_usage_without_usage_block_is_recorded_as_missing(verified: Live) -> None:
    account = verified.new_account(units=1)
    response = verified.metering.RecordUsage(
        pb.RecordUsageRequest(account_id=account, request_id="no-usage", model="gpt-4o-mini"),
        timeout=10,
    )
    assert response.usage_source == types_pb2.USAGE_SOURCE_MISSING
    assert _nanos(response.cost) == 0
    start, end = _around_now()
    summary = verified.metering.UsageSummary(
        pb.UsageSummaryRequest(
            account_id=account,
            start_time=start,
            end_time=end,
            group_by=[pb.GROUP_BY_USAGE_SOURCE],
        ),
        timeout=10,
    )
    assert [(r.usage_source, r.request_count) for r in summary.rows] == [
        (types_pb2.USAGE_SOURCE_MISSING, 1)
    ]


def test_unknown_model_is_price_not_found_and_writes_nothing(verified: Live) -> None:
    account = verified.new_account(units=1)
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.RecordUsage(
            _record(account, "x", model="no-such-model-9000", input_tokens=1), timeout=10
        )
    error = details_of(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PRICE_NOT_FOUND")
    assert verified.row_counts() == before


def test_price_in_force_at_event_time_applies(verified: Live) -> None:
    account = verified.new_account(units=1)
    old = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id="old",
            model="changing-model",
            usage=types_pb2.TokenUsage(input_tokens=1_000_000),
            event_time=_ts("2025-12-31T23:59:59Z"),
        ),
        timeout=10,
    )
    new = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id="new",
            model="changing-model",
            usage=types_pb2.TokenUsage(input_tokens=1_000_000),
            event_time=_ts("2026-01-01T00:00:00Z"),
        ),
        timeout=10,
    )
    assert (old.price_version, _nanos(old.cost)) == (1, 1_000_000_000)
    assert (new.price_version, _nanos(new.cost)) == (2, 2_000_000_000)


def test_dated_snapshot_resolves_to_family_price(verified: Live) -> None:
    account = verified.new_account(units=1)
    response = verified.metering.RecordUsage(
        _record(account, "snap", model="gpt-4o-mini-2024-07-18", input_tokens=1_000_000), timeout=10
    )
    assert response.price_id == "openai/gpt-4o-mini"
    assert _nanos(response.cost) == 150_000_000


def test_usage_summary_buckets_groups_totals_and_pages(verified: Live) -> None:
    account = verified.new_account(units=100)
    calls = [
        ("2026-03-01T10:00:00Z", "gpt-4o-mini", 1_000_000, "key-a"),
        ("2026-03-01T23:30:00Z", "gpt-4o-mini", 1_000_000, "key-b"),  # 2026-03-02 in Berlin
        ("2026-03-02T08:00:00Z", "claude-sonnet-4-5", 1_000, "key-a"),
        ("2026-04-01T00:00:00Z", "gpt-4o-mini", 5, "key-a"),  # outside the half-open range
    ]
    for index, (when, model, tokens, key) in enumerate(calls):
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id=f"s{index}",
                model=model,
                api_key_id=key,
                usage=types_pb2.TokenUsage(input_tokens=tokens),
                event_time=_ts(when),
            ),
            timeout=10,
        )
    request = pb.UsageSummaryRequest(
        account_id=account,
        start_time=_ts("2026-03-01T00:00:00Z"),
        end_time=_ts("2026-04-01T00:00:00Z"),
        granularity=pb.GRANULARITY_DAY,
        time_zone="Europe/Berlin",
        group_by=[pb.GROUP_BY_MODEL],
        page_size=2,
    )
    first = verified.metering.UsageSummary(request, timeout=10)
    assert first.next_page_token
    request.page_token = first.next_page_token
    second = verified.metering.UsageSummary(request, timeout=10)
    assert not second.next_page_token
    rows = [*first.rows, *second.rows]
    got = [(r.start_time.ToJsonString(), r.model, r.request_count, r.input_tokens) for r in rows]
    assert got == [
        # Berlin midnight of March 1 is before the range start: reported at the range start.
        ("2026-03-01T00:00:00Z", "gpt-4o-mini", 1, 1_000_000),
        ("2026-03-01T23:00:00Z", "claude-sonnet-4-5", 1, 1_000),
        ("2026-03-01T23:00:00Z", "gpt-4o-mini", 1, 1_000_000),
    ]
    assert first.totals.request_count == 3
    assert first.totals.input_tokens == 2_001_000
    assert _nanos(first.totals.cost) == 150_000_000 * 2 + 3_000_000
    assert _nanos(first.totals.cost) == sum(_nanos(r.cost) for r in rows)


def test_admin_summary_over_all_accounts_groups_by_account(verified: Live) -> None:
    marker = uuid.uuid4().hex[:8]
    accounts = [verified.new_account(units=1) for _ in range(2)]
    for account in accounts:
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id="a",
                model="cheap-model",
                service=marker,
                usage=types_pb2.TokenUsage(input_tokens=13),
            ),
            timeout=10,
        )
    start, end = _around_now()
    summary = verified.metering.UsageSummary(
        pb.UsageSummaryRequest(
            start_time=start,
            end_time=end,
            group_by=[pb.GROUP_BY_SERVICE, pb.GROUP_BY_ACCOUNT],
            page_size=1000,
        ),
        timeout=10,
    )
    mine = sorted((r.account_id, _nanos(r.cost)) for r in summary.rows if r.service == marker)
    # 13 tokens at $0.05 per million = 650 nanos each.
    assert mine == sorted((a, 650) for a in accounts)
