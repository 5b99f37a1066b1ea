"""Fault tolerance: the server SIGKILLed under load, the database lost and back, SIGTERM.

Every scenario ends with the same accounting: each request_id the callers sent is
recorded exactly once (nothing lost, nothing doubled), every acknowledged record_id
is the one stored, the balance is minus the sum of the costs, and the operator's
`metering ledger verify` exits 0.

The callers behave like a relay: on UNAVAILABLE, DEADLINE_EXCEEDED or CANCELLED they
retry the *same* request (same request_id) after a short backoff until it succeeds;
any other status (INTERNAL above all) is a failure of the server and fails the test.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from metering.storage.engine import make_engine
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.conftest import TEST_PRICES
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
CALL_TIMEOUT_SECONDS = 5.0
# A caller gives up on one request after this long: the server hung, which is a failure.
GIVE_UP_SECONDS = 60.0
# Reconnect quickly after a kill (gRPC's default first reconnect backoff is 1 s).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
MODEL = "gpt-4o-mini"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _nanos(money: types_pb2.Money) -> int:
    return money.units * 1_000_000_000 + money.nanos


def _usage_request(account_id: str, request_id: str, index: int) -> pb.RecordUsageRequest:
    # Distinct token counts, so that a record written with another request's numbers
    # would show up in the cost sums.
    return pb.RecordUsageRequest(
        account_id=account_id,
        request_id=request_id,
        model=MODEL,
        provider="openai",
        usage=types_pb2.TokenUsage(input_tokens=1000 + index, output_tokens=100 + index % 97),
    )


def _ledger_verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering", "ledger", "verify", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _create_account(target: str) -> str:
    account_id = f"acct-{uuid.uuid4().hex[:12]}"
    with grpc.insecure_channel(target) as channel:
        admin_grpc.MeteringAdminServiceStub(channel).CreateAccount(
            admin_pb.CreateAccountRequest(account_id=account_id, allow_negative_balance=True),
            timeout=10,
        )
    return account_id


@dataclass
class Attempt:
    request_id: str
    started: float  # time.monotonic()
    seconds: float
    code: grpc.StatusCode  # OK for a success


@dataclass
class Callers:
    """What a set of retrying callers sent and got back."""

    attempts: list[Attempt] = field(default_factory=list)
    answers: dict[str, pb.RecordUsageResponse] = field(default_factory=dict)
    requests: dict[str, pb.RecordUsageRequest] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    in_flight: int = 0

    @property
    def calls(self) -> int:
        return len(self.attempts)

    def codes(self) -> Counter[str]:
        return Counter(a.code.name for a in self.attempts)

    async def record(
        self, stub: pb_grpc.MeteringServiceStub, request: pb.RecordUsageRequest
    ) -> None:
        """Send until answered, with the same request (same request_id) on every retry."""
        self.requests[request.request_id] = request
        first = time.monotonic()
        while True:
            started = time.monotonic()
            self.in_flight += 1
            try:
                response: pb.RecordUsageResponse = await stub.RecordUsage(
                    request, timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as exc:
                self.attempts.append(
                    Attempt(request.request_id, started, time.monotonic() - started, exc.code())
                )
                if exc.code() not in RETRYABLE:
                    self.failures.append(
                        f"{request.request_id}: {exc.code().name} {exc.details()!r}"
                    )
                    return
                if time.monotonic() - first > GIVE_UP_SECONDS:
                    self.failures.append(
                        f"{request.request_id}: no answer after {GIVE_UP_SECONDS:.0f} s "
                        f"(last {exc.code().name} {exc.details()!r})"
                    )
                    return
                await asyncio.sleep(random.uniform(0.02, 0.1))
                continue
            finally:
                self.in_flight -= 1
            self.attempts.append(
                Attempt(request.request_id, started, time.monotonic() - started, grpc.StatusCode.OK)
            )
            self.answers[request.request_id] = response
            return


@dataclass
class Stored:
    count: int
    distinct_request_ids: int
    record_ids: dict[str, str]  # request_id -> record_id
    cost_nanos: int
    balance_nanos: int


def _stored(url: str, account_id: str) -> Stored:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT request_id, record_id, cost_nanos FROM usage_records "
                    "WHERE account_id = :a"
                ),
                {"a": account_id},
            ).all()
            balance = connection.execute(
                text("SELECT balance_nanos FROM accounts WHERE account_id = :a"),
                {"a": account_id},
            ).scalar_one()
    finally:
        engine.dispose()
    return Stored(
        count=len(rows),
        distinct_request_ids=len({row[0] for row in rows}),
        record_ids={row[0]: row[1] for row in rows},
        cost_nanos=sum(int(row[2]) for row in rows),
        balance_nanos=int(balance),
    )


def _assert_exactly_once(
    url: str, account_id: str, requests: set[str], answers: dict[str, str], label: str
) -> Stored:
    """Each request_id recorded once, with the acknowledged record_id; books balance."""
    stored = _stored(url, account_id)
    lost = sorted(requests - stored.record_ids.keys())
    duplicated = stored.count - stored.distinct_request_ids
    unexpected = sorted(stored.record_ids.keys() - requests)
    assert not lost, f"{label}: {len(lost)} request_ids lost, e.g. {lost[:5]}"
    assert duplicated == 0, f"{label}: {duplicated} request_ids recorded more than once"
    assert not unexpected, f"{label}: records nobody sent: {unexpected[:5]}"
    assert stored.count == len(requests)
    mismatched = {
        rid: (record_id, stored.record_ids.get(rid))
        for rid, record_id in answers.items()
        if stored.record_ids.get(rid) != record_id
    }
    assert not mismatched, (
        f"{label}: acknowledged record_ids not in the database (acked, stored): "
        f"{list(mismatched.items())[:5]}"
    )
    assert stored.balance_nanos == -stored.cost_nanos, (
        f"{label}: balance {stored.balance_nanos} != -(sum of costs {stored.cost_nanos})"
    )
    verified = _ledger_verify(url)
    assert verified.returncode == 0, f"{label}: ledger verify:\n{verified.stdout}{verified.stderr}"
    return stored


async def _replays_match(target: str, callers: Callers) -> None:
    """Sending every request again is a replay with the acknowledged record_id."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.MeteringServiceStub(channel)
        gate = asyncio.Semaphore(16)

        async def again(request: pb.RecordUsageRequest) -> pb.RecordUsageResponse:
            async with gate:
                response: pb.RecordUsageResponse = await stub.RecordUsage(request, timeout=30)
                return response

        requests = list(callers.requests.values())
        responses = await asyncio.gather(*(again(r) for r in requests))
    for request, response in zip(requests, responses, strict=True):
        first = callers.answers[request.request_id]
        assert response.replayed, f"{request.request_id} was written again"
        assert response.record_id == first.record_id
        assert _nanos(response.cost) == _nanos(first.cost)


