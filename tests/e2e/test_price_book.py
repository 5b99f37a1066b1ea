"""The price book and billing modes over real gRPC: versions in time, imports, modes, repricing."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import prices_pb2, types_pb2
from tests.conftest import TEST_PRICES
from tests.e2e.conftest import Live
from tests.support.grpc_errors import details_of
from tests.support.server import ServerProcess

T = 10


def _ts(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    return ts


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _model() -> str:
    return f"model-{uuid.uuid4().hex[:10]}"


def _price(
    model: str, input_per_million: str, effective: str, **extra: object
) -> prices_pb2.PriceEntry:
    return prices_pb2.PriceEntry(
        price_id=f"acme/{model}",
        provider="acme",
        model=model,
        effective_time=_ts(effective),
        input_per_million=input_per_million,
        output_per_million="0",
        source="test",
        **extra,  # type: ignore[arg-type]
    )


def _record(
    live: Live, account: str, request_id: str, model: str, tokens: int, **extra: object
) -> pb.RecordUsageResponse:
    response: pb.RecordUsageResponse = live.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id=request_id,
            model=model,
            usage=types_pb2.TokenUsage(input_tokens=tokens),
            **extra,  # type: ignore[arg-type]
        ),
        timeout=T,
    )
    return response


def test_price_change_takes_effect_at_its_time_and_not_before(verified: Live) -> None:
    model = _model()
    first = verified.admin.AddPrice(
        admin_pb.AddPriceRequest(price=_price(model, "1", "2025-01-01T00:00:00Z")), timeout=T
    )
    second = verified.admin.AddPrice(
        admin_pb.AddPriceRequest(price=_price(model, "3", "2026-06-01T00:00:00Z")), timeout=T
    )
    assert (first.price.version, second.price.version) == (1, 2)
    account = verified.new_account(units=10)
    before = _record(
        verified, account, "before", model, 1_000_000, event_time=_ts("2026-05-31T23:59:59.999999Z")
    )
    at = _record(verified, account, "at", model, 1_000_000, event_time=_ts("2026-06-01T00:00:00Z"))
    assert (before.price_version, _nanos(before.cost)) == (1, 1_000_000_000)
    assert (at.price_version, _nanos(at.cost)) == (2, 3_000_000_000)
    listed = verified.admin.ListPrices(
        admin_pb.ListPricesRequest(model=model, all_versions=True), timeout=T
    )
    assert [(p.version, p.input_per_million) for p in listed.prices] == [(1, "1"), (2, "3")]


def test_retired_price_prices_nothing_from_its_time(verified: Live) -> None:
    model = _model()
    verified.admin.AddPrice(
        admin_pb.AddPriceRequest(price=_price(model, "1", "2025-01-01T00:00:00Z")), timeout=T
    )
    verified.admin.RetirePrice(
        admin_pb.RetirePriceRequest(
            price_id=f"acme/{model}", retire_time=_ts("2026-01-01T00:00:00Z")
        ),
        timeout=T,
    )
    account = verified.new_account(units=1)
    old = _record(verified, account, "old", model, 10, event_time=_ts("2025-12-31T00:00:00Z"))
    assert old.price_id == f"acme/{model}"
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        _record(verified, account, "new", model, 10)
    assert details_of(caught.value).reason == "PRICE_NOT_FOUND"
    assert verified.row_counts() == before


def test_litellm_file_imported_and_used_for_a_record(verified: Live) -> None:
    model = _model()
    litellm = {
        model: {
            "litellm_provider": "openai",
            "mode": "chat",
            "input_cost_per_token": 1.5e-07,
            "output_cost_per_token": 6e-07,
            "cache_read_input_token_cost": 7.5e-08,
            "input_cost_per_token_above_200k_tokens": 3e-07,
            "output_cost_per_token_above_200k_tokens": 1.2e-06,
        },
        f"{model}-embedding": {
            "litellm_provider": "openai",
            "mode": "embedding",
            "input_cost_per_token": 1e-08,
        },
    }
    request = admin_pb.ImportPricesRequest(
        content=json.dumps(litellm).encode(),
        effective_time=_ts("2025-01-01T00:00:00Z"),
        dry_run=True,
        source="litellm-test.json",
    )
    dry = verified.admin.ImportPrices(request, timeout=T)
    assert (dry.added_count, dry.skipped_count) == (1, 1)
    account = verified.new_account(units=10)
    with pytest.raises(grpc.RpcError) as caught:
        _record(verified, account, "too-early", model, 1)
    assert details_of(caught.value).reason == "PRICE_NOT_FOUND"
    request.dry_run = False
    done = verified.admin.ImportPrices(request, timeout=T)
    assert list(done.added_price_ids) == [f"openai/{model}"]
    again = verified.admin.ImportPrices(request, timeout=T)
    assert (again.added_count, again.unchanged_count) == (0, 1)
    response = verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id="r",
            model=model,
            usage=types_pb2.TokenUsage(input_tokens=1000, cache_read_tokens=200, output_tokens=100),
        ),
        timeout=T,
    )
    # 800 x $0.15/M + 200 x $0.075/M + 100 x $0.60/M = 120,000 + 15,000 + 60,000 nanos
    assert _nanos(response.cost) == 195_000
    assert response.price_id == f"openai/{model}"
    long = _record(verified, account, "long", model, 300_000)
    assert _nanos(long.cost) == 300_000 * 300  # the above-200k tier: $0.30/M


def test_bad_price_file_is_invalid_argument_naming_each_problem(verified: Live) -> None:
    broken = {"m": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": "x"}}
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.admin.ImportPrices(
            admin_pb.ImportPricesRequest(content=json.dumps(broken).encode()), timeout=T
        )
    error = details_of(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["content", "content"]  # the bad input cost, the missing output cost
    assert verified.row_counts() == before


def test_request_mode_debits_credits_or_money(verified: Live) -> None:
    credits = verified.new_account(billing_mode=types_pb2.BILLING_MODE_REQUEST, request_credits=10)
    plain = _record(verified, credits, "1", "gpt-4o-mini", 1_000_000)
    own = _record(verified, credits, "2", "per-request-model", 1_000_000)
    unpriced = _record(verified, credits, "3", "a-model-nobody-priced", 1)
    assert [(_nanos(r.cost), r.request_credits_charged) for r in (plain, own, unpriced)] == [
        (0, 1),
        (0, 3),
        (0, 1),
    ]
    assert unpriced.request_credits == 10 - 1 - 3 - 1
    money = f"acct-{uuid.uuid4().hex[:12]}"
    verified.admin.CreateAccount(
        admin_pb.CreateAccountRequest(
            account_id=money,
            billing_mode=types_pb2.BILLING_MODE_REQUEST,
            request_asset=prices_pb2.REQUEST_ASSET_MONEY,
            default_request_price=types_pb2.Money(currency_code="USD", nanos=10_000_000),
            allow_negative_balance=True,
        ),
        timeout=T,
    )
    a = _record(verified, money, "1", "gpt-4o-mini", 1_000_000)
    b = _record(verified, money, "2", "per-request-model", 1_000_000)
    assert [_nanos(a.cost), _nanos(b.cost)] == [10_000_000, 20_000_000]
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=money), timeout=T)
    assert _nanos(balance.balance) == -30_000_000 and balance.request_credits == 0


def test_hybrid_mode_and_api_key_override(verified: Live) -> None:
    account = verified.new_account(
        units=10, billing_mode=types_pb2.BILLING_MODE_HYBRID, request_credits=10
    )
    own = _record(verified, account, "1", "per-request-model", 1_000_000)
    tokens = _record(verified, account, "2", "gpt-4o-mini", 1_000_000)
    assert (_nanos(own.cost), own.request_credits_charged) == (0, 3)
    assert (_nanos(tokens.cost), tokens.request_credits_charged) == (150_000_000, 0)
    effective = verified.admin.SetApiKeyBillingMode(
        admin_pb.SetApiKeyBillingModeRequest(
            account_id=account, api_key_id="flat-key", billing_mode=types_pb2.BILLING_MODE_REQUEST
        ),
        timeout=T,
    )
    assert effective.effective_billing_mode == types_pb2.BILLING_MODE_REQUEST
    keyed = _record(verified, account, "3", "gpt-4o-mini", 1_000_000, api_key_id="flat-key")
    assert (_nanos(keyed.cost), keyed.request_credits_charged) == (0, 1)
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=T)
    assert _nanos(balance.balance) == 10_000_000_000 - 150_000_000
    assert balance.request_credits == 10 - 3 - 1


def test_markup_and_batch_discount(verified: Live) -> None:
    account = verified.new_account(units=10)
    verified.admin.UpdateAccount(
        admin_pb.UpdateAccountRequest(
            account=admin_pb.Account(account_id=account, price_adjustment_bps=2000),
            update_mask=field_mask_pb2.FieldMask(paths=["price_adjustment_bps"]),
        ),
        timeout=T,
    )
    full = _record(verified, account, "1", "gpt-4o-mini", 1_000_000)
    batch = _record(verified, account, "2", "gpt-4o-mini", 1_000_000, batch=True)
    assert _nanos(full.cost) == 180_000_000  # $0.15 + 20%
    assert _nanos(batch.cost) == 90_000_000  # half of that


def test_unpriced_usage_is_recorded_then_repriced_exactly_once(verified: Live) -> None:
    model = _model()
    account = f"acct-{uuid.uuid4().hex[:12]}"
    verified.admin.CreateAccount(
        admin_pb.CreateAccountRequest(
            account_id=account,
            unpriced_policy=prices_pb2.UNPRICED_POLICY_RECORD,
            allow_negative_balance=True,
        ),
        timeout=T,
    )
    recorded = _record(verified, account, "r", model, 2_000_000)
    assert recorded.unpriced and _nanos(recorded.cost) == 0 and recorded.price_id == ""
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.GetCurrentTime()
    start.seconds -= 3600
    end.GetCurrentTime()
    end.seconds += 3600
    summary = verified.metering.UsageSummary(
        pb.UsageSummaryRequest(account_id=account, start_time=start, end_time=end), timeout=T
    )
    assert (summary.totals.request_count, summary.totals.unpriced_request_count) == (1, 1)
    verified.admin.AddPrice(
        admin_pb.AddPriceRequest(price=_price(model, "2", "2025-01-01T00:00:00Z")), timeout=T
    )
    window = ["--from", start.ToJsonString(), "--to", end.ToJsonString(), "--account", account]
    dry = _cli(verified, "prices", "reprice", *window)
    assert "1 would change" in dry.stdout and "0 -> 4000000000 nanos (+4000000000)" in dry.stdout
    assert "dry run: nothing written" in dry.stdout
    applied = _cli(verified, "prices", "reprice", *window, "--apply")
    assert "applied 1 corrections" in applied.stdout, applied.stdout + applied.stderr
    again = _cli(verified, "prices", "reprice", *window, "--apply")
    assert "0 would change" in again.stdout
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=T)
    assert _nanos(balance.balance) == -4_000_000_000
    summary = verified.metering.UsageSummary(
        pb.UsageSummaryRequest(account_id=account, start_time=start, end_time=end), timeout=T
    )
    # Still one request; its cost now includes the correction; the original row is unchanged.
    assert summary.totals.request_count == 1
    assert _nanos(summary.totals.cost) == 4_000_000_000
    replay = _record(verified, account, "r", model, 2_000_000)
    assert replay.replayed and replay.unpriced  # the stored answer, as recorded


def _cli(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "metering", *args, "--database-url", live.database_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={"METERING_PRICES_FILE": str(TEST_PRICES), "PATH": "/usr/bin:/bin"},
    )
    return done


def test_price_added_on_one_process_is_used_by_another(verified: Live) -> None:
    other = ServerProcess(verified.database_url, prices_file=TEST_PRICES).start()
    try:
        model = _model()
        account = verified.new_account(units=1)
        verified.admin.AddPrice(
            admin_pb.AddPriceRequest(price=_price(model, "5", "2025-01-01T00:00:00Z")), timeout=T
        )
        with grpc.insecure_channel(other.target) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            # The other process has not reloaded its prices yet; its write sees the new
            # price revision in the same transaction and re-prices the record.
            response = stub.RecordUsage(
                pb.RecordUsageRequest(
                    account_id=account,
                    request_id="x",
                    model=model,
                    usage=types_pb2.TokenUsage(input_tokens=1000),
                ),
                timeout=T,
            )
        assert _nanos(response.cost) == 5_000_000  # 1000 x $5/M
    finally:
        other.stop()


def test_prices_check_lists_every_problem(tmp_path: Path) -> None:
    broken = {
        "prices": [
            {
                "price_id": "a/ok",
                "provider": "a",
                "model": "ok",
                "effective_time": "2025-01-01T00:00:00Z",
                "input_per_million": "1",
                "output_per_million": "2",
            },
            {
                "price_id": "a/float",
                "provider": "a",
                "model": "float",
                "effective_time": "2025-01-01T00:00:00Z",
                "input_per_million": 1.5,
                "output_per_million": "2",
            },
            {
                "price_id": "a/no-output",
                "provider": "a",
                "model": "no-output",
                "effective_time": "2025-01-01T00:00:00Z",
                "input_per_million": "1",
            },
            {
                "price_id": "a/bad-time",
                "provider": "a",
                "model": "bad-time",
                "effective_time": "yesterday",
                "input_per_million": "1",
                "output_per_million": "-2",
            },
        ]
    }
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    done = subprocess.run(
        [sys.executable, "-m", "metering", "prices", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[-1] == f"{path}: 4 problems"
    expected = [
        "prices[1] (a/float).input_per_million: must be a decimal string, got float",
        "prices[2] (a/no-output).output_per_million: required",
        "prices[3] (a/bad-time).effective_time: not an RFC 3339 time",
        "prices[3] (a/bad-time).output_per_million: must not be negative",
    ]
    for fragment in expected:
        assert any(line.startswith(f"{path}: {fragment}") for line in lines), fragment
    litellm = tmp_path / "litellm.json"
    litellm.write_text(
        json.dumps(
            {
                "gpt-x": {
                    "litellm_provider": "openai",
                    "mode": "chat",
                    "input_cost_per_token": -1,
                    "output_cost_per_token": 1e-6,
                }
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "metering", "prices", "check", str(litellm)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        f"{litellm}: 'gpt-x'.input_cost_per_token: must be a finite non-negative number"
        in done.stdout
    )


def test_account_price_override_applies_to_that_account_only(verified: Live) -> None:
    special, regular = verified.new_account(units=10), verified.new_account(units=10)
    verified.admin.AddPrice(
        admin_pb.AddPriceRequest(
            price=prices_pb2.PriceEntry(
                price_id=f"{special}/gpt-4o-mini",
                provider="openai",
                model="gpt-4o-mini",
                account_id=special,
                effective_time=_ts("2025-01-01T00:00:00Z"),
                input_per_million="0.10",
                output_per_million="0.40",
                source="contract 42",
            )
        ),
        timeout=T,
    )
    own = _record(verified, special, "r", "gpt-4o-mini", 1_000_000)
    listed = _record(verified, regular, "r", "gpt-4o-mini", 1_000_000)
    assert (own.price_id, _nanos(own.cost)) == (f"{special}/gpt-4o-mini", 100_000_000)
    assert (listed.price_id, _nanos(listed.cost)) == ("openai/gpt-4o-mini", 150_000_000)
