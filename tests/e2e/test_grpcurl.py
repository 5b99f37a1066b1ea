"""grpcurl against the running server, with no proto files: reflection is the contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Live

_TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"


def _grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(_TOOLS)) or shutil.which("grpcurl")
    if found is None:
        reason = "grpcurl not installed (run scripts/install-tools)"
        if os.environ.get("METERING_REQUIRE_TOOLS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _run(live: Live, *args: str, body: dict[str, object] | None = None) -> str:
    command = [_grpcurl(), "-plaintext"]
    if body is not None:
        command += ["-d", json.dumps(body)]
    command += [live.server.target, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_grpcurl_lists_every_service(verified: Live) -> None:
    services = _run(verified, "list").split()
    assert services == sorted(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "metering.v1.MeteringAdminService",
            "metering.v1.MeteringService",
        ]
    )


def test_grpcurl_describes_the_contract(verified: Live) -> None:
    described = _run(verified, "describe", "metering.v1.MeteringService")
    for rpc in ("RecordUsage", "EstimateTokens", "GetBalance", "UsageSummary"):
        assert (
            f"rpc {rpc} ( .metering.v1.{rpc}Request ) returns ( .metering.v1.{rpc}Response )"
            in described
        )
    message = _run(verified, "describe", "metering.v1.TokenUsage")
    assert "cache_write_1h_tokens" in message


def test_grpcurl_records_usage_with_a_json_body(verified: Live) -> None:
    account = verified.new_account(units=1)
    output = _run(
        verified,
        "metering.v1.MeteringService/RecordUsage",
        body={
            "account_id": account,
            "request_id": "grpcurl-1",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "usage": {"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 200},
            "labels": {"route": "chat"},
        },
    )
    response = json.loads(output)
    assert response["cost"] == {"currency_code": "USD", "nanos": 435000}
    assert response["usage_source"] == "USAGE_SOURCE_REPORTED"
    assert response["price_id"] == "openai/gpt-4o-mini"
    health = json.loads(_run(verified, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}
    liveness = json.loads(
        _run(verified, "grpc.health.v1.Health/Check", body={"service": "metering.liveness"})
    )
    assert liveness == {"status": "SERVING"}
