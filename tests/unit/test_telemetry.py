"""Telemetry settings, the JSON log formatter and bounded metric labels."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from metering import telemetry
from metering.config import ConfigError, load_settings


def test_telemetry_defaults() -> None:
    settings = load_settings({})
    assert settings.log_format == "auto"
    assert settings.otlp_endpoint is None
    assert settings.prometheus_port is None


def test_otlp_endpoint_metering_variable_wins_over_the_standard_one() -> None:
    standard = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert standard.otlp_endpoint == "http://collector:4317"
    both = load_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "METERING_OTLP_ENDPOINT": "https://otel.example:4317",
        }
    )
    assert both.otlp_endpoint == "https://otel.example:4317"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"METERING_LOG_FORMAT": "xml"}, "METERING_LOG_FORMAT"),
        ({"METERING_OTLP_ENDPOINT": "collector:4317"}, "METERING_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://user:pw@x"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"METERING_PROMETHEUS_PORT": "70000"}, "METERING_PROMETHEUS_PORT"),
        ({"METERING_PROMETHEUS_PORT": "x"}, "METERING_PROMETHEUS_PORT"),
    ],
)
def test_bad_telemetry_settings(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert "pw@" not in message  # an endpoint URL is never echoed


def test_log_format_and_prometheus_port_are_read() -> None:
    settings = load_settings({"METERING_LOG_FORMAT": "JSON", "METERING_PROMETHEUS_PORT": "9464"})
    assert (settings.log_format, settings.prometheus_port) == ("json", 9464)


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("metering.x", logging.ERROR, __file__, 1, message, args, exc_info)


def test_json_formatter_one_object_per_record() -> None:
    formatter = telemetry.JsonFormatter()
    line = formatter.format(_record("line one\nline %s", "two", exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "line one\nline two"
    assert entry["level"] == "ERROR" and entry["logger"] == "metering.x"
    assert entry["time"].endswith("+00:00")
    assert "RuntimeError: boom" in entry["exception"]
    method = telemetry.rpc_method_var.set("metering.v1.MeteringService/RecordUsage")
    request = telemetry.request_id_var.set("chatcmpl-1")
    try:
        inside = json.loads(formatter.format(_record("inside")))
    finally:
        telemetry.request_id_var.reset(request)
        telemetry.rpc_method_var.reset(method)
    assert inside["rpc_method"] == "metering.v1.MeteringService/RecordUsage"
    assert inside["request_id"] == "chatcmpl-1"


def test_configure_logging_formats() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        telemetry.configure_logging("WARNING", "json")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, telemetry.JsonFormatter)
        assert root.level == logging.WARNING
        telemetry.configure_logging("INFO", "text")
        (handler,) = root.handlers
        assert not isinstance(handler.formatter, telemetry.JsonFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_bounded_labels() -> None:
    labels = telemetry._BoundedLabels(limit=2)
    assert labels("") == "unknown"
    assert labels("openai") == "openai"
    assert labels("has space") == "other"
    assert labels("x" * 65) == "other"
    assert labels("anthropic") == "anthropic"
    assert labels("google") == "other"  # past the limit
    assert labels("openai") == "openai"  # seen before
