"""RecordUsageBatch: one result per record; a bad record does not reject the others."""

from __future__ import annotations

import grpc
import pytest

from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2
from tests.e2e.conftest import Live
from tests.support.grpc_errors import details_of


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _item(
    account: str, request_id: str, tokens: int, model: str = "cheap-model"
) -> pb.RecordUsageRequest:
    return pb.RecordUsageRequest(
        account_id=account,
        request_id=request_id,
        model=model,
        usage=types_pb2.TokenUsage(input_tokens=tokens),
    )


def test_batch_records_each_and_reports_each_error(verified: Live) -> None:
    account, other = verified.new_account(units=1), verified.new_account(units=1)
    batch = pb.RecordUsageBatchRequest(
        records=[
            _item(account, "a", 13),
            _item(account, "bad", -1),
            _item(other, "b", 13),
            _item(account, "unpriced", 1, model="nobody-prices-this"),
            _item("no-such-account", "c", 1),
            _item(account, "a", 13),  # the same record twice in one batch: a replay
            _item(account, "a", 14),  # the same key with another payload: a conflict
        ]
    )
    response = verified.metering.RecordUsageBatch(batch, timeout=10)
    results = list(response.results)
    assert len(results) == 7
    ok = [r.response for r in results if r.HasField("response")]
    assert [_nanos(r.cost) for r in ok] == [650, 650, 650]
    assert (
        results[5].response.replayed
        and results[5].response.record_id == results[0].response.record_id
    )
    errors = {i: r.error for i, r in enumerate(results) if r.HasField("error")}
    assert {i: (e.code, e.reason) for i, e in errors.items()} == {
        1: (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_ARGUMENT"),
        3: (grpc.StatusCode.FAILED_PRECONDITION.value[0], "PRICE_NOT_FOUND"),
        4: (grpc.StatusCode.NOT_FOUND.value[0], "ACCOUNT_NOT_FOUND"),
        6: (grpc.StatusCode.ALREADY_EXISTS.value[0], "REQUEST_ID_CONFLICT"),
    }
    assert list(errors[1].fields) == ["records[1].usage.input_tokens"]
    with verified.database.read() as store:
        assert store.count_usage_records(account) == 1
        assert store.count_usage_records(other) == 1
    # Replaying the whole batch writes nothing new.
    before = verified.row_counts()
    again = verified.metering.RecordUsageBatch(batch, timeout=10)
    assert [r.response.replayed for r in again.results if r.HasField("response")] == [True] * 3
    assert verified.row_counts() == before


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_bounded(verified: Live, size: int) -> None:
    account = verified.new_account(units=1)
    before = verified.row_counts()
    with pytest.raises(grpc.RpcError) as caught:
        verified.metering.RecordUsageBatch(
            pb.RecordUsageBatchRequest(records=[_item(account, f"r{i}", 1) for i in range(size)]),
            timeout=30,
        )
    error = details_of(caught.value)
    assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["records"])
    assert verified.row_counts() == before
