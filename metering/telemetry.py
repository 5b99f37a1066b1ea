"""Telemetry: OpenTelemetry traces and metrics, and structured (JSON) logs.

The instruments live here so that every layer can record through one small
API without knowing about exporters: the gRPC interceptor
(``metering.api.observability``) records RPC spans and latencies, the group
commit records batch sizes, waits and the usage it wrote, the reservations
code calls :func:`record_reservation_event`.

Until :func:`use` (tests) or :func:`setup` (``metering serve``) installs SDK
providers, every instrument is the API's no-op and costs next to nothing.
:func:`setup` exports over OTLP/gRPC when ``METERING_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and serves a Prometheus scrape
endpoint when ``METERING_PROMETHEUS_PORT`` is set; with neither it installs
nothing.

Only low-cardinality attributes are ever recorded: method names, status
codes, error reasons, usage sources, providers from the price book and
currencies; never account ids, API keys, request ids, model names or any
prompt or completion text. Logs may carry the caller's ``request_id`` (an
idempotency key the caller chose), never a request body.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

SCOPE = "metering"

# RPC latencies in seconds: sub-millisecond reads up to slow PostgreSQL commits.
LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)

# The request context of the RPC being served, for log records (set by the interceptor).
rpc_method_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "metering_rpc_method", default=None
)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "metering_request_id", default=None
)

ReservationEvent = Literal["opened", "expired"]

_LABEL = re.compile(r"[A-Za-z0-9_.@:/\-]{1,64}")
# Provider and currency values come from the price book and the accounts, which
# admins control; still, past this many distinct values new ones become "other".
_MAX_DISTINCT_LABELS = 64
log = logging.getLogger("metering.provenance")


class _BoundedLabels:
    """Maps a value to itself while few distinct values were seen, else to "other"."""

    def __init__(self, limit: int = _MAX_DISTINCT_LABELS) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str, empty: str = "unknown") -> str:
        if not value:
            return empty
        if not _LABEL.fullmatch(value):
            return "other"
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return "other"
            self._seen.add(value)
            return value


class UnmeasuredShare:
    """The share of calls without reported usage (ESTIMATED or MISSING), per provider and price.

    Counted over fixed windows; a warning is logged once per window and key
    when the share reaches the threshold over at least ``min_calls`` calls, so
    a provider that silently stopped sending usage is noticed within minutes.
    Bounded: at most ``_MAX_DISTINCT_LABELS`` keys per window.
    """

    def __init__(
        self,
        threshold_percent: int = 5,
        window_seconds: float = 300.0,
        min_calls: int = 20,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.threshold_percent = threshold_percent
        self.window_seconds = window_seconds
        self.min_calls = min_calls
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._start = self._clock()
        self._counts: dict[tuple[str, str], list[int]] = {}  # key -> [calls, unmeasured]
        self._last: dict[tuple[str, str], float] = {}  # the previous window's shares
        self._warned: set[tuple[str, str]] = set()

    def add(self, provider: str, price_id: str, unmeasured: bool) -> bool:
        """Count one call; True when this call made the key cross the threshold (logged)."""
        key = (provider, price_id)
        with self._lock:
            now = self._clock()
            if now - self._start >= self.window_seconds:
                self._last = {k: c[1] / c[0] for k, c in self._counts.items() if c[0]}
                self._counts, self._warned, self._start = {}, set(), now
            counts = self._counts.get(key)
            if counts is None:
                if len(self._counts) >= _MAX_DISTINCT_LABELS:
                    return False
                counts = self._counts[key] = [0, 0]
            counts[0] += 1
            counts[1] += int(unmeasured)
            calls, without = counts
            crossed = (
                key not in self._warned
                and calls >= self.min_calls
                and without * 100 >= self.threshold_percent * calls
            )
            if crossed:
                self._warned.add(key)
        if crossed:
            log.warning(
                "%d of the last %d calls to %s %s had no reported usage (estimated or "
                "missing, %.1f%% >= %d%%): check the relay's usage extraction; "
                "`metering review list` shows them",
                without,
                calls,
                provider or "unknown provider",
                price_id or "(unpriced model)",
                100 * without / calls,
                self.threshold_percent,
            )
        return crossed

    def shares(self) -> dict[tuple[str, str], float]:
        """The current window's shares, or the previous window's for keys not seen yet."""
        with self._lock:
            current = {k: c[1] / c[0] for k, c in self._counts.items() if c[0]}
            return {**self._last, **current}


_unmeasured = UnmeasuredShare()


def configure_unmeasured_share(
    threshold_percent: int, window_seconds: float = 300.0, min_calls: int = 20
) -> None:
    global _unmeasured
    _unmeasured = UnmeasuredShare(threshold_percent, window_seconds, min_calls)


def _observe_unmeasured(_options: CallbackOptions) -> Iterable[Observation]:
    for (provider, price_id), share in sorted(_unmeasured.shares().items()):
        yield Observation(
            share,
            {"metering.provider": provider or "none", "metering.price_id": price_id or "none"},
        )


@dataclass
class Instruments:
    """Every instrument metering records, made from one tracer and one meter."""

    tracer: trace.Tracer
    meter: metrics.Meter
    rpc_duration: metrics.Histogram = field(init=False)
    usage_records: metrics.Counter = field(init=False)
    cost_nanos: metrics.Counter = field(init=False)
    batch_size: metrics.Histogram = field(init=False)
    batch_wait: metrics.Histogram = field(init=False)
    batch_commit: metrics.Histogram = field(init=False)
    reservations_opened: metrics.Counter = field(init=False)
    reservations_expired: metrics.Counter = field(init=False)
    budget_events: metrics.Counter = field(init=False)
    providers: _BoundedLabels = field(default_factory=_BoundedLabels)
    price_ids: _BoundedLabels = field(default_factory=_BoundedLabels)
    currencies: _BoundedLabels = field(default_factory=_BoundedLabels)

    def __post_init__(self) -> None:
        m = self.meter
        self.rpc_duration = m.create_histogram(
            "rpc.server.call.duration",
            unit="s",
            description="Duration of served RPCs, by rpc.method and rpc.grpc.status_code "
            "(its count is the number of calls).",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
        )
        self.usage_records = m.create_counter(
            "metering.usage.records",
            unit="{record}",
            description="Usage records written (replays excluded), by usage source and provider.",
        )
        self.cost_nanos = m.create_counter(
            "metering.usage.cost",
            unit="nanos",
            description="Money charged for recorded usage, in nanos of metering.currency.",
        )
        self.batch_size = m.create_histogram(
            "metering.group_commit.batch.size",
            unit="{record}",
            description="Records written per group-commit transaction.",
            explicit_bucket_boundaries_advisory=BATCH_SIZE_BUCKETS,
        )
        self.batch_wait = m.create_histogram(
            "metering.group_commit.wait",
            unit="s",
            description="Time a group-commit batch waited for more records before its write.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
        )
        self.batch_commit = m.create_histogram(
            "metering.group_commit.commit.duration",
            unit="s",
            description="Duration of a group-commit write, including a record-by-record retry.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
        )
        self.reservations_opened = m.create_counter(
            "metering.reservations.opened",
            unit="{reservation}",
            description="Reservations (holds) opened.",
        )
        self.reservations_expired = m.create_counter(
            "metering.reservations.expired",
            unit="{reservation}",
            description="Reservations that expired without being captured or released.",
        )
        self.budget_events = m.create_counter(
            "metering.budget.events",
            unit="{event}",
            description="Budget thresholds crossed (each once per budget period; the outbox "
            "ListBudgetEvents serves them), by metric, hardness and threshold percent.",
        )
        m.create_observable_gauge(
            "metering.usage.unmeasured_share",
            callbacks=[_observe_unmeasured],
            unit="1",
            description="Share of calls in the current 5-minute window whose usage was "
            "estimated or missing, by provider and price id.",
        )
        m.create_observable_gauge(
            "metering.db.pool.checked_out",
            callbacks=[_observe_pools],
            unit="{connection}",
            description="Database connections checked out of the SQLAlchemy pool.",
        )


def _version() -> str:
    from metering import __version__

    return __version__


_instruments_lock = threading.Lock()
_instruments: Instruments | None = None
# Engines whose pools the checked-out gauge reports (summed: one process, one number).
_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def use(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instruments:
    """Record through these providers from now on (None: the global ones)."""
    global _instruments
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE, _version())
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE, _version())
    made = Instruments(tracer, meter)
    with _instruments_lock:
        _instruments = made
    return made


def instruments() -> Instruments:
    """The current instruments (the global providers' until :func:`use` or :func:`setup`)."""
    current = _instruments
    return current if current is not None else use()


def watch_pool(engine: Any) -> None:
    """Report ``engine``'s pool in the checked-out connections gauge (until it is collected)."""
    _pools.add(engine)


def _observe_pools(_options: CallbackOptions) -> Iterable[Observation]:
    total = 0
    for engine in list(_pools):
        checkedout = getattr(engine.pool, "checkedout", None)
        if checkedout is not None:
            total += int(checkedout())
    yield Observation(total)


def record_usage(
    usage_source: str, provider: str, cost_nanos: int, currency_code: str, price_id: str = ""
) -> None:
    """One usage record written: ``provider`` and ``price_id`` are the price book's, never the
    caller's text (bounded label sets)."""
    current = instruments()
    provider_label = current.providers(provider, empty="none")
    price_label = current.price_ids(price_id, empty="none")
    current.usage_records.add(
        1,
        {
            "metering.usage_source": usage_source,
            "metering.provider": provider_label,
            "metering.price_id": price_label,
        },
    )
    _unmeasured.add(provider_label, price_label, usage_source in ("ESTIMATED", "MISSING"))
    if cost_nanos > 0:
        current.cost_nanos.add(cost_nanos, {"metering.currency": current.currencies(currency_code)})


def record_budget_event(metric: str, hard: bool, threshold_percent: int) -> None:
    """A budget crossed a threshold (an outbox row was written)."""
    instruments().budget_events.add(
        1,
        {
            "metering.budget_metric": metric,
            "metering.budget_hard": hard,
            "metering.threshold_percent": threshold_percent,
        },
    )


def observe_group_commit(size: int, wait_seconds: float) -> None:
    """A group-commit batch of ``size`` records is about to be written."""
    current = instruments()
    current.batch_size.record(size)
    current.batch_wait.record(max(wait_seconds, 0.0))


def observe_group_commit_write(seconds: float) -> None:
    instruments().batch_commit.record(max(seconds, 0.0))


def record_reservation_event(kind: ReservationEvent, count: int = 1) -> None:
    """A reservation was opened or expired (``count`` of them, e.g. from an expiry sweep)."""
    current = instruments()
    if kind == "opened":
        current.reservations_opened.add(count)
    elif kind == "expired":
        current.reservations_expired.add(count)
    else:
        raise ValueError(f"unknown reservation event {kind!r}")


# --- providers and exporters (metering serve) -------------------------------------------


@dataclass
class Telemetry:
    """What :func:`setup` installed; :meth:`shutdown` flushes and stops it."""

    tracer_provider: Any = None
    meter_provider: Any = None
    prometheus_server: Any = None
    prometheus_port: int | None = None
    exporters: list[str] = field(default_factory=list)

    def shutdown(self) -> None:
        if self.prometheus_server is not None:
            self.prometheus_server.shutdown()
            self.prometheus_server.server_close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def setup(
    *,
    otlp_endpoint: str | None = None,
    prometheus_host: str = "127.0.0.1",
    prometheus_port: int | None = None,
    export_interval_seconds: float = 10.0,
    set_global: bool = True,
) -> Telemetry:
    """Install SDK providers with the configured exporters; with none configured, nothing.

    ``otlp_endpoint`` is an ``http://`` (plaintext) or ``https://`` URL of an
    OTLP/gRPC receiver; the exporters still read the other standard
    ``OTEL_EXPORTER_OTLP_*`` variables (headers, certificates, timeout).
    """
    done = Telemetry()
    if otlp_endpoint is None and prometheus_port is None:
        use()
        return done
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still apply (and win).
    resource = Resource.create({SERVICE_NAME: "metering", SERVICE_VERSION: _version()})
    readers: list[MetricReader] = []
    tracer_provider = TracerProvider(resource=resource)
    if otlp_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        insecure = otlp_endpoint.startswith("http://")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=insecure))
        )
        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=otlp_endpoint, insecure=insecure),
                export_interval_millis=export_interval_seconds * 1000,
            )
        )
        done.exporters.append(f"otlp {otlp_endpoint}")
    if prometheus_port is not None:
        # Only imported when configured: prometheus_client is otherwise unused.
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
        server, _thread = start_http_server(prometheus_port, prometheus_host, registry=registry)
        done.prometheus_server = server
        done.prometheus_port = int(server.server_port)
        done.exporters.append(f"prometheus {prometheus_host}:{done.prometheus_port}/metrics")
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    done.tracer_provider, done.meter_provider = tracer_provider, meter_provider
    use(tracer_provider, meter_provider)
    return done


# --- logs --------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the RPC's context.

    ``rpc_method`` and ``request_id`` are added inside an RPC (set by the
    interceptor), ``trace_id``/``span_id`` while a recording span is current,
    ``exception`` with the traceback when the record has one. Nothing else of
    the record (in particular no ``extra`` fields) is written.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_request_context())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _request_context() -> Iterator[tuple[str, str]]:
    method = rpc_method_var.get()
    if method is not None:
        yield "rpc_method", method
    request_id = request_id_var.get()
    if request_id:
        yield "request_id", request_id
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        yield "trace_id", format(span.trace_id, "032x")
        yield "span_id", format(span.span_id, "016x")


def configure_logging(level: str, log_format: str = "auto") -> None:
    """Root logging on stderr: ``json``, ``text``, or ``auto`` (text on a terminal, else json)."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
