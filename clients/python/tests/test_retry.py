"""Retries: which codes, how often, with the same request (request_id), and backoff.

A small real gRPC server (the client's generated servicer base, no mocking of
gRPC) fails the first attempts on purpose; the real metering server covers
"not up yet".
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from support import MeteringServer, free_port, nanos

from metering_client import (
    NO_RETRY,
    AsyncMeteringClient,
    DeadlineExceededError,
    InvalidArgumentError,
    MeteringClient,
    RetryPolicy,
    UnavailableError,
)
from metering_client.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    metering_service_pb2,
    metering_service_pb2_grpc,
)

FAST = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


class Flaky(metering_service_pb2_grpc.MeteringServiceServicer):
    """Fails the first ``failures`` calls with ``code`` (or by sleeping past the deadline)."""

    def __init__(self, failures: int, code: grpc.StatusCode, sleep: float = 0.0) -> None:
        self.failures = failures
        self.code = code
        self.sleep = sleep
        self.seen: list[Any] = []
        self.lock = threading.Lock()

    def RecordUsage(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.seen.append(request)
            attempt = len(self.seen)
        if attempt <= self.failures:
            if self.sleep:
                time.sleep(self.sleep)
            else:
                context.abort(self.code, f"attempt {attempt} fails")
        return metering_service_pb2.RecordUsageResponse(
            replayed=attempt > 1, record_id=request.request_id
        )

    def CorrectUsage(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.seen.append(request)
            attempt = len(self.seen)
        if attempt <= self.failures:
            context.abort(self.code, f"attempt {attempt} fails")
        return metering_service_pb2.CorrectUsageResponse(
            replayed=attempt > 1, corrects_record_id=request.request_id
        )


class FlakyAdmin(admin_service_pb2_grpc.MeteringAdminServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    def CreateAccount(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "down")


@pytest.fixture
def flaky_server() -> Any:
    servers = []

    def make(servicer: Any, admin: Any = None) -> str:
        srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metering_service_pb2_grpc.add_MeteringServiceServicer_to_server(servicer, srv)
        if admin is not None:
            admin_service_pb2_grpc.add_MeteringAdminServiceServicer_to_server(admin, srv)
        port = srv.add_insecure_port("127.0.0.1:0")
        srv.start()
        servers.append(srv)
        return f"127.0.0.1:{port}"

    yield make
    for srv in servers:
        srv.stop(0)


def req(request_id: str = "req-42") -> metering_service_pb2.RecordUsageRequest:
    return metering_service_pb2.RecordUsageRequest(
        account_id="a", request_id=request_id, model="gpt-4o-mini", usage={"input_tokens": 1}
    )


def test_unavailable_is_retried_with_the_same_request(flaky_server: Any) -> None:
    flaky = Flaky(2, grpc.StatusCode.UNAVAILABLE)
    with MeteringClient(flaky_server(flaky), retry=FAST) as client:
        resp = client.record_usage(req())
    assert resp.replayed  # the third attempt answered
    assert len(flaky.seen) == 3
    assert {r.SerializeToString(deterministic=True) for r in flaky.seen} == {
        req().SerializeToString(deterministic=True)
    }
    assert {r.request_id for r in flaky.seen} == {"req-42"}


def test_deadline_exceeded_is_retried(flaky_server: Any) -> None:
    flaky = Flaky(1, grpc.StatusCode.OK, sleep=0.5)
    with MeteringClient(flaky_server(flaky), retry=FAST, timeout=0.2) as client:
        resp = client.record_usage(req())
    assert resp.record_id == "req-42"
    assert len(flaky.seen) == 2


def test_gives_up_after_max_attempts(flaky_server: Any) -> None:
    flaky = Flaky(100, grpc.StatusCode.UNAVAILABLE)
    with (
        MeteringClient(flaky_server(flaky), retry=FAST) as client,
        pytest.raises(UnavailableError) as info,
    ):
        client.record_usage(req())
    assert len(flaky.seen) == FAST.max_attempts
    assert info.value.retryable


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INTERNAL,
    ],
)
def test_other_codes_are_not_retried(flaky_server: Any, code: grpc.StatusCode) -> None:
    flaky = Flaky(100, code)
    with (
        MeteringClient(flaky_server(flaky), retry=FAST) as client,
        pytest.raises(Exception) as info,
    ):
        client.record_usage(req())
    assert info.value.code is code  # type: ignore[attr-defined]
    assert len(flaky.seen) == 1


def test_invalid_argument_is_typed(flaky_server: Any) -> None:
    flaky = Flaky(1, grpc.StatusCode.INVALID_ARGUMENT)
    with (
        MeteringClient(flaky_server(flaky), retry=FAST) as client,
        pytest.raises(InvalidArgumentError),
    ):
        client.record_usage(req())


def test_create_account_is_not_retried(flaky_server: Any) -> None:
    admin = FlakyAdmin()
    target = flaky_server(Flaky(0, grpc.StatusCode.OK), admin)
    with MeteringClient(target, retry=FAST) as client, pytest.raises(UnavailableError):
        client.create_account(admin_service_pb2.CreateAccountRequest(account_id="x"))
    assert admin.calls == 1


def test_no_retry_policy(flaky_server: Any) -> None:
    flaky = Flaky(1, grpc.StatusCode.UNAVAILABLE)
    with (
        MeteringClient(flaky_server(flaky), retry=NO_RETRY) as client,
        pytest.raises(UnavailableError),
    ):
        client.record_usage(req())
    assert len(flaky.seen) == 1


def test_total_timeout_bounds_retries(flaky_server: Any) -> None:
    flaky = Flaky(100, grpc.StatusCode.UNAVAILABLE)
    policy = RetryPolicy(
        max_attempts=1000, initial_backoff=0.05, max_backoff=0.05, total_timeout=0.5
    )
    start = time.monotonic()
    with (
        MeteringClient(flaky_server(flaky), retry=policy) as client,
        pytest.raises(UnavailableError),
    ):
        client.record_usage(req())
    assert time.monotonic() - start < 2.0
    assert 2 <= len(flaky.seen) < 1000


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    waits = [policy.backoff(n) for n in range(1, 10) for _ in range(50)]
    assert all(0 <= w <= 1.0 for w in waits)
    assert len({round(w, 6) for w in waits}) > 100  # jitter
    assert max(policy.backoff(1) for _ in range(200)) <= 0.1


async def test_async_client_retries(flaky_server: Any) -> None:
    flaky = Flaky(2, grpc.StatusCode.UNAVAILABLE)
    async with AsyncMeteringClient(flaky_server(flaky), retry=FAST) as client:
        resp = await client.record_usage(req("async-1"))
    assert resp.record_id == "async-1"
    assert len(flaky.seen) == 3


async def test_async_deadline(flaky_server: Any) -> None:
    flaky = Flaky(100, grpc.StatusCode.OK, sleep=0.3)
    async with AsyncMeteringClient(flaky_server(flaky), retry=NO_RETRY, timeout=0.1) as client:
        with pytest.raises(DeadlineExceededError):
            await client.record_usage(req())


def test_server_not_up_yet(tmp_path: Path) -> None:
    """The client keeps retrying while the real server starts, then records once."""
    server = MeteringServer(tmp_path, port=free_port())
    starter = threading.Timer(1.0, server.start)
    policy = RetryPolicy(max_attempts=100, initial_backoff=0.1, max_backoff=0.5)
    try:
        with MeteringClient(f"127.0.0.1:{server.port}", retry=policy) as client:
            starter.start()
            # CreateAccount is not retried: wait for readiness through a retried read.
            with pytest.raises(Exception):  # noqa: B017 - NOT_FOUND once the server is up
                client.get_balance(account_id="late")
            client.create_account(account_id="late", allow_negative_balance=True)
            server.stop()
            threading.Timer(0.5, server.start).start()
            resp = client.record_usage(
                account_id="late", request_id="late-1", model="gpt-4o-mini",
                usage={"input_tokens": 1000, "output_tokens": 500},
            )  # fmt: skip
            assert not resp.replayed
            time.sleep(0.2)
            assert client.get_balance(account_id="late").balance.nanos == -450_000
    finally:
        starter.cancel()
        server.close()


def test_correct_usage_is_retried_with_the_same_request(flaky_server: Any) -> None:
    flaky = Flaky(2, grpc.StatusCode.UNAVAILABLE)
    correction = metering_service_pb2.CorrectUsageRequest(
        account_id="a", request_id="req-42", usage={"input_tokens": 2}
    )
    with MeteringClient(flaky_server(flaky), retry=FAST) as client:
        resp = client.correct_usage(correction)
    assert resp.replayed and resp.corrects_record_id == "req-42"
    assert len(flaky.seen) == 3
    assert {r.SerializeToString(deterministic=True) for r in flaky.seen} == {
        correction.SerializeToString(deterministic=True)
    }


async def test_async_correct_usage_retries(flaky_server: Any) -> None:
    flaky = Flaky(1, grpc.StatusCode.UNAVAILABLE)
    async with AsyncMeteringClient(flaky_server(flaky), retry=FAST) as client:
        resp = await client.correct_usage(account_id="a", request_id="r", correction_id="k")
    assert resp.corrects_record_id == "r"
    assert len(flaky.seen) == 2


def test_correction_across_a_restart_is_applied_once(fresh_server: MeteringServer) -> None:
    """A correction sent while the real server restarts lands once (derived correction_id)."""
    policy = RetryPolicy(max_attempts=100, initial_backoff=0.05, max_backoff=0.3)
    with MeteringClient(fresh_server.address, retry=policy) as client:
        client.create_account(account_id="fix", allow_negative_balance=True)
        client.record_usage(
            account_id="fix", request_id="f-1", model="gpt-4o-mini",
            usage={"input_tokens": 1000, "output_tokens": 500},
        )  # fmt: skip
        fresh_server.stop()
        restart = threading.Timer(0.5, fresh_server.start)
        restart.start()
        try:
            fixed = client.correct_usage(
                account_id="fix", request_id="f-1",
                usage={"input_tokens": 2000, "output_tokens": 1000},
            )  # fmt: skip
        finally:
            restart.join()
        assert nanos(fixed.cost_difference) == 900_000 - 450_000
        again = client.correct_usage(
            account_id="fix", request_id="f-1",
            usage={"input_tokens": 2000, "output_tokens": 1000},
        )  # fmt: skip
        assert again.replayed
        assert nanos(client.get_balance(account_id="fix").balance) == -900_000
