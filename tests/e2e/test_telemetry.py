"""`metering serve` telemetry as deployed: OTLP export to a receiver, JSON logs, Prometheus."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from metering import telemetry
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.conftest import TEST_PRICES
from tests.support.server import ServerProcess


class Receiver(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    """A tiny OTLP/gRPC collector: keeps every export request it receives."""

    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.traces.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metrics.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    # One servicer object serves both services: the generated registrations bind
    # "Export" by service, and the request type tells the two apart.
    kept = Receiver()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(kept, server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(kept, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield kept, port
    finally:
        server.stop(0)


def test_traces_and_metrics_reach_an_otlp_receiver(
    receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    kept, port = receiver
    account = f"acct-{uuid.uuid4().hex[:12]}"
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'metering.db'}",
        prices_file=TEST_PRICES,
        env={"METERING_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_SERVICE_NAME": ""},
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin = admin_grpc.MeteringAdminServiceStub(channel)
            admin.CreateAccount(admin_pb.CreateAccountRequest(account_id=account), timeout=10)
            pb_grpc.MeteringServiceStub(channel).RecordUsage(
                pb.RecordUsageRequest(
                    account_id=account,
                    request_id="r-1",
                    model="cheap-model",
                    usage=types_pb2.TokenUsage(input_tokens=13),
                ),
                timeout=10,
            )
    finally:
        # Shutting down flushes the batched spans and a last metrics export.
        assert server.stop() == 0, server.log_tail()

    spans = {
        span.name: span
        for request in kept.traces
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    }
    assert {
        "metering.v1.MeteringAdminService/CreateAccount",
        "metering.v1.MeteringService/RecordUsage",
    } <= set(spans), server.log_tail()
    resource = {
        a.key: a.value.string_value for a in kept.traces[0].resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "metering"
    metric_names = {
        metric.name
        for request in kept.metrics
        for resource_metrics in request.resource_metrics
        for scope in resource_metrics.scope_metrics
        for metric in scope.metrics
    }
    assert {
        "rpc.server.call.duration",
        "metering.usage.records",
        "metering.group_commit.batch.size",
        "metering.db.pool.checked_out",
    } <= metric_names
    exported = b"".join(r.SerializeToString() for r in [*kept.traces, *kept.metrics])
    assert account.encode() not in exported
    assert b"r-1" not in exported


def test_json_logs_on_stderr_and_the_listening_line_unchanged(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'metering.db'}", env={"METERING_LOG_FORMAT": "json"}
    ).start()
    assert server.stop() == 0
    lines = list(server.output)
    assert any(line.startswith("metering listening on 127.0.0.1:") for line in lines)
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    shutdown = [entry for entry in logged if entry["message"].startswith("shutting down")]
    assert shutdown, lines
    assert {"time", "level", "logger", "message"} <= set(shutdown[0])
    assert shutdown[0]["level"] == "INFO" and shutdown[0]["logger"] == "metering"


def test_prometheus_needs_a_single_worker(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "metering", "serve", "--workers", "2", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "METERING_PROMETHEUS_PORT": "0"},
    )
    assert done.returncode == 2
    assert "METERING_PROMETHEUS_PORT" in done.stderr


def test_a_taken_prometheus_port_fails_startup_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "metering", "serve", "--listen", "127.0.0.1:0"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "METERING_PROMETHEUS_PORT": str(port)},
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "METERING_PROMETHEUS_PORT" in lines[0], done.stderr


def test_prometheus_scrape_endpoint() -> None:
    exporting = telemetry.setup(prometheus_port=0, set_global=False)
    try:
        assert exporting.prometheus_port
        telemetry.record_usage("REPORTED", "openai", 435_000, "USD", "openai/gpt-4o-mini")
        telemetry.record_reservation_event("opened")
        url = f"http://127.0.0.1:{exporting.prometheus_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        exporting.shutdown()
        telemetry.use()
    assert (
        'metering_usage_records_total{metering_price_id="openai/gpt-4o-mini",'
        'metering_provider="openai",metering_usage_source="REPORTED"'
    ) in text, text
    assert "metering_usage_cost_nanos_total" in text, text
    assert "metering_reservations_opened_total" in text, text
