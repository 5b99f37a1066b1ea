"""ExportUsage and ListReviewRecords over real gRPC and real databases, and their commands.

Records whose usage source the RPCs cannot produce yet (ESTIMATED calls, CORRECTED
adjustments) are inserted through the store at zero cost: the ledger has nothing to
say about them, so `ledger verify` stays clean.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from metering.domain.records import UsageRecord
from metering.domain.usage import TokenUsage, UsageSource
from metering.service.exports import EXPORT_RECORDS_PER_READ
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import prices_pb2, types_pb2
from tests.conftest import TEST_PRICES
from tests.e2e.conftest import Live
from tests.e2e.test_grpcurl import _run as grpcurl
from tests.support.grpc_errors import details_of

T = 30
HOUR_US = 3600 * 1_000_000


def _ts(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    return ts


def _ts_us(time_us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=time_us // 1_000_000, nanos=time_us % 1_000_000 * 1000)


def _us(text: str) -> int:
    ts = _ts(text)
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _now_window() -> tuple[timestamp_pb2.Timestamp, timestamp_pb2.Timestamp]:
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.GetCurrentTime()
    start.seconds -= 3600
    end.GetCurrentTime()
    end.seconds += 3600
    return start, end


def _export(
    live: Live, **fields: object
) -> tuple[list[admin_pb.ExportUsageResponse], admin_pb.ExportTotals]:
    messages = list(
        live.admin.ExportUsage(admin_pb.ExportUsageRequest(**fields), timeout=120)  # type: ignore[arg-type]
    )
    assert messages and messages[-1].HasField("totals")
    assert not any(m.HasField("totals") for m in messages[:-1])
    return messages[:-1], messages[-1].totals


def _cli(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering", *args, "--database-url", live.database_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={"METERING_PRICES_FILE": str(TEST_PRICES), "PATH": "/usr/bin:/bin"},
    )


def _insert(
    live: Live,
    account: str,
    time_us: int,
    source: UsageSource,
    *,
    kind: str = "USAGE",
    corrects: str | None = None,
    request_count: int = 1,
    model: str = "gpt-4o-mini",
) -> str:
    """A zero-cost row written straight through the store (no ledger transaction)."""
    record_id = uuid.uuid4().hex
    with live.database.write() as store:
        store.insert_usage_record(
            UsageRecord(
                account_id=account,
                record_id=record_id,
                request_id=f"direct-{record_id}",
                transaction_id="",
                event_time_us=time_us,
                record_time_us=time_us,
                provider="openai",
                model=model,
                api_key_id="",
                service="",
                streamed=False,
                usage_source=source,
                usage=TokenUsage(input_tokens=10 * request_count),
                currency_code="USD",
                cost_nanos=0,
                request_credits=0,
                price_id="",
                price_version=0,
                record_kind=kind,
                request_count=request_count,
                corrects_record_id=corrects,
            )
        )
    return record_id


def _correct(live: Live, account: str, record_id: str, time_us: int, first: UsageSource) -> None:
    """The two adjustments a correction writes: the previous figure reversed, the new one."""
    _insert(live, account, time_us, first, kind="ADJUSTMENT", corrects=record_id, request_count=-1)
    _insert(
        live,
        account,
        time_us,
        UsageSource.CORRECTED,
        kind="ADJUSTMENT",
        corrects=record_id,
        request_count=1,
    )


# Exports -------------------------------------------------------------------


def test_export_totals_tie_to_the_ledger_after_repricing(verified: Live) -> None:
    account = f"acct-{uuid.uuid4().hex[:12]}"
    verified.admin.CreateAccount(
        admin_pb.CreateAccountRequest(
            account_id=account,
            unpriced_policy=prices_pb2.UNPRICED_POLICY_RECORD,
            allow_negative_balance=True,
        ),
        timeout=T,
    )
    verified.admin.GrantCredits(
        admin_pb.GrantCreditsRequest(
            account_id=account,
            request_id="grant",
            amount=types_pb2.Money(currency_code="USD", units=10),
        ),
        timeout=T,
    )
    model = f"model-{uuid.uuid4().hex[:10]}"
    for index in range(3):
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id=f"mini-{index}",
                model="gpt-4o-mini",
                provider="openai",
                usage=types_pb2.TokenUsage(input_tokens=1000 + index, output_tokens=500),
            ),
            timeout=T,
        )
    verified.metering.RecordUsage(  # no usage: MISSING
        pb.RecordUsageRequest(account_id=account, request_id="lost", model="gpt-4o-mini"),
        timeout=T,
    )
    for index in range(2):  # unpriced now, repriced below: ADJUSTMENT rows
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id=f"new-{index}",
                model=model,
                usage=types_pb2.TokenUsage(input_tokens=1_000_000 * (index + 1)),
            ),
            timeout=T,
        )
    verified.admin.AddPrice(
        admin_pb.AddPriceRequest(
            price=prices_pb2.PriceEntry(
                price_id=f"acme/{model}",
                provider="acme",
                model=model,
                effective_time=_ts("2025-01-01T00:00:00Z"),
                input_per_million="0.5",
                output_per_million="0",
                source="test",
            )
        ),
        timeout=T,
    )
    start, end = _now_window()
    window = ["--from", start.ToJsonString(), "--to", end.ToJsonString(), "--account", account]
    applied = _cli(verified, "prices", "reprice", *window, "--apply")
    assert "applied 2 corrections" in applied.stdout, applied.stdout + applied.stderr

    rows, totals = _export(verified, account_id=account, start_time=start, end_time=end)
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=T)
    debited = 10_000_000_000 - _nanos(balance.balance)
    assert debited > 1_500_000_000  # the repricing charged $0.50 + $1.00
    assert [(m.currency_code, _nanos(m)) for m in totals.cost] == [("USD", debited)]
    assert (totals.row_count, totals.request_count) == (8, 6)
    kinds = sorted(m.record.record_kind for m in rows)
    assert kinds == ["ADJUSTMENT"] * 2 + ["USAGE"] * 6
    # The totals are the sums of exactly the rows streamed.
    assert sum(_nanos(m.record.cost) for m in rows) == debited
    assert sum(m.record.usage.input_tokens for m in rows) == totals.usage.input_tokens
    assert sum(m.record.request_count for m in rows) == totals.request_count
    keys = [(m.record.event_time.ToMicroseconds(), m.record.record_id) for m in rows]
    assert keys == sorted(keys)
    adjustment = next(m.record for m in rows if m.record.record_kind == "ADJUSTMENT")
    assert adjustment.corrects_record_id and adjustment.request_count == 0
    assert not adjustment.corrected  # a repricing is not a correction of the usage
    lost = next(m.record for m in rows if m.record.request_id == "lost")
    assert lost.usage_source == types_pb2.USAGE_SOURCE_MISSING and not lost.corrected

    summary, summary_totals = _export(
        verified,
        account_id=account,
        start_time=start,
        end_time=end,
        kind=admin_pb.EXPORT_KIND_SUMMARY,
    )
    assert [(m.currency_code, _nanos(m)) for m in summary_totals.cost] == [("USD", debited)]
    assert summary_totals.request_count == 6
    assert summary_totals.row_count == len(summary)
    by_source = {(m.row.model, m.row.usage_source): m.row for m in summary}
    assert by_source[("gpt-4o-mini", types_pb2.USAGE_SOURCE_MISSING)].missing_request_count == 1
    assert by_source[(model, types_pb2.USAGE_SOURCE_REPORTED)].request_count == 2
    assert all(m.row.account_id == account for m in summary)


def test_export_streams_more_rows_than_one_read_in_key_order(verified: Live) -> None:
    account = verified.new_account(units=100)
    # One instant for all: the keyset must break ties by account and record id.
    moment = _ts("2025-06-15T12:00:00Z")
    count = EXPORT_RECORDS_PER_READ + 150
    for first in range(0, count, 500):
        verified.metering.RecordUsageBatch(
            pb.RecordUsageBatchRequest(
                records=[
                    pb.RecordUsageRequest(
                        account_id=account,
                        request_id=f"bulk-{index}",
                        model="gpt-4o-mini",
                        provider="openai",
                        event_time=moment,
                        usage=types_pb2.TokenUsage(input_tokens=100, output_tokens=10),
                    )
                    for index in range(first, min(first + 500, count))
                ]
            ),
            timeout=120,
        )
    rows, totals = _export(
        verified,
        start_time=_ts("2025-06-15T00:00:00Z"),
        end_time=_ts("2025-06-16T00:00:00Z"),
    )
    ids = [m.record.record_id for m in rows]
    assert len(ids) == len(set(ids)) == count == totals.row_count
    assert ids == sorted(ids)
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=T)
    assert [_nanos(m) for m in totals.cost] == [100_000_000_000 - _nanos(balance.balance)]
    assert totals.usage.input_tokens == 100 * count

    # An interrupted export resumes after the last record it delivered, across reads.
    window = {"start_time": _ts("2025-06-15T00:00:00Z"), "end_time": _ts("2025-06-16T00:00:00Z")}
    cut = EXPORT_RECORDS_PER_READ - 10
    rest, rest_totals = _export(verified, page_token=rows[cut - 1].resume_token, **window)
    assert [m.record.record_id for m in rest] == ids[cut:]
    assert rest_totals.row_count == count - cut  # the totals of this call's rows
    # A token resumes only the query it came from, and only a RECORDS export.
    token = rows[0].resume_token
    summary = admin_pb.EXPORT_KIND_SUMMARY
    for fields in (
        {"page_token": "garbage", **window},
        {"page_token": token, "account_id": account, **window},
        {"page_token": token, "kind": summary, **window},
    ):
        with pytest.raises(grpc.RpcError) as bad:
            _export(verified, **fields)
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in details_of(bad.value).fields


def test_export_flags_corrected_calls_and_summary_counts_them_as_corrected(
    verified: Live,
) -> None:
    account = verified.new_account()
    base = _us("2025-04-10T10:00:00Z")
    estimated = _insert(verified, account, base, UsageSource.ESTIMATED)
    reported = _insert(verified, account, base + 1, UsageSource.REPORTED)
    _correct(verified, account, estimated, base, UsageSource.ESTIMATED)
    rows, totals = _export(
        verified,
        account_id=account,
        start_time=_ts("2025-04-10T00:00:00Z"),
        end_time=_ts("2025-04-11T00:00:00Z"),
    )
    views = {m.record.record_id: m.record for m in rows}
    assert views[estimated].corrected and not views[reported].corrected
    adjustments = [v for v in views.values() if v.record_kind == "ADJUSTMENT"]
    assert {v.usage_source for v in adjustments} == {
        types_pb2.USAGE_SOURCE_ESTIMATED,
        types_pb2.USAGE_SOURCE_CORRECTED,
    }
    assert all(v.corrects_record_id == estimated and not v.corrected for v in adjustments)
    assert (totals.row_count, totals.request_count) == (4, 2)
    summary, _ = _export(
        verified,
        account_id=account,
        start_time=_ts("2025-04-10T00:00:00Z"),
        end_time=_ts("2025-04-11T00:00:00Z"),
        kind=admin_pb.EXPORT_KIND_SUMMARY,
    )
    counts = {m.row.usage_source: m.row.request_count for m in summary}
    assert counts == {
        types_pb2.USAGE_SOURCE_ESTIMATED: 0,
        types_pb2.USAGE_SOURCE_REPORTED: 1,
        types_pb2.USAGE_SOURCE_CORRECTED: 1,
    }


def test_export_summary_days_follow_the_time_zone(verified: Live) -> None:
    account = verified.new_account()
    _insert(verified, account, _us("2025-05-01T21:30:00Z"), UsageSource.REPORTED)
    _insert(verified, account, _us("2025-05-01T22:30:00Z"), UsageSource.REPORTED)
    window = {
        "account_id": account,
        "start_time": _ts("2025-05-01T00:00:00Z"),
        "end_time": _ts("2025-05-03T00:00:00Z"),
        "kind": admin_pb.EXPORT_KIND_SUMMARY,
    }
    utc, _ = _export(verified, **window)
    assert [(m.row.start_time.ToJsonString(), m.row.request_count) for m in utc] == [
        ("2025-05-01T00:00:00Z", 2)
    ]
    berlin, totals = _export(verified, **window, time_zone="Europe/Berlin")  # UTC+2 in May
    assert [(m.row.start_time.ToJsonString(), m.row.request_count) for m in berlin] == [
        ("2025-05-01T00:00:00Z", 1),  # the range starts inside the local day
        ("2025-05-01T22:00:00Z", 1),
    ]
    assert (totals.row_count, totals.request_count) == (2, 2)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"end_time": "2025-01-02T00:00:00Z"}, "start_time"),
        ({"start_time": "2025-01-02T00:00:00Z"}, "end_time"),
        ({"start_time": "2025-01-02T00:00:00Z", "end_time": "2025-01-01T00:00:00Z"}, "end_time"),
        ({"start_time": "2025-01-01T00:00:00Z", "end_time": "2026-02-06T00:00:00Z"}, "end_time"),
        ({"account_id": "bad account!"}, "account_id"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"kind": 99}, "kind"),
    ],
)
def test_export_refuses_bad_input_naming_the_field(
    verified: Live, fields: dict[str, object], field: str
) -> None:
    request = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z", **fields}
    for name in ("start_time", "end_time"):
        if name in request:
            request[name] = _ts(str(request[name]))
    if field in ("start_time", "end_time") and field not in fields:
        del request[field]
    with pytest.raises(grpc.RpcError) as caught:
        list(verified.admin.ExportUsage(admin_pb.ExportUsageRequest(**request), timeout=T))  # type: ignore[arg-type]
    error = details_of(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [field]


def test_export_of_an_unknown_account_is_not_found(verified: Live) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _export(
            verified,
            account_id="nobody-here",
            start_time=_ts("2025-01-01T00:00:00Z"),
            end_time=_ts("2025-01-02T00:00:00Z"),
        )
    error = details_of(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")


# The review queue ---------------------------------------------------------------

_REVIEW_START, _REVIEW_END = "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"


def _review_accounts(live: Live) -> dict[str, str]:
    """Two accounts in a day of their own: A estimates half its calls, B a quarter.

    The ids sort A before B, so calls at the same instant list A's first.
    """
    suffix = uuid.uuid4().hex[:8]
    a, b = f"review-a-{suffix}", f"review-b-{suffix}"
    for account in (a, b):
        live.admin.CreateAccount(admin_pb.CreateAccountRequest(account_id=account), timeout=T)
    t = _us(_REVIEW_START) + HOUR_US
    ids = {
        "a_missing": _insert(live, a, t + 1, UsageSource.MISSING),
        "a_estimated": _insert(live, a, t + 2, UsageSource.ESTIMATED),
        "a_reported": _insert(live, a, t + 3, UsageSource.REPORTED),
        "a_corrected": _insert(live, a, t + 4, UsageSource.ESTIMATED),
        "b_estimated": _insert(live, b, t + 1, UsageSource.ESTIMATED),
        "b_missing_corrected": _insert(live, b, t + 5, UsageSource.MISSING),
        "b_reported_1": _insert(live, b, t + 6, UsageSource.REPORTED),
        "b_reported_2": _insert(live, b, t + 7, UsageSource.REPORTED),
        "a": a,
        "b": b,
    }
    _correct(live, a, ids["a_corrected"], t + 4, UsageSource.ESTIMATED)
    _correct(live, b, ids["b_missing_corrected"], t + 5, UsageSource.MISSING)
    # A repricing adjustment is no correction: the estimate stays in the queue.
    _insert(
        live,
        a,
        t + 2,
        UsageSource.ESTIMATED,
        kind="ADJUSTMENT",
        corrects=ids["a_estimated"],
        request_count=0,
    )
    return ids


def _review(live: Live, **fields: object) -> admin_pb.ListReviewRecordsResponse:
    request = admin_pb.ListReviewRecordsRequest(
        **{"start_time": _ts(_REVIEW_START), "end_time": _ts(_REVIEW_END), **fields}  # type: ignore[arg-type]
    )
    response: admin_pb.ListReviewRecordsResponse = live.admin.ListReviewRecords(request, timeout=T)
    return response


def test_review_queue_lists_missing_and_high_share_estimates_oldest_first(
    verified: Live,
) -> None:
    ids = _review_accounts(verified)
    names = {record_id: name for name, record_id in ids.items()}

    def listed(**fields: object) -> list[str]:
        response = _review(verified, **fields, page_size=1000)
        assert response.next_page_token == ""
        assert all(r.record_kind == "USAGE" and not r.corrected for r in response.records)
        return [
            names[r.record_id] for r in response.records if r.account_id in (ids["a"], ids["b"])
        ]

    assert listed() == ["a_missing", "b_estimated", "a_estimated"]
    # B estimated 1 of its 4 calls (25 %), A 2 of 4 (50 %; the corrected one still counts).
    assert listed(estimated_share_min_basis_points=2500) == [
        "a_missing",
        "b_estimated",
        "a_estimated",
    ]
    assert listed(estimated_share_min_basis_points=2501) == ["a_missing", "a_estimated"]
    assert listed(estimated_share_min_basis_points=5000) == ["a_missing", "a_estimated"]
    assert listed(estimated_share_min_basis_points=5001) == ["a_missing"]
    assert listed(estimated_share_min_basis_points=10000) == ["a_missing"]
    assert listed(account_id=ids["b"]) == ["b_estimated"]
    assert listed(account_id=ids["b"], estimated_share_min_basis_points=3000) == []
    first = _review(verified, account_id=ids["a"]).records[0]
    assert first.usage_source == types_pb2.USAGE_SOURCE_MISSING
    assert first.request_id.startswith("direct-") and first.request_count == 1


def test_review_queue_pages_with_tokens_bound_to_the_query(verified: Live) -> None:
    ids = _review_accounts(verified)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        response = _review(verified, account_id=ids["a"], page_size=1, page_token=token)
        seen += [r.record_id for r in response.records]
        pages += 1
        token = response.next_page_token
        if not token:
            break
    assert (seen, pages) == ([ids["a_missing"], ids["a_estimated"]], 2)
    token = _review(verified, account_id=ids["a"], page_size=1).next_page_token
    # A larger page from the same token continues; another query may not use it.
    rest = _review(verified, account_id=ids["a"], page_size=50, page_token=token)
    assert [r.record_id for r in rest.records] == [ids["a_estimated"]]
    with pytest.raises(grpc.RpcError) as caught:
        _review(
            verified,
            account_id=ids["a"],
            estimated_share_min_basis_points=100,
            page_token=token,
        )
    error = details_of(caught.value)
    assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"estimated_share_min_basis_points": 10001}, "estimated_share_min_basis_points"),
        ({"estimated_share_min_basis_points": -1}, "estimated_share_min_basis_points"),
        ({"page_size": 1001}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"account_id": "bad account!"}, "account_id"),
        ({"end_time": _ts("2025-02-01T00:00:00Z")}, "end_time"),
        ({"end_time": _ts("2026-04-06T00:00:00Z")}, "end_time"),
    ],
)
def test_review_queue_refuses_bad_input_naming_the_field(
    verified: Live, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _review(verified, **fields)
    error = details_of(caught.value)
    assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])


def test_review_queue_requires_the_range(verified: Live) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        verified.admin.ListReviewRecords(admin_pb.ListReviewRecordsRequest(), timeout=T)
    error = details_of(caught.value)
    assert (error.code, error.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["start_time", "end_time"],
    )
    with pytest.raises(grpc.RpcError) as caught:
        _review(verified, account_id="nobody-here")
    assert details_of(caught.value).code == grpc.StatusCode.NOT_FOUND


# Commands and grpcurl -------------------------------------------------------------


def test_usage_export_command_streams_csv_and_jsonl_with_exact_money(
    verified: Live, tmp_path: Path
) -> None:
    account = verified.new_account(units=5)
    for index in range(3):
        verified.metering.RecordUsage(
            pb.RecordUsageRequest(
                account_id=account,
                request_id=f"cli-{index}",
                model="gpt-4o-mini",
                provider="openai",
                usage=types_pb2.TokenUsage(
                    input_tokens=1000, output_tokens=500, cache_read_tokens=200
                ),
            ),
            timeout=T,
        )
    start, end = _now_window()
    window = ["--start", start.ToJsonString(), "--end", end.ToJsonString(), "--account", account]
    output = tmp_path / "usage.csv"
    done = _cli(verified, "usage", "export", *window, "--output", str(output))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert len(rows) == 3
    assert {(r["cost"], r["cost_nanos"], r["currency_code"]) for r in rows} == {
        ("0.000435000", "435000", "USD")
    }
    assert {r["usage_source"] for r in rows} == {"REPORTED"} and rows[0]["corrected"] == "false"
    assert "exported 3 rows, 3 requests; cost USD 0.001305000 (1305000 nanos)" in done.stderr

    done = _cli(verified, "usage", "export", *window, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 4 and [line["request_id"] for line in lines[:3]] == [
        "cli-0",
        "cli-1",
        "cli-2",
    ]
    assert lines[-1]["totals"]["cost"] == [
        {"currency_code": "USD", "amount": "0.001305000", "nanos": 1305000}
    ]
    assert lines[-1]["totals"]["row_count"] == 3 and lines[-1]["totals"]["input_tokens"] == 3000

    done = _cli(verified, "usage", "export", *window, "--kind", "summary", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert summary[0]["request_count"] == 3 and summary[0]["cost"] == "0.001305000"
    assert summary[-1]["totals"]["request_count"] == 3

    bad = _cli(verified, "usage", "export", *window, "--time-zone", "Nowhere/Else")
    assert bad.returncode == 2 and "time_zone" in bad.stderr and bad.stdout == ""


def test_review_list_command(verified: Live) -> None:
    ids = _review_accounts(verified)
    window = ["--start", _REVIEW_START, "--end", _REVIEW_END, "--account", ids["a"]]
    done = _cli(verified, "review", "list", *window, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["record_id"] for r in rows] == [ids["a_missing"], ids["a_estimated"]]
    assert "2 records to review" in done.stderr
    done = _cli(verified, "review", "list", *window, "--estimated-share-min", "50.01")
    assert done.returncode == 0, done.stderr
    assert f"direct-{ids['a_missing']}" in done.stdout  # the table shows request ids
    assert f"direct-{ids['a_estimated']}" not in done.stdout
    done = _cli(verified, "review", "list", *window, "--limit", "1", "--format", "jsonl")
    assert [json.loads(line)["record_id"] for line in done.stdout.splitlines()] == [
        ids["a_missing"]
    ]
    assert "more remain" in done.stderr
    bad = _cli(verified, "review", "list", *window, "--estimated-share-min", "100.5")
    assert bad.returncode == 2 and "--estimated-share-min" in bad.stderr


def test_grpcurl_exports_usage(verified: Live) -> None:
    account = verified.new_account()
    _insert(verified, account, _us("2025-07-01T10:00:00Z"), UsageSource.REPORTED)
    output = grpcurl(
        verified,
        "metering.v1.MeteringAdminService/ExportUsage",
        body={
            "account_id": account,
            "start_time": "2025-07-01T00:00:00Z",
            "end_time": "2025-07-02T00:00:00Z",
        },
    )
    decoder, messages, position = json.JSONDecoder(), [], 0
    while position < len(output.strip()):
        message, position = decoder.raw_decode(output, position)
        messages.append(message)
        while position < len(output) and output[position].isspace():
            position += 1
    assert len(messages) == 2
    assert messages[0]["record"]["account_id"] == account
    assert messages[0]["record"]["usage_source"] == "USAGE_SOURCE_REPORTED"
    assert messages[1]["totals"]["row_count"] == "1"  # int64 in JSON is a string
