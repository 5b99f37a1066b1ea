"""The use cases over in-memory fakes: rules of idempotency, pricing and summaries."""

from __future__ import annotations

import copy
import json

import pytest

from metering.domain.accounts import BillingMode
from metering.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from metering.domain.ledger import imbalance_by_asset
from metering.domain.pricing import PriceBook
from metering.domain.summary import Granularity, GroupKey
from metering.domain.usage import TokenUsage, UsageSource
from metering.service.commands import (
    CreateAccount,
    EstimateTokens,
    GrantCredits,
    RecordUsage,
    SummaryQuery,
)
from metering.service.handlers import Metering
from metering.service.prices import load_price_book, sync_catalogue
from tests.conftest import TEST_PRICES
from tests.unit.fakes import FakeClock, FakeDatabase

NOW_US = 1_790_000_000_000_000  # 2026-09-21
DAY_US = 86_400_000_000


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def metering(db: FakeDatabase) -> Metering:
    clock = FakeClock(NOW_US)
    sync_catalogue(db, json.loads(TEST_PRICES.read_text()), "test", clock)
    book = load_price_book(db)
    return Metering(db, lambda: book, clock)


def _account(metering: Metering, units: int = 10, **kwargs: object) -> str:
    metering.create_account(CreateAccount(account_id="a", **kwargs))  # type: ignore[arg-type]
    if units:
        metering.grant_credits(
            GrantCredits("a", "grant", amount_nanos=units * 10**9, currency_code="USD")
        )
    return "a"


def test_every_transaction_balances(metering: Metering, db: FakeDatabase) -> None:
    _account(metering)
    metering.record_usage(RecordUsage("a", "r", "gpt-4o-mini", usage=TokenUsage(1000, 500)))
    assert len(db.state.transactions) == 2
    for *_, entries in db.state.transactions:
        assert imbalance_by_asset(entries) == {}


def test_replay_returns_stored_result_without_a_commit(
    metering: Metering, db: FakeDatabase
) -> None:
    _account(metering)
    command = RecordUsage("a", "r", "gpt-4o-mini", usage=TokenUsage(1000, 500))
    first = metering.record_usage(command)
    records = len(db.state.records)
    again = metering.record_usage(command)
    assert again.replayed and not first.replayed
    assert (again.record_id, again.cost_nanos, again.balance_nanos) == (
        first.record_id,
        first.cost_nanos,
        first.balance_nanos,
    )
    assert len(db.state.records) == records


def test_replay_is_answered_even_after_the_price_is_gone(db: FakeDatabase) -> None:
    clock = FakeClock(NOW_US)
    sync_catalogue(db, json.loads(TEST_PRICES.read_text()), "test", clock)
    books = [load_price_book(db)]
    metering = Metering(db, lambda: books[0], clock)
    _account(metering)
    command = RecordUsage("a", "r", "gpt-4o-mini", usage=TokenUsage(10))
    first = metering.record_usage(command)
    books[0] = PriceBook.of([])
    assert metering.record_usage(command).record_id == first.record_id
    with pytest.raises(FailedPrecondition) as caught:
        metering.record_usage(RecordUsage("a", "new", "gpt-4o-mini", usage=TokenUsage(10)))
    assert caught.value.reason == "PRICE_NOT_FOUND"


def test_event_time_default_is_not_part_of_the_payload(metering: Metering) -> None:
    # A retry without event_time, seconds later, is the same request.
    _account(metering)
    command = RecordUsage("a", "r", "gpt-4o-mini", usage=TokenUsage(10))
    metering.record_usage(command)
    metering._clock.now = NOW_US + 5_000_000  # type: ignore[attr-defined]
    assert metering.record_usage(command).replayed


def test_conflict_between_grant_and_usage_keys(metering: Metering) -> None:
    _account(metering)
    with pytest.raises(AlreadyExists) as caught:
        metering.record_usage(RecordUsage("a", "grant", "gpt-4o-mini", usage=TokenUsage(1)))
    assert caught.value.reason == "REQUEST_ID_CONFLICT"


def test_errors_commit_nothing(metering: Metering, db: FakeDatabase) -> None:
    _account(metering)
    before = copy.deepcopy(db.state)
    with pytest.raises(NotFound):
        metering.record_usage(RecordUsage("nobody", "r", "gpt-4o-mini"))
    with pytest.raises(InvalidArgument):
        metering.record_usage(RecordUsage("a", "r", "gpt-4o-mini", usage=TokenUsage(-1)))
    with pytest.raises(FailedPrecondition):
        metering.record_usage(RecordUsage("a", "r", "unknown-model", usage=TokenUsage(1)))
    with pytest.raises(FailedPrecondition) as caught:
        metering.grant_credits(GrantCredits("a", "eur", amount_nanos=1, currency_code="EUR"))
    assert caught.value.reason == "CURRENCY_MISMATCH"
    assert db.state == before