# --- 1. SIGKILL under load -------------------------------------------------------------

KILLS = 3
CALLERS = 8


def test_kill_9_under_load_loses_and_duplicates_nothing(
    backend: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = f"127.0.0.1:{_free_port()}"
    servers = [ServerProcess(database_url, prices_file=TEST_PRICES, listen=listen).start()]
    account_id = _create_account(servers[-1].target)
    callers = Callers()
    kills: list[dict[str, float]] = []

    async def scenario() -> None:
        done = asyncio.Event()
        async with grpc.aio.insecure_channel(servers[-1].target, options=CHANNEL_OPTIONS) as ch:
            stub = pb_grpc.MeteringServiceStub(ch)

            async def caller(number: int) -> None:
                index = 0
                while not done.is_set():
                    request_id = f"c{number}-{index}"
                    await callers.record(
                        stub, _usage_request(account_id, request_id, number * 100_000 + index)
                    )
                    index += 1

            async def acknowledged_since(count: int, timeout: float = 30.0) -> None:
                # The (re)started server is demonstrably busy before the next kill.
                deadline = time.monotonic() + timeout
                while len(callers.answers) < count + 10:
                    assert time.monotonic() < deadline, "no calls answered after a restart"
                    assert not callers.failures, callers.failures[:5]
                    await asyncio.sleep(0.01)

            async def chaos() -> None:
                try:
                    for _ in range(KILLS):
                        await acknowledged_since(len(callers.answers))
                        await asyncio.sleep(random.uniform(0.2, 1.0))
                        in_flight = callers.in_flight
                        servers[-1].kill()  # SIGKILL
                        down = time.monotonic()
                        restarted = ServerProcess(
                            database_url, prices_file=TEST_PRICES, listen=listen
                        )
                        servers.append(restarted)
                        await asyncio.to_thread(restarted.start)
                        kills.append({"in_flight": in_flight, "restart_s": time.monotonic() - down})
                    await acknowledged_since(len(callers.answers))
                finally:
                    done.set()

            tasks = [asyncio.create_task(caller(n)) for n in range(CALLERS)]
            await asyncio.gather(chaos(), *tasks)

    started = time.monotonic()
    try:
        asyncio.run(scenario())
        assert not callers.failures, (
            f"non-retryable failures or hangs ({len(callers.failures)}): {callers.failures[:5]}\n"
            f"--- server log ---\n{servers[-1].log_tail()}"
        )
        assert len(kills) == KILLS
        assert max(k["in_flight"] for k in kills) > 0, f"no call in flight at any kill: {kills}"
        assert set(callers.answers) == set(callers.requests)
        asyncio.run(_replays_match(servers[-1].target, callers))
    finally:
        code = servers[-1].stop()
        for server in servers[:-1]:
            server.kill()
    assert code == 0, servers[-1].log_tail()
    stored = _assert_exactly_once(
        database_url,
        account_id,
        set(callers.requests),
        {rid: r.record_id for rid, r in callers.answers.items()},
        backend,
    )
    replayed = sum(1 for r in callers.answers.values() if r.replayed)
    codes = callers.codes()
    with capsys.disabled():
        print(
            f"\n[{backend}] kills={len(kills)} calls={callers.calls} "
            f"acknowledged={len(callers.answers)} lost=0 duplicated=0 "
            f"(records={stored.count}, acked-as-replay={replayed}, codes={dict(codes)}, "
            f"in-flight at kills={[k['in_flight'] for k in kills]}, "
            f"restarts={[round(k['restart_s'], 2) for k in kills]} s, "
            f"total {time.monotonic() - started:.1f} s)"
        )


# --- 2. Database outage (PostgreSQL) ----------------------------------------------------

# The server probes the database every 5 s (metering.api.server.HEALTH_PROBE_INTERVAL_SECONDS).
NOT_SERVING_WITHIN_SECONDS = 6.5
FAIL_FAST_SECONDS = 6.0  # connect_timeout is 5 s; a refused connection fails at once
RECOVER_WITHIN_SECONDS = 10.0


@pytest.fixture
def outage_db(postgres_server: PostgresServer) -> Iterator[tuple[PostgresServer, str]]:
    """A fresh database on the shared server, which is running again afterwards in any case."""
    name = f"faults_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(name, template="metering_template")
    try:
        yield postgres_server, postgres_server.url(name)
    finally:
        if not postgres_server.running:
            postgres_server.start_server()
        postgres_server.drop_database(name)


def test_database_outage_fails_fast_and_recovers_by_itself(
    outage_db: tuple[PostgresServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pg, url = outage_db
    server = ServerProcess(url, prices_file=TEST_PRICES).start()
    account_id = _create_account(server.target)
    callers = Callers()
    health: list[tuple[float, str]] = []  # (when, status name or error code)
    marks: dict[str, float] = {}

    def health_since(since: float, status: str) -> float | None:
        return next((t for t, s in health if t >= since and s == status), None)

    async def scenario() -> None:
        done = asyncio.Event()
        async with grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            health_stub = health_pb2_grpc.HealthStub(channel)

            async def caller(number: int) -> None:
                index = 0
                while not done.is_set():
                    await callers.record(
                        stub,
                        _usage_request(account_id, f"o{number}-{index}", number * 100_000 + index),
                    )
                    index += 1
                    await asyncio.sleep(0.01)

            async def poll_health() -> None:
                while not done.is_set():
                    now = time.monotonic()
                    try:
                        reply = await health_stub.Check(
                            health_pb2.HealthCheckRequest(service=""), timeout=2
                        )
                        health.append(
                            (now, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                        )
                    except grpc.aio.AioRpcError as exc:
                        health.append((now, exc.code().name))
                    await asyncio.sleep(0.1)

            async def wait_for(
                condition: Callable[[], float | bool | None], timeout: float, what: str
            ) -> float:
                deadline = time.monotonic() + timeout
                while True:
                    value = condition()
                    if value:
                        return float(value)
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{what} not within {timeout} s; answers={len(callers.answers)} "
                            f"codes={dict(callers.codes())} failures={callers.failures[:3]} "
                            f"in_flight={callers.in_flight} health={health[-3:]}\n"
                            f"--- server log ---\n{server.log_tail(40)}"
                        )
                    await asyncio.sleep(0.05)

            async def outage() -> None:
                try:
                    await wait_for(lambda: len(callers.answers) >= 20, 30, "20 answers")
                    await wait_for(lambda: health_since(0, "SERVING"), 10, "SERVING at start")
                    marks["stop"] = time.monotonic()
                    await asyncio.to_thread(pg.stop_server, "immediate")
                    marks["down"] = time.monotonic()
                    marks["not_serving"] = await wait_for(
                        lambda: health_since(marks["down"], "NOT_SERVING"),
                        NOT_SERVING_WITHIN_SECONDS + 2,
                        "NOT_SERVING after the database stopped",
                    )
                    await asyncio.sleep(1.0)  # calls keep failing while NOT_SERVING
                    marks["start"] = time.monotonic()
                    await asyncio.to_thread(pg.start_server)
                    marks["up"] = time.monotonic()
                    marks["first_ok"] = await wait_for(
                        lambda: next(
                            (
                                a.started + a.seconds
                                for a in callers.attempts
                                if a.started >= marks["up"] and a.code == grpc.StatusCode.OK
                            ),
                            None,
                        ),
                        RECOVER_WITHIN_SECONDS,
                        "a successful call after the database came back",
                    )
                    marks["serving"] = await wait_for(
                        lambda: health_since(marks["up"], "SERVING"),
                        NOT_SERVING_WITHIN_SECONDS + 2,
                        "SERVING after the database came back",
                    )
                    await asyncio.sleep(0.3)
                finally:
                    done.set()

            tasks = [asyncio.create_task(caller(n)) for n in range(4)]
            await asyncio.gather(outage(), poll_health(), *tasks)

    try:
        asyncio.run(scenario())
    finally:
        code = server.stop()
    log = server.log_tail(200)
    assert code == 0, log
    assert not callers.failures, (
        f"non-retryable failures or hangs: {callers.failures[:5]}\n--- server log ---\n{log}"
    )
    # Calls started while the database was down: all UNAVAILABLE, each quickly.
    during = [a for a in callers.attempts if marks["down"] <= a.started < marks["start"]]
    assert len(during) >= 10, f"only {len(during)} calls during the outage"
    assert {a.code for a in during} == {grpc.StatusCode.UNAVAILABLE}, Counter(
        a.code.name for a in during
    )
    slowest = max(a.seconds for a in during)
    assert slowest <= FAIL_FAST_SECONDS, f"a call took {slowest:.2f} s to fail"
    not_serving_after = marks["not_serving"] - marks["down"]
    assert not_serving_after <= NOT_SERVING_WITHIN_SECONDS
    assert marks["first_ok"] - marks["up"] <= RECOVER_WITHIN_SECONDS
    assert marks["serving"] - marks["up"] <= NOT_SERVING_WITHIN_SECONDS
    # Health answered all along (the process stays up), never an error.
    assert {s for _, s in health} <= {"SERVING", "NOT_SERVING"}, Counter(s for _, s in health)
    stored = _assert_exactly_once(
        url,
        account_id,
        set(callers.requests),
        {rid: r.record_id for rid, r in callers.answers.items()},
        "postgresql outage",
    )
    with capsys.disabled():
        print(
            f"\n[postgresql outage] calls={callers.calls} acknowledged={len(callers.answers)} "
            f"lost=0 duplicated=0 records={stored.count}; during outage: {len(during)} calls "
            f"all UNAVAILABLE, slowest {slowest:.3f} s, median "
            f"{sorted(a.seconds for a in during)[len(during) // 2]:.3f} s; "
            f"pg stop took {marks['down'] - marks['stop']:.2f} s; "
            f"NOT_SERVING after {not_serving_after:.2f} s; pg start took "
            f"{marks['up'] - marks['start']:.2f} s; "
            f"first success {marks['first_ok'] - marks['up']:.2f} s "
            f"and SERVING {marks['serving'] - marks['up']:.2f} s after it was up"
        )


@pytest.fixture
def client_module() -> ModuleType:
    """The Python client (clients/python), installed into the test environment or not."""
    if os.environ.get("METERING_REQUIRE_CLIENT") == "1":
        import metering_client

        return metering_client
    return pytest.importorskip(
        "metering_client",
        reason="metering-client is not installed here (pip install -e clients/python); "
        "set METERING_REQUIRE_CLIENT=1 to make this a failure",
    )


def test_usage_reporter_spools_through_database_outage(
    client_module: ModuleType,  # first: skips before PostgreSQL is set up
    outage_db: tuple[PostgresServer, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg, url = outage_db
    server = ServerProcess(url, prices_file=TEST_PRICES).start()
    account_id = _create_account(server.target)
    outcomes: list[Any] = []  # metering_client.ReportOutcome
    client = client_module.MeteringClient(server.target, timeout=5)
    reporter = client_module.UsageReporter(
        client,
        tmp_path / "spool.db",
        batch_size=20,
        flush_interval=0.05,
        timeout=5,
        initial_backoff=0.05,
        max_backoff=0.5,
        on_outcome=outcomes.append,
    )
    reported: list[str] = []

    def report(count: int, pause: float) -> None:
        for _ in range(count):
            request_id = f"rep-{len(reported)}"
            reporter.report(
                account_id=account_id,
                request_id=request_id,
                model=MODEL,
                provider="openai",
                usage={"input_tokens": 500 + len(reported), "output_tokens": 50},
            )
            reported.append(request_id)
            time.sleep(pause)

    timings: dict[str, float] = {}
    try:
        report(30, 0.005)
        assert reporter.flush(timeout=15), "records not sent while everything was up"
        failed_before = reporter.stats.failed_batches
        pg.stop_server("immediate")
        down = time.monotonic()
        report(60, 0.02)  # about 1.5 s of reporting while the database is down
        deadline = time.monotonic() + 10
        while reporter.stats.failed_batches == failed_before:
            assert time.monotonic() < deadline, "the reporter never saw the outage"
            time.sleep(0.05)
        pending_in_outage = reporter.pending()
        assert pending_in_outage > 0
        pg.start_server()
        up = time.monotonic()
        timings["outage_s"] = up - down
        report(30, 0.005)
        assert reporter.flush(timeout=30), f"{reporter.pending()} records still spooled"
        timings["drained_s"] = time.monotonic() - up
        assert reporter.dead_letters() == []
    finally:
        reporter.close(timeout=5)
        client.close()
        if not pg.running:
            pg.start_server()
        code = server.stop()
    assert code == 0, server.log_tail()
    answered = Counter(o.request.request_id for o in outcomes)
    assert all(o.response is not None for o in outcomes), [
        o.error for o in outcomes if o.error is not None
    ]
    assert set(answered) == set(reported) and max(answered.values()) == 1, answered.most_common(3)
    stored = _assert_exactly_once(
        url,
        account_id,
        set(reported),
        {o.request.request_id: o.response.record_id for o in outcomes},
        "usage reporter",
    )
    with capsys.disabled():
        print(
            f"\n[postgresql outage, UsageReporter] reported={len(reported)} "
            f"recorded={stored.count} lost=0 duplicated=0; pending at the worst "
            f"{pending_in_outage}, failed batches {reporter.stats.failed_batches}, "
            f"outage {timings['outage_s']:.1f} s, drained {timings['drained_s']:.2f} s after"
        )


# --- 3. SIGTERM with RecordUsageBatch calls in flight ------------------------------------

BATCHES = 30
BATCH_RECORDS = 20


def test_sigterm_finishes_in_flight_batches_exactly_once(
    backend: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-flight RecordUsageBatch calls are answered in full or refused as a whole."""
    server = ServerProcess(database_url, prices_file=TEST_PRICES).start()
    account_id = _create_account(server.target)
    batches = [
        pb.RecordUsageBatchRequest(
            records=[
                _usage_request(account_id, f"b{b}-{i}", b * BATCH_RECORDS + i)
                for i in range(BATCH_RECORDS)
            ]
        )
        for b in range(BATCHES)
    ]

    async def load() -> list[pb.RecordUsageBatchResponse | grpc.StatusCode]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            await channel.channel_ready()
            answered = asyncio.Event()
            answers = 0

            async def call(
                batch: pb.RecordUsageBatchRequest,
            ) -> pb.RecordUsageBatchResponse | grpc.StatusCode:
                nonlocal answers
                try:
                    response: pb.RecordUsageBatchResponse = await stub.RecordUsageBatch(
                        batch, timeout=30
                    )
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                answers += 1
                if answers >= 3:
                    answered.set()
                return response

            tasks = [asyncio.create_task(call(batch)) for batch in batches]
            await asyncio.wait_for(answered.wait(), 30)
            server.terminate()
            signalled = time.monotonic()
            outcomes = list(await asyncio.gather(*tasks))
            timings["answered_s"] = time.monotonic() - signalled
            return outcomes

    timings: dict[str, float] = {}
    outcomes = asyncio.run(load())
    assert server.stop() == 0
    assert "metering stopped" in server.log_tail()
    acknowledged = {
        b: r for b, r in enumerate(outcomes) if isinstance(r, pb.RecordUsageBatchResponse)
    }
    refused = {b: r for b, r in enumerate(outcomes) if isinstance(r, grpc.StatusCode)}
    assert len(acknowledged) >= 3
    assert set(refused.values()) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    record_errors = [
        (b, i, r.error.code, r.error.reason)
        for b, response in acknowledged.items()
        for i, r in enumerate(response.results)
        if r.HasField("error")
    ]
    assert not record_errors, f"records of answered batches failed: {record_errors[:5]}"
    acked_ids = {
        f"b{b}-{i}": r.response.record_id
        for b, response in acknowledged.items()
        for i, r in enumerate(response.results)
    }
    # The relay resends every batch after a restart: refused ones are written now,
    # answered ones are replays with the record_ids it already has.
    refused_replayed = 0
    server = ServerProcess(database_url, prices_file=TEST_PRICES).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            for b, batch in enumerate(batches):
                again = stub.RecordUsageBatch(batch, timeout=30)
                for i, result in enumerate(again.results):
                    assert result.HasField("response"), (b, i, result.error)
                    if b in acknowledged:
                        assert result.response.replayed
                        assert result.response.record_id == acked_ids[f"b{b}-{i}"]
                    else:
                        acked_ids[f"b{b}-{i}"] = result.response.record_id
                        refused_replayed += result.response.replayed
    finally:
        assert server.stop() == 0
    stored = _assert_exactly_once(
        database_url,
        account_id,
        {r.request_id for batch in batches for r in batch.records},
        acked_ids,
        f"{backend} sigterm",
    )
    with capsys.disabled():
        print(
            f"\n[{backend} SIGTERM] batches={BATCHES}x{BATCH_RECORDS} answered={len(acknowledged)} "
            f"refused={dict(Counter(c.name for c in refused.values()))} "
            f"(of whose records {refused_replayed} had been written) records={stored.count} "
            f"lost=0 duplicated=0; in-flight calls answered {timings['answered_s']:.2f} s "
            f"after SIGTERM"
        )
