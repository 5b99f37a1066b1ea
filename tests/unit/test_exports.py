"""Exports and the review queue over in-memory fakes: validation, paging, totals."""

from __future__ import annotations

import dataclasses
from unittest import mock

import pytest

from metering.domain.accounts import Account, BillingMode
from metering.domain.errors import InvalidArgument, NotFound
from metering.domain.exports import share_reaches
from metering.domain.money import decimal_text
from metering.domain.records import UsageRecord
from metering.domain.usage import TokenUsage, UsageSource
from metering.service import exports
from metering.service.exports import ExportKind, ExportQuery, ReviewQuery, UsageExports
from tests.unit.fakes import FakeDatabase

DAY_US = 86_400_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def _record(record_id: str, time_us: int, source: UsageSource, **extra: object) -> UsageRecord:
    fields: dict[str, object] = {
        "account_id": "a",
        "record_id": record_id,
        "request_id": f"req-{record_id}",
        "transaction_id": "",
        "event_time_us": time_us,
        "record_time_us": time_us,
        "provider": "openai",
        "model": "m",
        "api_key_id": "",
        "service": "",
        "streamed": False,
        "usage_source": source,
        "usage": TokenUsage(input_tokens=7),
        "currency_code": "USD",
        "cost_nanos": 150_000,
        "request_credits": 0,
        "price_id": "",
        "price_version": 0,
        **extra,
    }
    return UsageRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db() -> FakeDatabase:
    database = FakeDatabase()
    with database.write() as store:
        store.insert_account(Account("a", "USD", BillingMode.TOKEN, True, 0))
    return database


def test_decimal_text_is_exact() -> None:
    assert decimal_text(150_000) == "0.000150000"
    assert decimal_text(-1_500_000_001) == "-1.500000001"
    assert decimal_text(0) == "0.000000000"
    assert share_reaches(1, 4, 2500) and not share_reaches(1, 4, 2501)
    assert not share_reaches(0, 0, 0)


def test_records_export_pages_and_totals(db: FakeDatabase) -> None:
    with db.write() as store:
        store.insert_usage_records(
            [_record(f"r{i:02d}", START_US + 5, UsageSource.REPORTED) for i in range(7)]
        )
    with mock.patch.object(exports, "EXPORT_RECORDS_PER_READ", 3):
        run = UsageExports(db).export(ExportQuery(START_US, START_US + DAY_US))
        pages = list(run.pages)
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert [v.record.record_id for p in pages for v in p.records] == [f"r{i:02d}" for i in range(7)]
    assert (run.totals.row_count, run.totals.request_count) == (7, 7)
    assert run.totals.cost_nanos == {"USD": 7 * 150_000}
    assert run.totals.tokens["input_tokens"] == 49


def test_export_validates_before_reading(db: FakeDatabase) -> None:
    service = UsageExports(db)
    with pytest.raises(InvalidArgument) as caught:
        service.export(ExportQuery(None, None, account_id="bad id", time_zone="X/Y"))
    assert [v.field for v in caught.value.violations] == [
        "start_time",
        "end_time",
        "account_id",
        "time_zone",
    ]
    with pytest.raises(NotFound):
        service.export(ExportQuery(START_US, START_US + 1, account_id="nobody"))
    run = service.export(ExportQuery(START_US, START_US + 3 * DAY_US, kind=ExportKind.SUMMARY))
    assert list(run.pages) == [] and run.totals.row_count == 0


def test_review_queue_skips_corrected_calls_and_pages(db: FakeDatabase) -> None:
    with db.write() as store:
        store.insert_usage_records(
            [
                _record("m1", START_US + 1, UsageSource.MISSING),
                _record("m2", START_US + 2, UsageSource.MISSING),
                _record("e1", START_US + 3, UsageSource.ESTIMATED),
                _record("r1", START_US + 4, UsageSource.REPORTED),
                _record(
                    "fix",
                    START_US + 2,
                    UsageSource.CORRECTED,
                    record_kind="ADJUSTMENT",
                    corrects_record_id="m2",
                ),
            ]
        )
    service = UsageExports(db)
    query = ReviewQuery(START_US, START_US + DAY_US, page_size=1)
    first, token = service.review_records(query)
    second, last = service.review_records(dataclasses.replace(query, page_token=token))
    assert [r.record_id for r in first + second] == ["m1", "e1"] and last == ""
    # e1 is one of four calls (25 %).
    high = dataclasses.replace(query, page_size=10, estimated_share_min_bps=2600)
    assert [r.record_id for r in service.review_records(high)[0]] == ["m1"]
    with pytest.raises(InvalidArgument) as caught:
        service.review_records(dataclasses.replace(high, page_token=token))
    assert [v.field for v in caught.value.violations] == ["page_token"]