def test_request_billing_debits_credits_not_money(metering: Metering) -> None:
    metering.create_account(CreateAccount("r", billing_mode=BillingMode.REQUEST))
    metering.grant_credits(GrantCredits("r", "g", request_credits=2))
    first = metering.record_usage(RecordUsage("r", "1", "gpt-4o-mini", usage=TokenUsage(10**6)))
    second = metering.record_usage(RecordUsage("r", "2", "gpt-4o-mini", usage=TokenUsage(10**6)))
    assert (first.cost_nanos, first.request_credits_charged, first.request_credits) == (0, 1, 1)
    assert not first.balance_exhausted
    assert (second.request_credits, second.balance_exhausted) == (0, True)


def test_hybrid_billing_prefers_the_per_request_price(metering: Metering) -> None:
    metering.create_account(
        CreateAccount("h", billing_mode=BillingMode.HYBRID, allow_negative_balance=True)
    )
    per_request = metering.record_usage(
        RecordUsage("h", "1", "per-request-model", usage=TokenUsage(10**6))
    )
    tokens = metering.record_usage(RecordUsage("h", "2", "gpt-4o-mini", usage=TokenUsage(10**6)))
    assert (per_request.cost_nanos, per_request.request_credits_charged) == (0, 3)
    assert (tokens.cost_nanos, tokens.request_credits_charged) == (150_000_000, 0)


def test_missing_usage_is_one_request_with_zero_tokens(
    metering: Metering, db: FakeDatabase
) -> None:
    _account(metering)
    result = metering.record_usage(RecordUsage("a", "r", "fee-model"))
    assert result.usage_source is UsageSource.MISSING
    assert result.cost_nanos == 10_000_000  # the per-request fee still applies
    assert db.state.records[-1].usage == TokenUsage()


def test_estimate_prices_exact_tokens(metering: Metering) -> None:
    estimate = metering.estimate_tokens(
        EstimateTokens("gpt-4o-mini", text="tiktoken is great!", max_output_tokens=100)
    )
    assert (estimate.input_tokens, estimate.exact, estimate.tokenizer) == (6, True, "o200k_base")
    assert estimate.estimated_cost_nanos == 900  # 6 x 150 nanos
    assert estimate.worst_case_cost_nanos == 900 + 100 * 600


def test_estimate_for_unpriced_model_has_no_cost(metering: Metering) -> None:
    estimate = metering.estimate_tokens(EstimateTokens("some-open-model", text="abcdefgh"))
    assert (estimate.input_tokens, estimate.exact) == (2, False)
    assert estimate.estimated_cost_nanos is None and estimate.price_id == ""


def test_summary_refuses_mixed_currencies_without_a_filter(metering: Metering) -> None:
    metering.create_account(CreateAccount("usd", allow_negative_balance=True))
    metering.create_account(CreateAccount("eur", currency_code="EUR", allow_negative_balance=True))
    metering.record_usage(RecordUsage("usd", "r", "gpt-4o-mini", usage=TokenUsage(10)))
    db = metering._db
    with db.write() as store:  # an EUR record, as a later EUR price book would produce
        record = store.state.records[0]  # type: ignore[attr-defined]
        store.insert_usage_record(
            type(record)(**{**record.__dict__, "account_id": "eur", "currency_code": "EUR"})
        )
    query = SummaryQuery(NOW_US - DAY_US, NOW_US + DAY_US, group_by=(GroupKey.MODEL,))
    with pytest.raises(FailedPrecondition) as caught:
        metering.usage_summary(query)
    assert caught.value.reason == "MIXED_CURRENCIES"
    only_eur = metering.usage_summary(
        SummaryQuery(NOW_US - DAY_US, NOW_US + DAY_US, currency_code="EUR")
    )
    assert only_eur.totals.currency_code == "EUR" and only_eur.totals.request_count == 1


def test_page_token_is_bound_to_its_query(metering: Metering) -> None:
    _account(metering)
    for index in range(3):
        metering.record_usage(
            RecordUsage("a", f"r{index}", "gpt-4o-mini", service=f"s{index}", usage=TokenUsage(1))
        )
    query = SummaryQuery(
        NOW_US - DAY_US,
        NOW_US + DAY_US,
        account_id="a",
        group_by=(GroupKey.SERVICE,),
        granularity=Granularity.DAY,
        page_size=2,
    )
    first = metering.usage_summary(query)
    assert len(first.rows) == 2 and first.next_page_token
    other = SummaryQuery(**{**query.__dict__, "time_zone": "Asia/Tokyo"})
    with pytest.raises(InvalidArgument) as caught:
        metering.usage_summary(
            SummaryQuery(**{**other.__dict__, "page_token": first.next_page_token})
        )
    assert [v.field for v in caught.value.violations] == ["page_token"]
    rest = metering.usage_summary(
        SummaryQuery(**{**query.__dict__, "page_token": first.next_page_token})
    )
    assert [row.keys for row in rest.rows] == [("s2",)] and rest.next_page_token == ""
