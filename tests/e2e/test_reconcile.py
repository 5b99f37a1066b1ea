"""Reconciliation over real gRPC and the real CLI: planted discrepancies are found, applied once.

The local side is recorded through RecordUsage; the upstream side is an
export written here with three planted differences (a call the relay never
reported, an under-counted call, a price difference) next to a call that
matches. Every expected figure is computed here from the test prices
(gpt-4o-mini: 150 nanos per input token, 600 per output token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf import timestamp_pb2

from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2
from tests.conftest import TEST_PRICES
from tests.e2e.conftest import Live

T = 30
INPUT_NANOS, OUTPUT_NANOS = 150, 600
KINDS = admin_pb.DiscrepancyKind


def _cost(input_tokens: int, output_tokens: int) -> int:
    return input_tokens * INPUT_NANOS + output_tokens * OUTPUT_NANOS


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _units(nanos: int) -> str:
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


def _day(days_ago: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def _record(
    live: Live, account: str, request_id: str, key: str, when: datetime, tokens: tuple[int, int]
) -> None:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    live.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id=request_id,
            model="gpt-4o-mini",
            provider="openai",
            api_key_id=key,
            event_time=stamp,
            usage=types_pb2.TokenUsage(input_tokens=tokens[0], output_tokens=tokens[1]),
        ),
        timeout=T,
    )


def _balance(live: Live, account: str) -> int:
    return _nanos(
        live.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=T).balance
    )


def _per_request_export(day: str, key: str) -> bytes:
    header = "date,provider,model,api_key,request_id,requests,input_tokens,output_tokens,cost"
    rows = [
        # Matches what the relay recorded.
        f"{day},openai,gpt-4o-mini-2024-07-18,{key},req-1,1,1000,200,{_units(_cost(1000, 200))}",
        # Under-counted locally: the relay recorded 500 input tokens.
        f"{day},openai,gpt-4o-mini-2024-07-18,{key},req-2,1,800,100,{_units(_cost(800, 100))}",
        # Same tokens, the provider charged 5,000 nanos more.
        f"{day},openai,gpt-4o-mini-2024-07-18,{key},req-3,1,100,50,{_units(_cost(100, 50) + 5000)}",
        # Never reported by the relay.
        f"{day},openai,gpt-4o-mini-2024-07-18,{key},req-4,1,300,60,{_units(_cost(300, 60))}",
    ]
    return ("\n".join([header, *rows]) + "\n").encode()


def _kinds(response: admin_pb.ReconcileResponse) -> dict[str, int]:
    return {line.request_id: line.kind for line in response.discrepancies}


def test_reconciliation_finds_applies_and_then_is_a_no_op(verified: Live) -> None:
    account = verified.new_account(units=10)
    key = f"key-{account}"
    when = _day(2) + timedelta(hours=10)
    day = when.date().isoformat()
    _record(verified, account, "req-1", key, when, (1000, 200))
    _record(verified, account, "req-2", key, when, (500, 100))
    _record(verified, account, "req-3", key, when, (100, 50))
    recorded = _cost(1000, 200) + _cost(500, 100) + _cost(100, 50)
    assert _balance(verified, account) == 10 * 10**9 - recorded
    export = _per_request_export(day, key)
    request = admin_pb.ReconcileRequest(export_data=export, account_id=account)

    # A dry run reports the three planted differences and writes nothing.
    before = verified.row_counts()
    dry = verified.admin.Reconcile(request, timeout=T)
    assert verified.row_counts() == before
    assert _kinds(dry) == {
        "req-1": KINDS.DISCREPANCY_KIND_MATCHED,
        "req-2": KINDS.DISCREPANCY_KIND_TOKENS,
        "req-3": KINDS.DISCREPANCY_KIND_COST,
        "req-4": KINDS.DISCREPANCY_KIND_UPSTREAM_ONLY,
    }
    assert (dry.matched_count, dry.discrepancy_count, dry.applied_count) == (1, 3, 0)
    by_id = {line.request_id: line for line in dry.discrepancies}
    assert _nanos(by_id["req-2"].cost_difference) == _cost(800, 100) - _cost(500, 100)
    assert _nanos(by_id["req-3"].cost_difference) == 5000
    assert by_id["req-2"].upstream_usage.input_tokens == 800
    assert by_id["req-2"].local_usage.input_tokens == 500

    # Tokens only (an account billed with a markup): the price difference is not one.
    tokens_only = verified.admin.Reconcile(
        admin_pb.ReconcileRequest(export_data=export, account_id=account, tokens_only=True),
        timeout=T,
    )
    assert _kinds(tokens_only)["req-3"] == KINDS.DISCREPANCY_KIND_MATCHED
    assert _kinds(tokens_only)["req-2"] == KINDS.DISCREPANCY_KIND_TOKENS
    assert not any(line.HasField("upstream_cost") for line in tokens_only.discrepancies)
    assert verified.row_counts() == before

    # Applied: each difference becomes a correction; the account pays what upstream billed.
    applied = verified.admin.Reconcile(
        admin_pb.ReconcileRequest(export_data=export, account_id=account, apply=True), timeout=T
    )
    assert applied.applied_count == 3
    assert all(line.applied for line in applied.discrepancies if line.request_id != "req-1")
    upstream_total = _cost(1000, 200) + _cost(800, 100) + _cost(100, 50) + 5000 + _cost(300, 60)
    assert _balance(verified, account) == 10 * 10**9 - upstream_total
    assert verified.verify_ledger() == []

    # The same export again: every line matches, nothing is written.
    after = verified.row_counts()
    again = verified.admin.Reconcile(
        admin_pb.ReconcileRequest(export_data=export, account_id=account, apply=True), timeout=T
    )
    assert (again.discrepancy_count, again.applied_count) == (0, 0)
    assert verified.row_counts() == after
    assert _balance(verified, account) == 10 * 10**9 - upstream_total


def _openai_usage_export(day: datetime, key: str, requests: int, tokens: tuple[int, int]) -> bytes:
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": int(day.timestamp()),
                "end_time": int((day + timedelta(days=1)).timestamp()),
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "input_tokens": tokens[0],
                        "output_tokens": tokens[1],
                        "input_cached_tokens": 0,
                        "num_model_requests": requests,
                        "project_id": "proj_1",
                        "api_key_id": key,
                        "model": "gpt-4o-mini-2024-07-18",
                        "batch": False,
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    return json.dumps(page).encode()


def _cli(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METERING_PRICES_FILE": str(TEST_PRICES)}
    return subprocess.run(
        [sys.executable, "-m", "metering", *args, "--database-url", live.database_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_cli_reconciles_an_openai_usage_export_per_day_model_and_key(
    verified: Live, tmp_path: Path
) -> None:
    account = verified.new_account(units=10)
    local_key = f"relay-{account}"
    upstream_key = f"key_{account}"
    day = _day(3)
    for index in range(3):
        _record(
            verified, account, f"call-{index}", local_key, day + timedelta(hours=index), (100, 10)
        )
    # Upstream counted 4 calls and 150 more input tokens on that day, model and key.
    export = tmp_path / "usage.json"
    export.write_bytes(_openai_usage_export(day, upstream_key, 4, (450, 30)))
    args = ["reconcile", str(export), "--key-map", f"{upstream_key}={local_key}"]
    dry = _cli(verified, *args, "--output", "json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["format"] == "OPENAI_USAGE"
    assert [
        (line["kind"], line["local_requests"], line["upstream_requests"])
        for line in report["lines"]
    ] == [("TOKENS", "3", "4")]
    assert report["lines"][0]["local_input_tokens"] == "300"
    before = _balance(verified, account)
    table = _cli(verified, *args, "--apply")
    assert table.returncode == 0, table.stderr
    print(table.stdout)  # the discrepancy report, as an operator sees it
    assert "TOKENS" in table.stdout and "1 corrections written" in table.stdout
    # The export has no cost: the difference is priced at the day's price.
    assert before - _balance(verified, account) == _cost(450, 30) - _cost(300, 30)
    summary = verified.metering.UsageSummary(
        pb.UsageSummaryRequest(
            account_id=account,
            start_time=timestamp_pb2.Timestamp(seconds=int(day.timestamp())),
            end_time=timestamp_pb2.Timestamp(seconds=int((day + timedelta(days=1)).timestamp())),
        ),
        timeout=T,
    )
    assert (summary.totals.request_count, summary.totals.input_tokens) == (4, 450)
    again = _cli(verified, *args, "--apply", "--output", "json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert (rerun["discrepancies"], rerun["applied"]) == (0, 0)
    assert verified.verify_ledger() == []


def _anthropic_usage_export(day: datetime, key: str, output_tokens: int) -> bytes:
    page = {
        "data": [
            {
                "starting_at": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ending_at": (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "results": [
                    {
                        "uncached_input_tokens": 1000,
                        "cache_creation": {
                            "ephemeral_1h_input_tokens": 100,
                            "ephemeral_5m_input_tokens": 300,
                        },
                        "cache_read_input_tokens": 2000,
                        "output_tokens": output_tokens,
                        "server_tool_use": {"web_search_requests": 0},
                        "api_key_id": key,
                        "workspace_id": None,
                        "model": "claude-sonnet-4-5-20250929",
                        "service_tier": "standard",
                        "context_window": "0-200k",
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    return json.dumps(page).encode()


def test_an_anthropic_usage_report_meets_the_normalized_local_usage(verified: Live) -> None:
    """Anthropic counts uncached input apart from cache reads and writes; metering's input
    is the whole prompt. The same call must match, and a lower local output must not."""
    account = verified.new_account(units=10)
    key = f"apikey_{account}"
    day = _day(1)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(day + timedelta(hours=3))
    verified.metering.RecordUsage(
        pb.RecordUsageRequest(
            account_id=account,
            request_id="claude-1",
            model="claude-sonnet-4-5",
            provider="anthropic",
            api_key_id=key,
            event_time=stamp,
            usage=types_pb2.TokenUsage(
                input_tokens=1000 + 400 + 2000,
                cache_read_tokens=2000,
                cache_write_tokens=400,
                cache_write_1h_tokens=100,
                output_tokens=500,
            ),
        ),
        timeout=T,
    )
    same = verified.admin.Reconcile(
        admin_pb.ReconcileRequest(export_data=_anthropic_usage_export(day, key, 500)), timeout=T
    )
    assert [(line.kind, line.account_id) for line in same.discrepancies] == [
        (KINDS.DISCREPANCY_KIND_MATCHED, account)
    ]
    more = verified.admin.Reconcile(
        admin_pb.ReconcileRequest(export_data=_anthropic_usage_export(day, key, 800)), timeout=T
    )
    (line,) = more.discrepancies
    assert line.kind == KINDS.DISCREPANCY_KIND_TOKENS
    # 300 more output tokens at $15 per million, priced at that day's price.
    assert _nanos(line.cost_difference) == 300 * 15_000
