"""Reservations over real gRPC: authorize, capture, release, expire; never overspend."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2

from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.e2e.conftest import Live
from tests.support.grpc_errors import details_of

T = 10
ALLOWED = pb.AUTHORIZATION_DECISION_ALLOWED
DENIED = pb.AUTHORIZATION_DECISION_DENIED


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _usd(nanos: int) -> types_pb2.Money:
    return types_pb2.Money(currency_code="USD", units=nanos // 10**9, nanos=nanos % 10**9)


def _hold(
    account: str, request_id: str, nanos: int, ttl_seconds: float = 300
) -> pb.AuthorizeUsageRequest:
    return pb.AuthorizeUsageRequest(
        account_id=account,
        request_id=request_id,
        model="gpt-4o-mini",
        amount=_usd(nanos),
        ttl=duration_pb2.Duration(seconds=int(ttl_seconds), nanos=int(ttl_seconds % 1 * 1e9)),
    )


def _balance(live: Live, account: str) -> pb.GetBalanceResponse:
    response: pb.GetBalanceResponse = live.metering.GetBalance(
        pb.GetBalanceRequest(account_id=account), timeout=T
    )
    return response


def _record(
    live: Live, account: str, request_id: str, tokens: int, reservation_id: str
) -> pb.RecordUsageResponse:
    response: pb.RecordUsageResponse = live.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id=request_id,
            model="gpt-4o-mini",
            usage=types_pb2.TokenUsage(input_tokens=tokens),
            reservation_id=reservation_id,
        ),
        timeout=T,
    )
    return response


def test_64_concurrent_authorizations_allow_exactly_what_the_balance_covers(verified: Live) -> None:
    account = verified.new_account(units=1)  # $1 covers exactly 10 holds of $0.10

    async def race() -> list[pb.AuthorizeUsageResponse]:
        channels = [grpc.aio.insecure_channel(verified.server.target) for _ in range(2)]
        try:
            stubs = [pb_grpc.MeteringServiceStub(c) for c in channels]
            calls = [
                stubs[i % 2].AuthorizeUsage(_hold(account, f"a{i}", 100_000_000), timeout=30)
                for i in range(64)
            ]
            return list(await asyncio.gather(*calls))
        finally:
            for channel in channels:
                await channel.close()

    before = verified.row_counts()
    answers = asyncio.run(race())
    assert sum(a.decision == ALLOWED for a in answers) == 10
    assert all(a.deny_reason == "INSUFFICIENT_BALANCE" for a in answers if a.decision == DENIED)
    assert all(_nanos(a.available) >= 0 for a in answers)
    balance = _balance(verified, account)
    assert (_nanos(balance.balance), _nanos(balance.held), _nanos(balance.available)) == (
        1_000_000_000,
        1_000_000_000,
        0,
    )
    # Holds move no money: only idempotency records (64) were written, no ledger entry.
    after = verified.row_counts()
    assert after["ledger_entries"] == before["ledger_entries"]
    assert after["idempotency_keys"] == before["idempotency_keys"] + 64


def test_capture_less_and_more_than_the_hold(verified: Live) -> None:
    account = verified.new_account(units=1)
    small = verified.metering.AuthorizeUsage(_hold(account, "h1", 300_000_000), timeout=T)
    large = verified.metering.AuthorizeUsage(_hold(account, "h2", 300_000_000), timeout=T)
    assert _nanos(_balance(verified, account).available) == 400_000_000
    # Less than held: 1M tokens x $0.15/M = $0.15 debited, the rest of the hold released.
    under = _record(verified, account, "r1", 1_000_000, small.reservation_id)
    assert _nanos(under.cost) == 150_000_000 and not under.reservation_exceeded
    assert _nanos(under.reservation_held) == 300_000_000
    # More than held: recorded in full anyway, and reported.
    over = _record(verified, account, "r2", 4_000_000, large.reservation_id)
    assert _nanos(over.cost) == 600_000_000 and over.reservation_exceeded
    balance = _balance(verified, account)
    assert _nanos(balance.held) == 0
    assert _nanos(balance.balance) == 1_000_000_000 - 150_000_000 - 600_000_000
    # A capture replayed is a replay; the reservation resolved once.
    again = _record(verified, account, "r1", 1_000_000, small.reservation_id)
    assert again.replayed and _nanos(_balance(verified, account).held) == 0


def test_release_frees_the_hold_once(verified: Live) -> None:
    account = verified.new_account(units=1)
    hold = verified.metering.AuthorizeUsage(_hold(account, "h", 500_000_000), timeout=T)
    assert hold.decision == ALLOWED
    released = verified.metering.ReleaseReservation(
        pb.ReleaseReservationRequest(account_id=account, reservation_id=hold.reservation_id),
        timeout=T,
    )
    assert released.state == pb.RESERVATION_STATE_RELEASED
    assert _nanos(released.available) == 1_000_000_000
    before = verified.row_counts()
    again = verified.metering.ReleaseReservation(
        pb.ReleaseReservationRequest(account_id=account, reservation_id=hold.reservation_id),
        timeout=T,
    )
    assert again.state == pb.RESERVATION_STATE_RELEASED
    assert verified.row_counts() == before
    # A capture after the release records the call, without touching any hold.
    late = _record(verified, account, "late", 1_000_000, hold.reservation_id)
    assert _nanos(late.cost) == 150_000_000
    assert _nanos(_balance(verified, account).held) == 0


def test_authorization_replay_and_conflict(verified: Live) -> None:
    account = verified.new_account(units=1)
    first = verified.metering.AuthorizeUsage(_hold(account, "same", 100_000_000), timeout=T)
    again = verified.metering.AuthorizeUsage(_hold(account, "same", 100_000_000), timeout=T)
    assert again.replayed and again.reservation_id == first.reservation_id
    assert _nanos(_balance(verified, account).held) == 100_000_000
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.AuthorizeUsage(_hold(account, "same", 200_000_000), timeout=T)
    assert details_of(caught.value).reason == "REQUEST_ID_CONFLICT"


def test_hold_estimated_from_a_request_body(verified: Live) -> None:
    account = verified.new_account(units=1)
    body = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], '
        b'"max_tokens": 1000}'
    )
    hold = verified.metering.AuthorizeUsage(
        pb.AuthorizeUsageRequest(
            account_id=account, request_id="body", model="gpt-4o-mini", request_json=body
        ),
        timeout=T,
    )
    assert hold.decision == ALLOWED
    # Worst case: the prompt's tokens at $0.15/M plus 1000 output tokens at $0.60/M.
    prompt_nanos = _nanos(hold.held) - 1000 * 600
    assert prompt_nanos > 0 and prompt_nanos % 150 == 0


def _wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_expiry_releases_by_default(verified: Live) -> None:
    account = verified.new_account(units=1)
    hold = verified.metering.AuthorizeUsage(_hold(account, "h", 400_000_000, 0.5), timeout=T)
    assert hold.decision == ALLOWED
    _wait_for(lambda: _nanos(_balance(verified, account).held) == 0)
    released = verified.metering.ReleaseReservation(
        pb.ReleaseReservationRequest(account_id=account, reservation_id=hold.reservation_id),
        timeout=T,
    )
    assert released.state == pb.RESERVATION_STATE_EXPIRED
    assert _nanos(_balance(verified, account).balance) == 1_000_000_000  # nothing recorded


def test_expiry_captures_an_estimate_by_policy_and_a_late_report_corrects_it(
    verified: Live,
) -> None:
    account = f"acct-{uuid.uuid4().hex[:12]}"
    verified.admin.CreateAccount(
        admin_pb.CreateAccountRequest(
            account_id=account,
            allow_negative_balance=True,
            reservation_expiry_policy=types_pb2.RESERVATION_EXPIRY_POLICY_CAPTURE,
        ),
        timeout=T,
    )
    hold = verified.metering.AuthorizeUsage(
        pb.AuthorizeUsageRequest(
            account_id=account,
            request_id="h",
            model="gpt-4o-mini",
            input_tokens=1000,
            max_output_tokens=1000,
            ttl=duration_pb2.Duration(nanos=500_000_000),
        ),
        timeout=T,
    )
    estimate_nanos = 1000 * 150 + 1000 * 600
    assert _nanos(hold.held) == estimate_nanos
    _wait_for(lambda: _nanos(_balance(verified, account).held) == 0)
    assert _nanos(_balance(verified, account).balance) == -estimate_nanos  # billed at worst case
    # The relay reports after all: the real figure supersedes the estimate.
    late = _record(verified, account, "late", 1000, hold.reservation_id)
    assert _nanos(late.cost) == 150_000  # 1000 input tokens, no output
    assert _nanos(_balance(verified, account).balance) == -150_000


# --- budgets --------------------------------------------------------------------


def _budget(account: str, budget_id: str, limit: int, **fields: object) -> admin_pb.Budget:
    values: dict[str, object] = {
        "account_id": account,
        "budget_id": budget_id,
        "period": admin_pb.BUDGET_PERIOD_DAY,
        "metric": admin_pb.BUDGET_METRIC_COST,
        "limit": limit,
        "hard": True,
        **fields,
    }
    return admin_pb.Budget(**values)  # type: ignore[arg-type]


def test_hard_daily_budget_denies_and_reports_headroom(verified: Live) -> None:
    account = verified.new_account(units=10)
    verified.admin.SetBudget(
        admin_pb.SetBudgetRequest(budget=_budget(account, "daily", 1_000_000_000)), timeout=T
    )
    first = verified.metering.AuthorizeUsage(_hold(account, "a1", 600_000_000), timeout=T)
    assert first.decision == ALLOWED
    assert (first.budget_id, first.budget_headroom) == ("daily", 400_000_000)
    # The open hold counts against the budget: a second one would exceed it.
    second = verified.metering.AuthorizeUsage(_hold(account, "a2", 600_000_000), timeout=T)
    assert (second.decision, second.deny_reason) == (DENIED, "BUDGET_EXCEEDED")
    # Relays that only record see the headroom shrink in RecordUsage's response.
    recorded = _record(verified, account, "r1", 2_000_000, first.reservation_id)
    assert (recorded.budget_id, recorded.budget_headroom) == ("daily", 700_000_000)


def test_soft_budget_warns_without_denying(verified: Live) -> None:
    account = verified.new_account(units=10)
    verified.admin.SetBudget(
        admin_pb.SetBudgetRequest(budget=_budget(account, "soft", 100_000_000, hard=False)),
        timeout=T,
    )
    hold = verified.metering.AuthorizeUsage(_hold(account, "a", 300_000_000), timeout=T)
    assert hold.decision == ALLOWED
    assert list(hold.budget_warnings) == ["soft"] and hold.budget_headroom == -200_000_000


def test_daily_budget_threshold_events_fire_once_per_threshold(verified: Live) -> None:
    account = verified.new_account(units=10)
    verified.admin.SetBudget(
        admin_pb.SetBudgetRequest(
            budget=_budget(
                account,
                "requests",
                10,
                metric=admin_pb.BUDGET_METRIC_REQUESTS,
                hard=False,
                thresholds_percent=[50, 80, 100],
            )
        ),
        timeout=T,
    )
    for index in range(12):  # crosses 50% at 5, 80% at 8, 100% at 10, then stays above
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id=f"r{index}",
                model="cheap-model",
                usage=types_pb2.TokenUsage(input_tokens=1),
            ),
            timeout=T,
        )
    events = verified.admin.ListBudgetEvents(
        admin_pb.ListBudgetEventsRequest(account_id=account), timeout=T
    )
    assert [(e.budget_id, e.threshold_percent, e.used) for e in events.events] == [
        ("requests", 50, 5),
        ("requests", 80, 8),
        ("requests", 100, 10),
    ]
    # Resuming from the token returns nothing new until something happens.
    later = verified.admin.ListBudgetEvents(
        admin_pb.ListBudgetEventsRequest(account_id=account, page_token=events.next_page_token),
        timeout=T,
    )
    assert list(later.events) == []
    budgets = verified.admin.ListBudgets(admin_pb.ListBudgetsRequest(account_id=account), timeout=T)
    assert [b.budget_id for b in budgets.budgets] == ["requests"]


def test_a_balance_floor_emits_one_event_when_crossed_and_a_hard_floor_denies(
    verified: Live,
) -> None:
    account = verified.new_account(units=1)  # $1
    verified.admin.SetBudget(
        admin_pb.SetBudgetRequest(
            budget=_budget(
                account,
                "low-balance",
                600_000_000,  # warn below $0.60
                metric=admin_pb.BUDGET_METRIC_BALANCE_FLOOR,
                hard=False,
            )
        ),
        timeout=T,
    )
    above = _record(verified, account, "r1", 2_000_000, "")  # 2M input tokens: $0.30
    assert (above.budget_id, above.budget_headroom) == ("low-balance", 100_000_000)
    below = _record(verified, account, "r2", 2_000_000, "")  # balance $0.40
    assert below.budget_headroom == -200_000_000
    assert list(below.budget_warnings) == ["low-balance"]
    _record(verified, account, "r3", 1_000, "")  # still below: no second event this period
    events = verified.admin.ListBudgetEvents(
        admin_pb.ListBudgetEventsRequest(account_id=account), timeout=T
    )
    assert [(e.budget_id, e.threshold_percent, e.used, e.limit) for e in events.events] == [
        ("low-balance", 100, 400_000_000, 600_000_000)
    ]
    # A hard floor keeps a reserve: holds may not take the available balance below it.
    verified.admin.SetBudget(
        admin_pb.SetBudgetRequest(
            budget=_budget(
                account, "reserve", 100_000_000, metric=admin_pb.BUDGET_METRIC_BALANCE_FLOOR
            )
        ),
        timeout=T,
    )
    balance = _nanos(_balance(verified, account).available)
    allowed = verified.metering.AuthorizeUsage(
        _hold(account, "fits", balance - 100_000_000), timeout=T
    )
    assert allowed.decision == ALLOWED
    denied = verified.metering.AuthorizeUsage(_hold(account, "eats", 1), timeout=T)
    assert (denied.decision, denied.deny_reason) == (DENIED, "BUDGET_EXCEEDED")
    # A floor names no key or model.
    with pytest.raises(grpc.RpcError) as bad:
        verified.admin.SetBudget(
            admin_pb.SetBudgetRequest(
                budget=_budget(
                    account,
                    "keyed",
                    1,
                    metric=admin_pb.BUDGET_METRIC_BALANCE_FLOOR,
                    api_key_id="k",
                )
            ),
            timeout=T,
        )
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
