"""examples/relay.py end to end: HTTP client -> relay -> fake upstream, metered for real."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CLIENT_ROOT, MeteringServer, nanos

from metering_client import MeteringClient, UsageReporter
from metering_client.v1 import types_pb2

spec = importlib.util.spec_from_file_location("relay", CLIENT_ROOT / "examples" / "relay.py")
assert spec and spec.loader
relay = importlib.util.module_from_spec(spec)
sys.modules["relay"] = relay
spec.loader.exec_module(relay)

# 12 prompt tokens x 0.15 + 7 completion tokens x 0.60 USD per million.
COST = 12 * 150 + 7 * 600


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = relay.fake_upstream()
    url = relay.serve_in_thread(server)
    yield url
    server.shutdown()


@pytest.fixture
def relay_server(upstream: str, server: MeteringServer) -> Iterator[Any]:
    metering = MeteringClient(server.address)
    srv = relay.RelayServer(("127.0.0.1", 0), upstream, metering)
    srv.url = relay.serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    metering.close()


@pytest.fixture
def acct(client: MeteringClient) -> str:
    account = "relay-" + uuid.uuid4().hex[:10]
    client.create_account(account_id=account)
    client.grant_credits(
        account_id=account, request_id="t", amount={"currency_code": "USD", "units": 1}
    )
    return account


def call(url: str, account: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {account}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def chat(stream: bool, include_usage: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


def content_of(sse: bytes) -> str:
    text = ""
    for line in sse.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def test_stream_with_usage_chunk(relay_server: Any, client: MeteringClient, acct: str) -> None:
    status, headers, body = call(relay_server.url, acct, chat(stream=True, include_usage=True))
    assert status == 200
    assert content_of(body) == "Hello! How can I help?"
    assert body.rstrip().endswith(b"data: [DONE]")
    assert int(headers["X-Metering-Estimated-Input-Tokens"]) > 0
    record = relay_server.last_record
    assert record.usage_source == types_pb2.USAGE_SOURCE_REPORTED
    assert (record.usage.input_tokens, record.usage.output_tokens) == (12, 7)
    assert nanos(record.cost) == COST
    assert nanos(client.get_balance(account_id=acct).balance) == 10**9 - COST


def test_stream_without_usage_chunk(relay_server: Any, client: MeteringClient, acct: str) -> None:
    status, _, body = call(relay_server.url, acct, chat(stream=True))
    assert status == 200 and content_of(body) == "Hello! How can I help?"
    record = relay_server.last_record
    # No usage in the stream: the relay sent the request body and the streamed
    # text, so the service estimated the usage from them instead of MISSING.
    assert record.usage_source == types_pb2.USAGE_SOURCE_ESTIMATED
    expected = client.estimate_tokens(
        model="gpt-4o-mini",
        request_json=json.dumps(chat(stream=True)).encode(),
        completion_text="Hello! How can I help?",
    )
    assert record.usage.output_tokens == expected.output_tokens > 0
    assert record.usage.input_tokens == expected.input_tokens > 0
    assert nanos(record.cost) > 0 and not record.replayed


def test_non_streaming(relay_server: Any, acct: str) -> None:
    status, _, body = call(relay_server.url, acct, chat(stream=False))
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert nanos(relay_server.last_record.cost) == COST


def test_unknown_account_is_refused(relay_server: Any) -> None:
    status, _, body = call(relay_server.url, "relay-nobody", chat(stream=True))
    assert status == 402 and b"ACCOUNT_NOT_FOUND" in body


def test_relay_with_durable_reporter(
    upstream: str, server: MeteringServer, client: MeteringClient, acct: str, tmp_path: Path
) -> None:
    metering = MeteringClient(server.address)
    reporter = UsageReporter(metering, tmp_path / "relay-spool.db", flush_interval=0.01)
    srv = relay.RelayServer(("127.0.0.1", 0), upstream, metering, reporter)
    url = relay.serve_in_thread(srv)
    try:
        for _ in range(5):
            assert call(url, acct, chat(stream=True, include_usage=True))[0] == 200
        assert reporter.flush(10)
        assert reporter.stats.recorded == 5
        assert nanos(client.get_balance(account_id=acct).balance) == 10**9 - 5 * COST
    finally:
        srv.shutdown()
        srv.server_close()
        reporter.close()
        metering.close()
