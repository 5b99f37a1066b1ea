"""Observability of the real server, in process: spans, metrics and log context over gRPC.

The server is metering.api.server.start_server on a real SQLite database,
called over real gRPC on loopback; telemetry records into the SDK's
in-memory span exporter and metric reader.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from metering import telemetry
from metering.api.observability import ObservabilityInterceptor
from metering.api.server import RunningServer, start_server
from metering.bootstrap import App, build_app
from metering.config import load_settings
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.conftest import TEST_PRICES

ADMIN = "metering.v1.MeteringAdminService"
SERVICE = "metering.v1.MeteringService"


@dataclass
class Observed:
    app: App
    server: RunningServer
    channel: grpc.aio.Channel
    metering: pb_grpc.MeteringServiceStub
    admin: admin_grpc.MeteringAdminServiceStub
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """Every data point of metric ``name`` collected so far (cumulative)."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        found = []
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def all_attribute_values(self) -> list[str]:
        values = []
        for span in self.finished():
            values += [str(v) for v in (span.attributes or {}).values()]
            values += [str(v) for v in span.resource.attributes.values()]
            values.append(span.name)
        data = self.metrics.get_metrics_data()
        assert data is not None
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        values += [str(v) for v in (point.attributes or {}).values()]
        return values


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[Observed]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.use(tracer_provider, meter_provider)
    settings = load_settings(
        {
            "METERING_DATABASE_URL": f"sqlite:///{tmp_path / 'metering.db'}",
            "METERING_DB_POOL_SIZE": "4",
        },
        prices_file=str(TEST_PRICES),
    )
    app = build_app(settings)
    telemetry.watch_pool(app.engine)
    server = await start_server(
        app.metering,
        app.price_admin,
        app.executor,
        "127.0.0.1:0",
        settings.max_message_bytes,
        app.database.ping,
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Observed(
            app,
            server,
            channel,
            pb_grpc.MeteringServiceStub(channel),
            admin_grpc.MeteringAdminServiceStub(channel),
            spans,
            reader,
        )
    finally:
        await channel.close()
        await server.stop(0)
        app.close()
        telemetry.use()  # back to the global (no-op) providers
        tracer_provider.shutdown()
        meter_provider.shutdown()


def _usage(account: str, request_id: str, tokens: int = 13) -> pb.RecordUsageRequest:
    return pb.RecordUsageRequest(
        account_id=account,
        request_id=request_id,
        model="cheap-model",
        provider="test",
        usage=types_pb2.TokenUsage(input_tokens=tokens),
    )


async def test_spans_and_metrics_per_rpc_without_account_ids(observed: Observed) -> None:
    account = f"acct-secret-{uuid.uuid4().hex[:8]}"
    await observed.admin.CreateAccount(
        admin_pb.CreateAccountRequest(account_id=account, currency_code="USD"), timeout=10
    )
    grant = admin_pb.GrantCreditsRequest(account_id=account, request_id=f"grant-{account}")
    grant.amount.CopyFrom(types_pb2.Money(currency_code="USD", units=1))
    await observed.admin.GrantCredits(grant, timeout=10)
    first = await observed.metering.RecordUsage(_usage(account, f"req-{account}"), timeout=10)
    replay = await observed.metering.RecordUsage(_usage(account, f"req-{account}"), timeout=10)
    assert not first.replayed and replay.replayed
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await observed.metering.GetBalance(
            pb.GetBalanceRequest(account_id=f"{account}-missing"), timeout=10
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    spans = {span.name: span for span in observed.finished()}
    assert set(spans) == {
        f"{ADMIN}/CreateAccount",
        f"{ADMIN}/GrantCredits",
        f"{SERVICE}/RecordUsage",
        f"{SERVICE}/GetBalance",
    }
    record = spans[f"{SERVICE}/RecordUsage"]
    assert dict(record.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "RecordUsage",
        "rpc.grpc.status_code": 0,
    }
    assert record.kind.name == "SERVER"
    failed = spans[f"{SERVICE}/GetBalance"]
    assert (failed.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert (failed.attributes or {})["metering.reason"] == "ACCOUNT_NOT_FOUND"
    # NOT_FOUND is the caller's error, not the server's: the span status stays unset.
    assert failed.status.status_code.name == "UNSET"

    durations = {
        (p.attributes["rpc.method"], p.attributes["rpc.grpc.status_code"]): p.count
        for p in observed.points("rpc.server.call.duration")
    }
    assert durations[("RecordUsage", 0)] == 2
    assert durations[("GetBalance", grpc.StatusCode.NOT_FOUND.value[0])] == 1
    assert durations[("CreateAccount", 0)] == 1
    # Only the first RecordUsage wrote: the replay is not a second record.
    records = {
        (p.attributes["metering.usage_source"], p.attributes["metering.provider"]): p.value
        for p in observed.points("metering.usage.records")
    }
    assert records == {("REPORTED", "test"): 1}
    cost = {
        p.attributes["metering.currency"]: p.value for p in observed.points("metering.usage.cost")
    }
    assert cost == {"USD": 650}
    batches = observed.points("metering.group_commit.batch.size")
    assert sum(p.sum for p in batches) == 2 and sum(p.count for p in batches) == 2
    assert sum(p.count for p in observed.points("metering.group_commit.wait")) == 2
    assert sum(p.count for p in observed.points("metering.group_commit.commit.duration")) == 2
    (pool,) = observed.points("metering.db.pool.checked_out")
    assert pool.value == 0  # idle between calls: every connection is back in the pool

    # No exception events: an error's message may name the account.
    assert not [s for s in observed.finished() if s.events]
    values = observed.all_attribute_values()
    assert values
    assert not [v for v in values if account in v]
    assert not [v for v in values if "req-" in v or "grant-" in v]


async def test_the_callers_trace_is_continued(observed: Observed) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{'ab' * 8}-01"
    await observed.metering.EstimateTokens(
        pb.EstimateTokensRequest(model="gpt-4o-mini", text="hello"),
        metadata=(("traceparent", traceparent),),
        timeout=10,
    )
    (span,) = [s for s in observed.finished() if s.name.endswith("/EstimateTokens")]
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == "ab" * 8


async def test_health_checks_are_measured_not_traced(observed: Observed) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(observed.channel)
    await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert not [s for s in observed.finished() if "Health" in s.name]
    assert [
        p
        for p in observed.points("rpc.server.call.duration")
        if p.attributes["rpc.method"] == "Check"
    ]


async def test_reservation_events_are_counted(observed: Observed) -> None:
    telemetry.record_reservation_event("opened")
    telemetry.record_reservation_event("opened")
    telemetry.record_reservation_event("expired", 3)
    assert [p.value for p in observed.points("metering.reservations.opened")] == [2]
    assert [p.value for p in observed.points("metering.reservations.expired")] == [3]
    with pytest.raises(ValueError, match="unknown reservation event"):
        telemetry.record_reservation_event("bogus")  # type: ignore[arg-type]


async def test_the_share_of_calls_without_usage_is_measured_and_warned_about(
    observed: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry.configure_unmeasured_share(50, window_seconds=300, min_calls=4)
    try:
        account = f"acct-{uuid.uuid4().hex[:8]}"
        await observed.admin.CreateAccount(
            admin_pb.CreateAccountRequest(account_id=account, allow_negative_balance=True),
            timeout=10,
        )
        with caplog.at_level(logging.WARNING, logger="metering.provenance"):
            await observed.metering.RecordUsage(_usage(account, "with-1"), timeout=10)
            await observed.metering.RecordUsage(_usage(account, "with-2"), timeout=10)
            for index in range(2):
                call = _usage(account, f"without-{index}")
                call.ClearField("usage")
                await observed.metering.RecordUsage(call, timeout=10)
        records = {
            (p.attributes["metering.usage_source"], p.attributes["metering.price_id"]): p.value
            for p in observed.points("metering.usage.records")
        }
        assert records == {("REPORTED", "test/cheap"): 2, ("MISSING", "test/cheap"): 2}
        shares = {
            p.attributes["metering.price_id"]: p.value
            for p in observed.points("metering.usage.unmeasured_share")
        }
        assert shares == {"test/cheap": 0.5}
        warnings = [r.getMessage() for r in caplog.records if r.name == "metering.provenance"]
        assert len(warnings) == 1, warnings  # once per window, at the crossing
        assert "2 of the last 4 calls to test test/cheap " in warnings[0]
    finally:
        telemetry.configure_unmeasured_share(5)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Root logging into a buffer through the JSON formatter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(telemetry.JsonFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


async def test_json_log_lines_carry_the_rpc_method_and_request_id(
    json_logs: io.StringIO,
) -> None:
    """A log record written inside an RPC names the method and the caller's request_id."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.use(tracer_provider, MeterProvider())

    async def handle(request: pb.RecordUsageRequest, context: Any) -> pb.RecordUsageResponse:
        logging.getLogger("metering.test").info("handling a call")
        return pb.RecordUsageResponse(record_id="r1")

    handler = grpc.method_handlers_generic_handler(
        "test.Logging",
        {
            "Log": grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=pb.RecordUsageRequest.FromString,
                response_serializer=pb.RecordUsageResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(interceptors=[ObservabilityInterceptor()])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                "/test.Logging/Log",
                request_serializer=pb.RecordUsageRequest.SerializeToString,
                response_deserializer=pb.RecordUsageResponse.FromString,
            )
            await call(pb.RecordUsageRequest(account_id="acct-x", request_id="chatcmpl-42"))
            await call(pb.RecordUsageRequest(request_id="bad\nid"))
        logging.getLogger("metering.test").warning("outside any call")
    finally:
        await server.stop(0)
        telemetry.use()
        tracer_provider.shutdown()

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    inside, bad, outside = (line for line in lines if line["logger"] == "metering.test")
    assert inside["message"] == "handling a call"
    assert inside["level"] == "INFO"
    assert inside["rpc_method"] == "test.Logging/Log"
    assert inside["request_id"] == "chatcmpl-42"
    (span,) = [
        s for s in spans.get_finished_spans() if s.context.span_id == int(inside["span_id"], 16)
    ]
    assert format(span.context.trace_id, "032x") == inside["trace_id"]
    assert set(inside) == {
        "time",
        "level",
        "logger",
        "message",
        "rpc_method",
        "request_id",
        "trace_id",
        "span_id",
    }
    assert "acct-x" not in json_logs.getvalue()
    assert bad["request_id"] == "<invalid>"
    assert outside["level"] == "WARNING"
    assert "rpc_method" not in outside and "request_id" not in outside
