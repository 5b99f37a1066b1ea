"""Provenance over real gRPC: calls without usage are estimated or flagged, and corrected later.

Every figure is checked against an oracle computed here: tokens counted with
tiktoken's own encoder and OpenAI's chat framing (3 tokens per message, its
role and content, 3 to prime the reply), prices from tests/data/prices.json
(gpt-4o-mini: 150 nanos per input token, 600 per output token).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from sqlalchemy import select

from metering.storage import schema
from metering.tokens.vocab import get_encoding
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2
from tests.e2e.conftest import Live
from tests.support.grpc_errors import details_of

T = 10
INPUT_NANOS, OUTPUT_NANOS = 150, 600  # gpt-4o-mini per token
SYSTEM = "You are a terse assistant."
QUESTION = "List three prime numbers greater than one hundred, separated by commas."
COMPLETION = "101, 103, 107"


def _tokens(text: str) -> int:
    return len(get_encoding("o200k_base").encode_ordinary(text))


def _chat_prompt_tokens(messages: list[tuple[str, str]]) -> int:
    return sum(3 + _tokens(role) + _tokens(content) for role, content in messages) + 3


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _usd(nanos: int) -> types_pb2.Money:
    return types_pb2.Money(currency_code="USD", units=nanos // 10**9, nanos=nanos % 10**9)


def _request_body() -> bytes:
    return json.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION},
            ],
        }
    ).encode()


def _stream_tail_without_usage() -> bytes:
    """The last events of an OpenAI stream sent without stream_options.include_usage."""
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {"content": "107"}, "finish_reason": None}],
    }
    last = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()


def _record(live: Live, account: str, **fields: object) -> pb.RecordUsageResponse:
    response: pb.RecordUsageResponse = live.metering.RecordUsage(
        pb.RecordUsageRequest(account_id=account, model="gpt-4o-mini", **fields),  # type: ignore[arg-type]
        timeout=T,
    )
    return response


def _balance_nanos(live: Live, account: str) -> int:
    response = live.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=T)
    return _nanos(response.balance)


def _summary(live: Live, account: str, **fields: object) -> pb.UsageSummaryResponse:
    now = datetime.now(UTC)
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromDatetime(now - timedelta(days=1))
    end.FromDatetime(now + timedelta(days=1))
    response: pb.UsageSummaryResponse = live.metering.UsageSummary(
        pb.UsageSummaryRequest(account_id=account, start_time=start, end_time=end, **fields),  # type: ignore[arg-type]
        timeout=T,
    )
    return response


def test_a_stream_without_usage_is_recorded_as_estimated_with_the_right_estimate(
    verified: Live,
) -> None:
    account = verified.new_account(units=10)
    response = _record(
        verified,
        account,
        request_id="stream-1",
        streamed=True,
        response_json=_stream_tail_without_usage(),
        request_json=_request_body(),
        completion_text=COMPLETION,
    )
    input_tokens = _chat_prompt_tokens([("system", SYSTEM), ("user", QUESTION)])
    output_tokens = _tokens(COMPLETION)
    assert response.usage_source == types_pb2.USAGE_SOURCE_ESTIMATED
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        input_tokens,
        output_tokens,
    )
    assert _nanos(response.cost) == input_tokens * INPUT_NANOS + output_tokens * OUTPUT_NANOS
    # The summary says how much of the cost is estimated.
    totals = _summary(verified, account).totals
    assert totals.estimated_request_count == 1
    assert _nanos(totals.estimated_cost) == _nanos(response.cost)
    assert totals.missing_request_count == 0
    # The same estimate from prompt_text, for relays that keep only the text.
    plain = _record(
        verified,
        account,
        request_id="stream-2",
        prompt_text=QUESTION,
        completion_text=COMPLETION,
    )
    assert plain.usage_source == types_pb2.USAGE_SOURCE_ESTIMATED
    assert plain.usage.input_tokens == _tokens(QUESTION)
    # Half the call is not an estimate: without the completion (a stream that produced text
    # the relay did not keep), or without the prompt, the call is MISSING for review.
    for request_id, halves in (
        (
            "half-1",
            {"request_json": _request_body(), "response_json": _stream_tail_without_usage()},
        ),
        ("half-2", {"completion_text": COMPLETION}),
    ):
        half = _record(verified, account, request_id=request_id, **halves)
        assert half.usage_source == types_pb2.USAGE_SOURCE_MISSING, request_id


def test_a_zero_usage_response_with_a_completion_is_missing_not_free(verified: Live) -> None:
    account = verified.new_account(units=10)
    body = {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    response = _record(
        verified, account, request_id="zero-1", response_json=json.dumps(body).encode()
    )
    assert response.usage_source == types_pb2.USAGE_SOURCE_MISSING
    assert response.usage == types_pb2.TokenUsage()
    assert _nanos(response.cost) == 0
    # No hold to fall back on: the default policy charges nothing and flags the call.
    assert response.missing_usage_fallback == types_pb2.MISSING_USAGE_FALLBACK_NONE
    totals = _summary(verified, account).totals
    assert (totals.request_count, totals.missing_request_count) == (1, 1)
    # With the texts, the same response is estimated instead.
    estimated = _record(
        verified,
        account,
        request_id="zero-2",
        response_json=json.dumps(body).encode(),
        prompt_text=QUESTION,
        completion_text="Hello!",
    )
    assert estimated.usage_source == types_pb2.USAGE_SOURCE_ESTIMATED
    assert estimated.usage.output_tokens == _tokens("Hello!")


def test_a_missing_call_is_charged_its_hold_by_default(verified: Live) -> None:
    account = verified.new_account(units=10)
    hold = verified.metering.AuthorizeUsage(
        pb.AuthorizeUsageRequest(
            account_id=account, request_id="auth-1", model="gpt-4o-mini", amount=_usd(7_000_000)
        ),
        timeout=T,
    )
    response = _record(verified, account, request_id="call-1", reservation_id=hold.reservation_id)
    assert response.usage_source == types_pb2.USAGE_SOURCE_MISSING
    assert response.missing_usage_fallback == types_pb2.MISSING_USAGE_FALLBACK_RESERVATION
    assert _nanos(response.cost) == 7_000_000
    assert _balance_nanos(verified, account) == 10 * 10**9 - 7_000_000


def test_missing_usage_policies_apply_most_specific_first(verified: Live) -> None:
    account = verified.new_account(units=10)
    other = verified.new_account(units=10)
    model_fee = admin_pb.MissingUsagePolicy(
        model="gpt-4o-mini",
        fallback=types_pb2.MISSING_USAGE_FALLBACK_FLAT_FEE,
        flat_fee=_usd(2_000_000),
    )
    account_policy = admin_pb.MissingUsagePolicy(
        account_id=account,
        estimate_disabled=True,
        fallback=types_pb2.MISSING_USAGE_FALLBACK_FLAT_FEE,
        flat_fee=_usd(5_000_000),
    )
    try:
        for policy in (model_fee, account_policy):
            verified.admin.SetMissingUsagePolicy(
                admin_pb.SetMissingUsagePolicyRequest(policy=policy), timeout=T
            )
        listed = verified.admin.ListMissingUsagePolicies(
            admin_pb.ListMissingUsagePoliciesRequest(), timeout=T
        )
        mine = [p for p in listed.policies if p.account_id in ("", account)]
        assert [p.account_id for p in mine][:1] == [account]  # most specific first
        assert listed.default_policy.fallback == types_pb2.MISSING_USAGE_FALLBACK_RESERVATION
        # The account's policy: no estimate even with texts, its own fee.
        first = _record(
            verified, account, request_id="m-1", prompt_text=QUESTION, completion_text="x"
        )
        assert first.usage_source == types_pb2.USAGE_SOURCE_MISSING
        assert _nanos(first.cost) == 5_000_000
        # Another account falls to the model's policy.
        second = _record(verified, other, request_id="m-2")
        assert second.missing_usage_fallback == types_pb2.MISSING_USAGE_FALLBACK_FLAT_FEE
        assert _nanos(second.cost) == 2_000_000
        assert _nanos(_summary(verified, other).totals.missing_cost) == 2_000_000
        # A FLAT_FEE policy without a fee is refused and stores nothing.
        with pytest.raises(grpc.RpcError) as bad:
            verified.admin.SetMissingUsagePolicy(
                admin_pb.SetMissingUsagePolicyRequest(
                    policy=admin_pb.MissingUsagePolicy(
                        provider="openai", fallback=types_pb2.MISSING_USAGE_FALLBACK_FLAT_FEE
                    )
                ),
                timeout=T,
            )
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "policy.flat_fee" in details_of(bad.value).fields
    finally:
        for policy in (model_fee, account_policy):
            verified.admin.DeleteMissingUsagePolicy(
                admin_pb.DeleteMissingUsagePolicyRequest(
                    account_id=policy.account_id, provider=policy.provider, model=policy.model
                ),
                timeout=T,
            )
    with pytest.raises(grpc.RpcError) as gone:
        verified.admin.DeleteMissingUsagePolicy(
            admin_pb.DeleteMissingUsagePolicyRequest(model="gpt-4o-mini"), timeout=T
        )
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND


def _rows_of(live: Live, account: str) -> list[dict[str, object]]:
    u = schema.usage_records.c
    with live.database.engine.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(
                select(schema.usage_records)
                .where(u.account_id == account)
                .order_by(u.record_time_us, u.record_id)
            )
        ]


def test_a_correction_appends_exactly_the_difference_linked_to_the_original(
    verified: Live,
) -> None:
    account = verified.new_account(units=10)
    missing = _record(verified, account, request_id="late-1", streamed=True)
    assert missing.usage_source == types_pb2.USAGE_SOURCE_MISSING
    original_rows = _rows_of(verified, account)
    real = types_pb2.TokenUsage(input_tokens=1200, output_tokens=300, cache_read_tokens=200)
    real_cost = 1000 * INPUT_NANOS + 200 * 75 + 300 * OUTPUT_NANOS
    request = pb.CorrectUsageRequest(
        account_id=account, request_id="late-1", usage=real, reason="usage from the logs"
    )
    corrected = verified.metering.CorrectUsage(request, timeout=T)
    assert corrected.corrects_record_id == missing.record_id
    assert _nanos(corrected.cost) == real_cost
    assert _nanos(corrected.cost_difference) == real_cost - _nanos(missing.cost)
    assert corrected.usage_difference.input_tokens == 1200
    assert _balance_nanos(verified, account) == 10 * 10**9 - real_cost
    # The original row is untouched; two adjustments link to it.
    rows = _rows_of(verified, account)
    assert rows[: len(original_rows)] == original_rows
    added = rows[len(original_rows) :]
    assert [r["corrects_record_id"] for r in added] == [missing.record_id] * 2
    assert sorted(str(r["usage_source"]) for r in added) == ["CORRECTED", "MISSING"]
    assert sum(int(str(r["cost_nanos"])) for r in added) == real_cost
    # Summaries: the call now counts once, under CORRECTED, with the real figures.
    by_source = {
        row.usage_source: row
        for row in _summary(verified, account, group_by=[pb.GROUP_BY_USAGE_SOURCE]).rows
    }
    corrected_row = by_source[types_pb2.USAGE_SOURCE_CORRECTED]
    assert (corrected_row.request_count, corrected_row.input_tokens) == (1, 1200)
    assert _nanos(corrected_row.cost) == real_cost
    assert by_source[types_pb2.USAGE_SOURCE_MISSING].request_count == 0
    totals = _summary(verified, account).totals
    assert (totals.request_count, totals.missing_request_count) == (1, 0)
    assert _nanos(totals.cost) == real_cost
    only_corrected = _summary(
        verified, account, usage_sources=[types_pb2.USAGE_SOURCE_CORRECTED]
    ).totals
    assert only_corrected.request_count == 1
    # An export shows both rows under the correction's one ledger transaction.
    now = datetime.now(UTC)
    window = {
        "start_time": timestamp_pb2.Timestamp(seconds=int((now - timedelta(days=1)).timestamp())),
        "end_time": timestamp_pb2.Timestamp(seconds=int((now + timedelta(days=1)).timestamp())),
    }
    exported = [
        message.record
        for message in verified.admin.ExportUsage(
            admin_pb.ExportUsageRequest(account_id=account, **window),  # type: ignore[arg-type]
            timeout=T,
        )
        if message.HasField("record")
    ]
    adjustments = [r for r in exported if r.record_kind == "ADJUSTMENT"]
    assert {r.transaction_id for r in adjustments} == {corrected.transaction_id}
    assert [r.corrected for r in exported if r.record_kind == "USAGE"] == [True]
    # The same correction again changes nothing.
    before = verified.row_counts()
    again = verified.metering.CorrectUsage(request, timeout=T)
    assert again.replayed and _nanos(again.cost_difference) == _nanos(corrected.cost_difference)
    assert verified.row_counts() == before
    # A later, different figure moves the call again, by the difference from the last one.
    lower = types_pb2.TokenUsage(input_tokens=1000, output_tokens=300)
    second = verified.metering.CorrectUsage(
        pb.CorrectUsageRequest(account_id=account, request_id="late-1", usage=lower), timeout=T
    )
    lower_cost = 1000 * INPUT_NANOS + 300 * OUTPUT_NANOS
    assert _nanos(second.cost_difference) == lower_cost - real_cost
    assert _balance_nanos(verified, account) == 10 * 10**9 - lower_cost
    by_source = {
        row.usage_source: row
        for row in _summary(verified, account, group_by=[pb.GROUP_BY_USAGE_SOURCE]).rows
    }
    assert by_source[types_pb2.USAGE_SOURCE_CORRECTED].request_count == 1
    assert by_source[types_pb2.USAGE_SOURCE_CORRECTED].input_tokens == 1000
    # An explicit cost (an upstream invoice's figure) is charged as given.
    invoiced = verified.metering.CorrectUsage(
        pb.CorrectUsageRequest(
            account_id=account, request_id="late-1", usage=lower, cost=_usd(123_456)
        ),
        timeout=T,
    )
    assert _nanos(invoiced.cost) == 123_456
    assert _balance_nanos(verified, account) == 10 * 10**9 - 123_456


def test_correction_errors_write_nothing(verified: Live) -> None:
    account = verified.new_account(units=10)
    _record(
        verified,
        account,
        request_id="known",
        usage=types_pb2.TokenUsage(input_tokens=10, output_tokens=5),
    )
    before = verified.row_counts()
    cases = [
        (
            pb.CorrectUsageRequest(
                account_id=account,
                request_id="unknown",
                usage=types_pb2.TokenUsage(input_tokens=1),
            ),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
        (
            pb.CorrectUsageRequest(account_id=account, request_id="known"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "usage",
        ),
        (
            pb.CorrectUsageRequest(
                account_id=account,
                request_id="known",
                usage=types_pb2.TokenUsage(input_tokens=-1),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "usage.input_tokens",
        ),
        (
            pb.CorrectUsageRequest(
                account_id=account,
                request_id="known",
                usage=types_pb2.TokenUsage(input_tokens=1),
                cost=types_pb2.Money(currency_code="EUR", units=1),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            None,
        ),
        (
            pb.CorrectUsageRequest(
                account_id=f"nobody-{uuid.uuid4().hex[:6]}",
                request_id="known",
                usage=types_pb2.TokenUsage(input_tokens=1),
            ),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
    ]
    for request, code, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            verified.metering.CorrectUsage(request, timeout=T)
        assert caught.value.code() is code, (request, caught.value)
        if field is not None:
            assert field in details_of(caught.value).fields
    assert verified.row_counts() == before
    # A correction id reused with another figure is a conflict.
    first = pb.CorrectUsageRequest(
        account_id=account,
        request_id="known",
        usage=types_pb2.TokenUsage(input_tokens=20, output_tokens=5),
        correction_id="fix-1",
    )
    verified.metering.CorrectUsage(first, timeout=T)
    first.usage.input_tokens = 30
    with pytest.raises(grpc.RpcError) as conflict:
        verified.metering.CorrectUsage(first, timeout=T)
    assert conflict.value.code() is grpc.StatusCode.ALREADY_EXISTS
