"""Racing callers: retries on two connections never double-count; debits never lose updates."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import grpc

from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.e2e.conftest import Live

CALLERS_PER_KEY = 12
KEYS = 4  # 48 concurrent callers in all


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


async def _race(target: str, requests: list[pb.RecordUsageRequest]) -> list[pb.RecordUsageResponse]:
    # Two connections, callers alternating between them, all released at once.
    channels = [grpc.aio.insecure_channel(target) for _ in range(2)]
    try:
        stubs = [pb_grpc.MeteringServiceStub(channel) for channel in channels]
        start = asyncio.Event()

        async def call(index: int, request: pb.RecordUsageRequest) -> pb.RecordUsageResponse:
            await start.wait()
            response: pb.RecordUsageResponse = await stubs[index % 2].RecordUsage(
                request, timeout=30
            )
            return response

        tasks = [asyncio.create_task(call(i, r)) for i, r in enumerate(requests)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        for channel in channels:
            await channel.close()


async def test_concurrent_duplicates_debit_exactly_once_per_key(verified: Live) -> None:
    account = verified.new_account(units=10)
    requests = [
        pb.RecordUsageRequest(
            account_id=account,
            request_id=f"dup-{key}",
            model="gpt-4o-mini",
            usage=types_pb2.TokenUsage(input_tokens=1_000_000),
        )
        for _ in range(CALLERS_PER_KEY)
        for key in range(KEYS)
    ]
    responses = await _race(verified.server.target, requests)
    by_key: dict[str, list[pb.RecordUsageResponse]] = defaultdict(list)
    for request, response in zip(requests, responses, strict=True):
        by_key[request.request_id].append(response)
    for key, answers in by_key.items():
        assert sum(not a.replayed for a in answers) == 1, key
        assert len({a.record_id for a in answers}) == 1, key
        assert {_nanos(a.cost) for a in answers} == {150_000_000}
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=10)
    assert _nanos(balance.balance) == 10_000_000_000 - KEYS * 150_000_000
    with verified.database.read() as store:
        assert store.count_usage_records(account) == KEYS
        # One grant (2 entries) and one usage transaction (2 entries) per key.
        assert store.count_ledger_entries(account) == 2 + 2 * KEYS


async def test_concurrent_distinct_records_lose_no_update(verified: Live) -> None:
    account = verified.new_account(units=1)
    requests = [
        pb.RecordUsageRequest(
            account_id=account,
            request_id=f"distinct-{i}",
            model="cheap-model",
            usage=types_pb2.TokenUsage(input_tokens=13),
        )
        for i in range(64)
    ]
    responses = await _race(verified.server.target, requests)
    assert not any(r.replayed for r in responses)
    # Each record saw a distinct balance: the debits were serialized, none lost.
    assert len({_nanos(r.balance) for r in responses}) == 64
    balance = verified.metering.GetBalance(pb.GetBalanceRequest(account_id=account), timeout=10)
    assert _nanos(balance.balance) == 1_000_000_000 - 64 * 650
