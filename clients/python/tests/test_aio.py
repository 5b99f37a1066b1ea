"""AsyncMeteringClient against the real server."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from support import MeteringServer, nanos

from metering_client import AlreadyExistsError, AsyncMeteringClient, NotFoundError
from metering_client.v1.types_pb2 import USAGE_SOURCE_ESTIMATED


async def test_async_round_trip(server: MeteringServer) -> None:
    account = "aio-" + uuid.uuid4().hex[:10]
    async with AsyncMeteringClient(server.address) as client:
        await client.wait_until_ready(5)
        await client.create_account(account_id=account)
        grant = await client.grant_credits(
            account_id=account, request_id="g", amount={"currency_code": "USD", "units": 1}
        )
        assert grant.balance.units == 1
        results = await asyncio.gather(
            *(
                client.record_usage(
                    account_id=account,
                    request_id=f"a{i}",
                    model="gpt-4o-mini",
                    usage={"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 200},
                )
                for i in range(20)
            )
        )
        assert {nanos(r.cost) for r in results} == {435_000}
        balance = await client.get_balance(account_id=account)
        assert nanos(balance.balance) == 10**9 - 20 * 435_000
        estimate = await client.estimate_tokens(model="gpt-4o-mini", text="tiktoken is great!")
        assert estimate.input_tokens == 6
        with pytest.raises(AlreadyExistsError) as info:
            await client.record_usage(
                account_id=account, request_id="a0", model="gpt-4o-mini",
                usage={"input_tokens": 1},
            )  # fmt: skip
        assert info.value.reason == "REQUEST_ID_CONFLICT"
        with pytest.raises(NotFoundError):
            await client.get_balance(account_id=account + "-nope")


async def test_async_correct_usage_and_estimate(server: MeteringServer) -> None:
    account = "aio-" + uuid.uuid4().hex[:10]
    async with AsyncMeteringClient(server.address) as client:
        await client.create_account(account_id=account, allow_negative_balance=True)
        first = await client.record_usage(
            account_id=account, request_id="c", model="gpt-4o-mini",
            usage={"input_tokens": 1000, "output_tokens": 500},
        )  # fmt: skip
        assert nanos(first.cost) == 450_000
        fixed = await client.correct_usage(
            account_id=account, request_id="c", usage={"input_tokens": 1000, "output_tokens": 0}
        )
        assert nanos(fixed.cost_difference) == 150_000 - 450_000
        assert nanos(fixed.balance) == -150_000
        again = await client.correct_usage(
            {"account_id": account, "request_id": "c",
             "usage": {"input_tokens": 1000, "output_tokens": 0}}
        )  # fmt: skip
        assert again.replayed
        assert nanos((await client.get_balance(account_id=account)).balance) == -150_000

        est = await client.record_usage(
            account_id=account, request_id="e", model="gpt-4o-mini",
            prompt_text="tiktoken is great!", completion_text="tiktoken is great!",
        )  # fmt: skip
        assert est.usage_source == USAGE_SOURCE_ESTIMATED
        assert (est.usage.input_tokens, est.usage.output_tokens) == (6, 6)
        with pytest.raises(NotFoundError) as info:
            await client.correct_usage(
                account_id=account, request_id="nope", usage={"input_tokens": 1}
            )
        assert info.value.reason == "RECORD_NOT_FOUND"
