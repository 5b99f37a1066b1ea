"""MeteringClient against the real server: responses, typed errors, helpers."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from google.protobuf import timestamp_pb2
from support import MeteringServer, nanos

import metering_client
from metering_client import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    MeteringClient,
    MeteringError,
    NotFoundError,
    RecordUsageRequest,
    TokenUsage,
)
from metering_client.v1 import metering_service_pb2


def test_record_usage_explicit_usage(client: MeteringClient, account: str) -> None:
    resp = client.record_usage(
        account_id=account,
        request_id="r1",
        model="gpt-4o-mini",
        provider="openai",
        usage={"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 200},
    )
    assert nanos(resp.cost) == 435_000
    assert nanos(resp.balance) == 10 * 10**9 - 435_000
    assert not resp.replayed
    assert resp.price_id == "openai/gpt-4o-mini"
    again = client.record_usage(
        RecordUsageRequest(
            account_id=account,
            request_id="r1",
            model="gpt-4o-mini",
            provider="openai",
            usage=TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=200),
        )
    )
    assert again.replayed and again.record_id == resp.record_id


def test_request_as_mapping(client: MeteringClient, account: str) -> None:
    resp = client.get_balance({"account_id": account})
    assert resp.currency_code == "USD" and nanos(resp.balance) == 10 * 10**9


def test_request_and_fields_are_exclusive(client: MeteringClient, account: str) -> None:
    with pytest.raises(TypeError):
        client.get_balance({"account_id": account}, account_id=account)


def test_not_found_is_typed(client: MeteringClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_balance(account_id="py-does-not-exist")
    err = info.value
    assert isinstance(err, MeteringError)
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason == "ACCOUNT_NOT_FOUND"
    assert err.domain == "metering.dev"
    assert not err.retryable
    assert "NOT_FOUND ACCOUNT_NOT_FOUND" in str(err)
    assert isinstance(err.__cause__, grpc.RpcError)


def test_invalid_argument_lists_every_field(client: MeteringClient, account: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.record_usage(
            account_id=account,
            request_id="",
            model="gpt-4o-mini",
            usage={"input_tokens": -1, "output_tokens": 1},
        )
    err = info.value
    assert err.reason == "INVALID_ARGUMENT"
    assert set(err.fields) == {"request_id", "usage.input_tokens"}
    assert all(v.description for v in err.field_violations)


def test_conflict_and_price_not_found(client: MeteringClient, account: str) -> None:
    client.record_usage(
        account_id=account, request_id="c1", model="gpt-4o-mini", usage={"input_tokens": 1}
    )
    with pytest.raises(AlreadyExistsError) as conflict:
        client.record_usage(
            account_id=account, request_id="c1", model="gpt-4o-mini", usage={"input_tokens": 2}
        )
    assert conflict.value.reason == "REQUEST_ID_CONFLICT"
    with pytest.raises(FailedPreconditionError) as unpriced:
        client.record_usage(
            account_id=account, request_id="c2", model="no-such-model", usage={"input_tokens": 1}
        )
    assert unpriced.value.reason == "PRICE_NOT_FOUND"


def test_create_account_duplicate(client: MeteringClient, account: str) -> None:
    with pytest.raises(AlreadyExistsError) as info:
        client.create_account(account_id=account)
    assert info.value.reason == "ACCOUNT_ALREADY_EXISTS"


def test_estimate_tokens(client: MeteringClient) -> None:
    resp = client.estimate_tokens(model="gpt-4o-mini", text="tiktoken is great!")
    assert resp.input_tokens == 6
    assert resp.method == metering_service_pb2.ESTIMATE_METHOD_EXACT
    assert resp.tokenizer == "o200k_base"


def test_batch_results_and_record_errors(client: MeteringClient, account: str) -> None:
    resp = client.record_usage_batch(
        records=[
            {"account_id": account, "request_id": "b1", "model": "gpt-4o-mini",
             "usage": {"input_tokens": 100, "output_tokens": 50}},
            {"account_id": account, "request_id": "b2", "model": "nope",
             "usage": {"input_tokens": 1}},
        ]
    )  # fmt: skip
    assert nanos(resp.results[0].response.cost) == 45_000
    err = metering_client.errors.from_record_error(resp.results[1].error)
    assert isinstance(err, FailedPreconditionError) and err.reason == "PRICE_NOT_FOUND"


def test_usage_summary_with_datetimes(client: MeteringClient, account: str) -> None:
    client.record_usage(
        account_id=account,
        request_id="s1",
        model="gpt-4o-mini",
        usage={"input_tokens": 10, "output_tokens": 5},
    )
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    now = dt.datetime.now(dt.UTC)
    start.FromDatetime(now - dt.timedelta(hours=1))
    end.FromDatetime(now + dt.timedelta(hours=1))
    resp = client.usage_summary(account_id=account, start_time=start, end_time=end)
    assert resp.totals.request_count == 1
    assert resp.totals.input_tokens == 10


def test_record_usage_from_response(client: MeteringClient, account: str) -> None:
    body = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                  "prompt_tokens_details": {"cached_tokens": 200}},
    }  # fmt: skip
    resp = client.record_usage_from_response(
        json.dumps(body),
        account_id=account,
        request_id="chatcmpl-x",
        model="gpt-4o-mini",
        provider="openai",
        response_format="OPENAI_CHAT_COMPLETIONS",
    )
    assert nanos(resp.cost) == 435_000
    assert resp.usage == TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=200)


def test_default_metadata_and_deadline(server: MeteringServer, account: str) -> None:
    with MeteringClient(server.address, metadata=[("x-relay", "test")], timeout=5) as c:
        assert c.get_balance(account_id=account, timeout=2).currency_code == "USD"


def test_client_does_not_import_the_server_package() -> None:
    import sys

    assert "metering" not in sys.modules or not hasattr(sys.modules["metering"], "cli")
    assert metering_client.v1.types_pb2.__name__ == "metering_client.v1.types_pb2"
    assert TokenUsage.__module__ == "metering_client.v1.types_pb2"


def test_correct_usage_debits_the_difference_and_replays(
    client: MeteringClient, account: str
) -> None:
    first = client.record_usage(
        account_id=account,
        request_id="cu-1",
        model="gpt-4o-mini",
        provider="openai",
        usage={"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 200},
    )
    assert nanos(first.cost) == 435_000
    before = nanos(client.get_balance(account_id=account).balance)

    # 2000 x 0.15 + 1000 x 0.60 USD per million tokens.
    fixed = client.correct_usage(
        account_id=account,
        request_id="cu-1",
        usage={"input_tokens": 2000, "output_tokens": 1000},
        reason="provider invoice",
    )
    assert isinstance(fixed, metering_client.CorrectUsageResponse)
    assert fixed.corrects_record_id == first.record_id
    assert not fixed.replayed and fixed.transaction_id
    assert nanos(fixed.cost) == 900_000
    assert nanos(fixed.cost_difference) == 900_000 - 435_000
    assert fixed.usage == TokenUsage(input_tokens=2000, output_tokens=1000)
    assert fixed.usage_difference == TokenUsage(
        input_tokens=1000, output_tokens=500, cache_read_tokens=-200
    )
    after = nanos(client.get_balance(account_id=account).balance)
    assert after == before - nanos(fixed.cost_difference) == nanos(fixed.balance)

    # The same figure again (no correction_id: the service derives it from the
    # payload) is a replay and changes nothing.
    again = client.correct_usage(
        metering_client.CorrectUsageRequest(
            account_id=account,
            request_id="cu-1",
            usage=TokenUsage(input_tokens=2000, output_tokens=1000),
            reason="provider invoice",
        )
    )
    assert again.replayed
    assert again.transaction_id == fixed.transaction_id
    assert nanos(client.get_balance(account_id=account).balance) == after

    # An exact cost under an explicit correction_id; reusing the id with another
    # payload is a conflict.
    exact = client.correct_usage(
        account_id=account,
        request_id="cu-1",
        cost={"currency_code": "USD", "nanos": 500_000},
        usage={"input_tokens": 2000, "output_tokens": 1000},
        correction_id="invoice-7",
    )
    assert nanos(exact.cost) == 500_000 and nanos(exact.cost_difference) == -400_000
    assert nanos(client.get_balance(account_id=account).balance) == after + 400_000
    with pytest.raises(AlreadyExistsError) as conflict:
        client.correct_usage(
            account_id=account,
            request_id="cu-1",
            cost={"currency_code": "USD", "nanos": 600_000},
            usage={"input_tokens": 2000, "output_tokens": 1000},
            correction_id="invoice-7",
        )
    assert conflict.value.reason == "REQUEST_ID_CONFLICT"

    # The call now counts as CORRECTED.
    now = dt.datetime.now(dt.UTC)
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromDatetime(now - dt.timedelta(hours=1))
    end.FromDatetime(now + dt.timedelta(hours=1))
    corrected = client.usage_summary(
        account_id=account,
        start_time=start,
        end_time=end,
        usage_sources=[metering_client.UsageSource.Value("USAGE_SOURCE_CORRECTED")],
    )
    assert corrected.totals.request_count == 1
    assert corrected.totals.input_tokens == 2000
    assert nanos(corrected.totals.cost) == 500_000


def test_correct_usage_errors(client: MeteringClient, account: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.correct_usage(
            account_id=account, request_id="never-recorded", usage={"input_tokens": 1}
        )
    assert missing.value.reason == "RECORD_NOT_FOUND"
    with pytest.raises(NotFoundError) as no_account:
        client.correct_usage(
            account_id=account + "-nope", request_id="x", usage={"input_tokens": 1}
        )
    assert no_account.value.reason == "ACCOUNT_NOT_FOUND"
    client.record_usage(
        account_id=account, request_id="cu-e", model="gpt-4o-mini", usage={"input_tokens": 1}
    )
    with pytest.raises(InvalidArgumentError):
        client.correct_usage(account_id=account, request_id="cu-e")  # no usage at all


def test_record_usage_estimated_from_texts(client: MeteringClient, account: str) -> None:
    # "tiktoken is great!" is 6 tokens with o200k_base (gpt-4o-mini).
    resp = client.record_usage(
        account_id=account,
        request_id="est-1",
        model="gpt-4o-mini",
        provider="openai",
        prompt_text="tiktoken is great!",
        completion_text="tiktoken is great!",
        streamed=True,
    )
    assert resp.usage_source == metering_client.UsageSource.Value("USAGE_SOURCE_ESTIMATED")
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (6, 6)
    assert nanos(resp.cost) == 6 * 150 + 6 * 600

    # From a raw SSE tail without usage, plus the request body and streamed text.
    tail = (
        'data: {"id":"chatcmpl-e","object":"chat.completion.chunk","model":"gpt-4o-mini",'
        '"choices":[{"index":0,"delta":{"content":"tiktoken is great!"}}]}\n\n'
        "data: [DONE]\n\n"
    )
    request_body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say it"}]}
    from_tail = client.record_usage_from_response(
        tail,
        account_id=account,
        request_id="est-2",
        model="gpt-4o-mini",
        response_format="OPENAI_CHAT_COMPLETIONS",
        request_json=request_body,
        request_format="OPENAI_CHAT_COMPLETIONS",
        completion_text="tiktoken is great!",
    )
    expected = client.estimate_tokens(
        model="gpt-4o-mini", request_json=json.dumps(request_body).encode()
    )
    assert from_tail.usage_source == metering_client.UsageSource.Value("USAGE_SOURCE_ESTIMATED")
    assert from_tail.usage.output_tokens == 6
    assert from_tail.usage.input_tokens == expected.input_tokens > 0

    # Nothing to estimate from: MISSING, with the fallback that priced it.
    missing = client.record_usage(account_id=account, request_id="est-3", model="gpt-4o-mini")
    assert missing.usage_source == metering_client.UsageSource.Value("USAGE_SOURCE_MISSING")
    assert missing.usage == TokenUsage()
    assert metering_client.MissingUsageFallback.Name(missing.missing_usage_fallback)

    now = dt.datetime.now(dt.UTC)
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromDatetime(now - dt.timedelta(hours=1))
    end.FromDatetime(now + dt.timedelta(hours=1))
    totals = client.usage_summary(account_id=account, start_time=start, end_time=end).totals
    assert (totals.request_count, totals.estimated_request_count) == (3, 2)
    assert totals.missing_request_count == 1
    assert nanos(totals.estimated_cost) == nanos(resp.cost) + nanos(from_tail.cost)
