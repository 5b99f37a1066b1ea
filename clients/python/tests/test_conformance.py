"""The language-neutral conformance scenario (clients/conformance/scenario.json).

One test per step, run in order through :class:`MeteringClient`, plus one test
running the whole scenario through :class:`AsyncMeteringClient`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from support import CONFORMANCE, MeteringServer

from metering_client import AsyncMeteringClient, MeteringClient, MeteringError
from metering_client.v1 import admin_service_pb2, metering_service_pb2

SCENARIO = json.loads((CONFORMANCE / "scenario.json").read_text())
STEPS: list[dict[str, Any]] = SCENARIO["steps"]


def _placeholders() -> dict[str, str]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def fmt(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "${account}": "conf-py-" + uuid.uuid4().hex[:10],
        "${now}": fmt(now),
        "${start}": fmt(now - dt.timedelta(hours=1)),
        "${end}": fmt(now + dt.timedelta(hours=1)),
    }


def substitute(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, repl in subs.items():
            value = value.replace(key, repl)
        return value
    if isinstance(value, list):
        return [substitute(v, subs) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, subs) for k, v in value.items()}
    return value


def method_name(rpc: str) -> str:
    """``MeteringService/RecordUsageBatch`` -> ``record_usage_batch``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc.split("/", 1)[1]).lower()


def request_of(rpc: str, body: dict[str, Any]) -> Any:
    service, method = rpc.split("/", 1)
    module = admin_service_pb2 if service == "MeteringAdminService" else metering_service_pb2
    return json_format.ParseDict(body, getattr(module, method + "Request")())


def subset_mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where ``expected`` is not a subset of ``actual`` (None when it is)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing (expected {value!r})"
            where = subset_mismatch(value, actual[key], f"{path}.{key}")
            if where:
                return where
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{path}: expected {len(expected)} elements, got {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            where = subset_mismatch(e, a, f"{path}[{i}]")
            if where:
                return where
        return None
    return None if expected == actual else f"{path}: expected {expected!r}, got {actual!r}"


def outcome_of_error(err: MeteringError) -> dict[str, Any]:
    return {"code": err.code.name, "reason": err.reason, "fields": err.fields}


def check(step: dict[str, Any], outcome: dict[str, Any]) -> str | None:
    """None when the outcome meets the step's expectation, else what differs."""
    expect = step["expect"]
    if "error" in expect:
        if "error" not in outcome:
            return f"expected error {expect['error']}, got response {outcome['response']}"
        got = outcome["error"]
        want = expect["error"]
        for key in ("code", "reason", "fields"):
            if key in want and want[key] != got[key]:
                return f"error {key}: expected {want[key]!r}, got {got[key]!r} ({got})"
        return None
    if "response" not in outcome:
        return f"expected a response, got error {outcome['error']}"
    actual = outcome["response"]
    where = subset_mismatch(expect["response"], actual)
    if where:
        return f"{where}\nactual: {json.dumps(actual)}"
    for name in expect.get("unset", []):
        if name in actual:
            return f"{name} should be unset, got {actual[name]!r}"
    return None


@dataclass
class Run:
    client: MeteringClient
    subs: dict[str, str] = field(default_factory=_placeholders)


@pytest.fixture(scope="module")
def run(server: MeteringServer) -> Any:
    with MeteringClient(server.address) as client:
        yield Run(client)


def test_scenario_is_well_formed() -> None:
    ids = [s["id"] for s in STEPS]
    assert len(ids) == len(set(ids))
    for step in STEPS:
        assert set(step) <= {"id", "description", "rpc", "request", "expect", "requires"}
        assert method_name(step["rpc"]) in dir(MeteringClient), step["rpc"]
        assert ("response" in step["expect"]) != ("error" in step["expect"]), step["id"]
        request_of(step["rpc"], substitute(step["request"], _placeholders()))
    errors = [s for s in STEPS if "error" in s["expect"]]
    assert len(errors) >= 6


@pytest.mark.parametrize("step", STEPS, ids=[s["id"] for s in STEPS])
def test_step(run: Run, step: dict[str, Any]) -> None:
    request = request_of(step["rpc"], substitute(step["request"], run.subs))
    method = getattr(run.client, method_name(step["rpc"]))
    try:
        outcome: dict[str, Any] = {"response": json_format.MessageToDict(method(request))}
    except MeteringError as err:
        outcome = {"error": outcome_of_error(err)}
    problem = check(substitute(step, run.subs), outcome)
    if problem and "requires" in step:
        pytest.xfail(f"PENDING (requires {step['requires']}): {problem}")
    assert problem is None, f"{step['id']}: {problem}"


async def test_scenario_async_client(server: MeteringServer) -> None:
    subs = _placeholders()
    failures = []
    async with AsyncMeteringClient(server.address) as client:
        for step in STEPS:
            request = request_of(step["rpc"], substitute(step["request"], subs))
            method = getattr(client, method_name(step["rpc"]))
            try:
                outcome: dict[str, Any] = {
                    "response": json_format.MessageToDict(await method(request))
                }
            except MeteringError as err:
                outcome = {"error": outcome_of_error(err)}
            problem = check(substitute(step, subs), outcome)
            if problem and "requires" not in step:
                failures.append(f"{step['id']}: {problem}")
    assert not failures, "\n".join(failures)


def test_error_codes_are_grpc_names() -> None:
    for step in STEPS:
        error = step["expect"].get("error")
        if error:
            assert error["code"] in grpc.StatusCode.__members__, step["id"]
