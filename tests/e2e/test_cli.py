"""The `metering` command as an operator runs it: start-up errors, defaults, verify, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from metering.storage.engine import make_engine
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import types_pb2
from tests.support.server import ServerProcess


def _metering(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metering", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--listen", "nonsense"], {}, "--listen"),
        (["serve", "--listen", "127.0.0.1:99999"], {}, "--listen"),
        (["serve"], {"METERING_LISTEN": "127.0.0.1:x"}, "METERING_LISTEN"),
        (["serve", "--database-url", "mysql://root@localhost/db"], {}, "--database-url"),
        (["serve"], {"METERING_DATABASE_URL": "not a url"}, "METERING_DATABASE_URL"),
        (["serve"], {"METERING_DB_POOL_SIZE": "0"}, "METERING_DB_POOL_SIZE"),
        (["serve", "--prices-file", "/nonexistent/prices.json"], {}, "--prices-file"),
    ],
)
def test_bad_setting_fails_at_startup_with_one_line(
    args: list[str], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    done = _metering(*args, cwd=tmp_path, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("metering: ") and named in lines[0]
    assert not (tmp_path / "metering.db").exists()


def test_serve_defaults_to_sqlite_in_cwd_with_bundled_prices(tmp_path: Path) -> None:
    # No flags: SQLite in the working directory and the bundled prices. The port comes
    # from METERING_LISTEN=127.0.0.1:0, as 50051 may be taken on a shared machine.
    server = ServerProcess(
        None, listen=None, env={"METERING_LISTEN": "127.0.0.1:0"}, cwd=tmp_path
    ).start()
    try:
        assert (tmp_path / "metering.db").exists()
        with grpc.insecure_channel(server.target) as channel:
            admin = admin_grpc.MeteringAdminServiceStub(channel)
            metering = pb_grpc.MeteringServiceStub(channel)
            admin.CreateAccount(admin_pb.CreateAccountRequest(account_id="relay-1"), timeout=10)
            for index, model in enumerate(["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-pro"]):
                response = metering.RecordUsage(
                    pb.RecordUsageRequest(
                        account_id="relay-1",
                        request_id=f"r{index}",
                        model=model,
                        usage=types_pb2.TokenUsage(input_tokens=1000, output_tokens=100),
                    ),
                    timeout=10,
                )
                assert response.cost.nanos > 0
                assert response.price_id.endswith("/" + model)
    finally:
        assert server.stop() == 0
    verified = _metering(
        "ledger", "verify", "--database-url", f"sqlite:///{tmp_path / 'metering.db'}"
    )
    assert verified.returncode == 0, verified.stdout
    assert "ledger verify OK" in verified.stdout


def test_ledger_verify_reports_tampering(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    server = ServerProcess(
        url, prices_file=Path(__file__).parents[1] / "data" / "prices.json"
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin = admin_grpc.MeteringAdminServiceStub(channel)
            admin.CreateAccount(admin_pb.CreateAccountRequest(account_id="a"), timeout=10)
            admin.GrantCredits(
                admin_pb.GrantCreditsRequest(
                    account_id="a",
                    request_id="g",
                    amount=types_pb2.Money(currency_code="USD", units=1),
                ),
                timeout=10,
            )
    finally:
        server.stop()
    assert _metering("ledger", "verify", "--database-url", url).returncode == 0
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE accounts SET balance_nanos = balance_nanos + 1"))
        connection.execute(
            text(
                "INSERT INTO ledger_entries "
                "(account_id, transaction_id, seq, ledger_account, asset, amount) "
                "SELECT account_id, transaction_id, 99, '@revenue', 'USD', 5 "
                "FROM ledger_transactions"
            )
        )
    engine.dispose()
    done = _metering("ledger", "verify", "--database-url", url)
    assert done.returncode == 1
    assert "account a: balance 1000000001 != sum of entries 1000000000" in done.stdout
    assert "USD entries sum to 5, not 0" in done.stdout
    assert "ledger verify FAILED: 2 problems" in done.stdout


def _usage(i: int) -> pb.RecordUsageRequest:
    return pb.RecordUsageRequest(
        account_id="a",
        request_id=f"r{i}",
        model="cheap-model",
        usage=types_pb2.TokenUsage(input_tokens=13),
    )


def test_sigterm_finishes_in_flight_calls_and_retries_complete_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    prices = Path(__file__).parents[1] / "data" / "prices.json"
    server = ServerProcess(url, prices_file=prices).start()
    with grpc.insecure_channel(server.target) as channel:
        admin_grpc.MeteringAdminServiceStub(channel).CreateAccount(
            admin_pb.CreateAccountRequest(account_id="a", allow_negative_balance=True), timeout=10
        )

    async def load() -> dict[int, pb.RecordUsageResponse | grpc.StatusCode]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            await channel.channel_ready()
            answered = asyncio.Event()
            answers = 0

            async def call(i: int) -> pb.RecordUsageResponse | grpc.StatusCode:
                nonlocal answers
                try:
                    response: pb.RecordUsageResponse = await stub.RecordUsage(_usage(i), timeout=30)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                answers += 1
                if answers >= 5:
                    answered.set()
                return response

            tasks = {i: asyncio.create_task(call(i)) for i in range(200)}
            # Signal once the server is demonstrably busy, with most calls still in flight.
            await asyncio.wait_for(answered.wait(), 30)
            server.terminate()
            return {i: await task for i, task in tasks.items()}

    outcomes = asyncio.run(load())
    assert server.stop() == 0
    assert "metering stopped" in server.log_tail()
    acknowledged = {i: r for i, r in outcomes.items() if isinstance(r, pb.RecordUsageResponse)}
    refused = {i: r for i, r in outcomes.items() if isinstance(r, grpc.StatusCode)}
    assert len(acknowledged) >= 5
    # Calls the server had not started are refused, never failed half-way.
    assert set(refused.values()) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    engine = make_engine(url)
    with engine.connect() as connection:
        stored = {row[0] for row in connection.execute(text("SELECT record_id FROM usage_records"))}
    assert {r.record_id for r in acknowledged.values()} <= stored  # acknowledged => durable
    # The relay retries what was refused, with the same request_ids, after a restart.
    server = ServerProcess(url, prices_file=prices).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            for i in refused:
                stub.RecordUsage(_usage(i), timeout=10)
            for i, first in acknowledged.items():
                again = stub.RecordUsage(_usage(i), timeout=10)
                assert again.replayed and again.record_id == first.record_id
    finally:
        assert server.stop() == 0
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM usage_records")).scalar_one()
    engine.dispose()
    assert count == 200  # every call recorded exactly once
    done = _metering("ledger", "verify", "--database-url", url)
    assert done.returncode == 0, done.stdout


def test_operator_tokenizer_file_is_used_for_its_model_pattern(tmp_path: Path) -> None:
    import base64
    import json

    # A byte-level BPE vocabulary: every byte is its own token, nothing merges.
    vocab = tmp_path / "bytes.tiktoken"
    vocab.write_text("".join(f"{base64.b64encode(bytes([b])).decode()} {b}\n" for b in range(256)))
    config = tmp_path / "tokenizers.json"
    config.write_text(json.dumps([{"pattern": "llama-*", "file": "bytes.tiktoken"}]))
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'm.db'}",
        prices_file=Path(__file__).parents[1] / "data" / "prices.json",
        env={"METERING_TOKENIZERS_FILE": str(config)},
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.MeteringServiceStub(channel)
            mine = stub.EstimateTokens(
                pb.EstimateTokensRequest(model="llama-3.3-70b", text="hello"), timeout=10
            )
            other = stub.EstimateTokens(
                pb.EstimateTokensRequest(model="qwen-3", text="hello"), timeout=10
            )
    finally:
        server.stop()
    # The operator's tokenizer counts the text; without the model's chat framing rules
    # the service still calls the estimate approximate.
    assert (mine.input_tokens, mine.tokenizer) == (5, "bytes")
    assert (other.input_tokens, other.method) == (2, pb.ESTIMATE_METHOD_APPROXIMATE)


def test_bad_tokenizer_file_fails_at_startup(tmp_path: Path) -> None:
    config = tmp_path / "tokenizers.json"
    config.write_text('[{"pattern": "x*", "file": "missing.tiktoken"}]')
    done = _metering("serve", env={"METERING_TOKENIZERS_FILE": str(config)}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("metering: METERING_TOKENIZERS_FILE=")


def test_workers_share_one_port_and_count_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    prices = Path(__file__).parents[1] / "data" / "prices.json"
    server = ServerProcess(url, prices_file=prices, env={"METERING_WORKERS": "2"}).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin_grpc.MeteringAdminServiceStub(channel).CreateAccount(
                admin_pb.CreateAccountRequest(account_id="a", allow_negative_balance=True),
                timeout=10,
            )

        async def load() -> list[pb.RecordUsageResponse]:
            # Many connections, so that the kernel spreads them over both workers; each
            # record sent twice on different connections.
            channels = [grpc.aio.insecure_channel(server.target) for _ in range(8)]
            try:
                stubs = [pb_grpc.MeteringServiceStub(c) for c in channels]
                calls = [
                    stubs[(i + copy) % 8].RecordUsage(_usage(i), timeout=30)
                    for i in range(100)
                    for copy in range(2)
                ]
                return list(await asyncio.gather(*calls))
            finally:
                for channel in channels:
                    await channel.close()

        responses = asyncio.run(load())
    finally:
        assert server.stop() == 0
    assert sum(not r.replayed for r in responses) == 100
    assert "workers=2" in server.log_tail()
    engine = make_engine(url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM usage_records")).scalar_one()
    engine.dispose()
    assert count == 100
    done = _metering("ledger", "verify", "--database-url", url)
    assert done.returncode == 0, done.stdout


def test_budgets_cli_sets_and_lists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    prices_file = Path(__file__).parents[1] / "data" / "prices.json"
    # The CLI loads the same catalogue the server was started with.
    prices = {"METERING_PRICES_FILE": str(prices_file)}
    server = ServerProcess(url, prices_file=prices_file)
    server.start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin_grpc.MeteringAdminServiceStub(channel).CreateAccount(
                admin_pb.CreateAccountRequest(account_id="acme"), timeout=10
            )
    finally:
        server.stop()
    set_done = _metering(
        "budgets",
        "set",
        "acme",
        "daily-cost",
        "--period",
        "day",
        "--metric",
        "cost",
        "--limit",
        "5000000000",
        "--model",
        "gpt-4o-mini",
        "--database-url",
        url,
        env=prices,
    )
    assert set_done.returncode == 0, set_done.stderr
    listed = _metering("budgets", "list", "acme", "--database-url", url, env=prices)
    assert listed.stdout.strip() == (
        "acme/daily-cost: hard cost <= 5000000000 per day model=gpt-4o-mini thresholds=50,80,100%"
    )
    bad = _metering(
        "budgets",
        "set",
        "acme",
        "x",
        "--period",
        "rolling",
        "--metric",
        "tokens",
        "--limit",
        "10",
        "--database-url",
        url,
        env=prices,
    )
    assert bad.returncode == 2 and "rolling_window" in bad.stderr


def test_missing_usage_policies_cli_sets_lists_and_deletes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    prices = {"METERING_PRICES_FILE": str(Path(__file__).parents[1] / "data" / "prices.json")}
    common = ("--database-url", url)
    set_fee = _metering(
        "policies",
        "set",
        "--model",
        "gpt-4o-mini",
        "--fallback",
        "flat_fee",
        "--fee",
        "0.002",
        *common,
        env=prices,
    )
    assert set_fee.returncode == 0, set_fee.stderr
    set_any = _metering(
        "policies",
        "set",
        "--provider",
        "openai",
        "--fallback",
        "none",
        "--no-estimate",
        *common,
        env=prices,
    )
    assert set_any.returncode == 0, set_any.stderr
    listed = _metering("policies", "list", *common, env=prices)
    assert listed.stdout.splitlines() == [
        "*/openai/*: never estimate; missing -> none",
        "*/*/gpt-4o-mini: estimate from texts; missing -> flat_fee 0.002000000 USD",
        "default: */*/*: estimate from texts; missing -> reservation",
    ]
    # A flat fee without a fee is refused, naming the field; an unknown account too.
    bad = _metering("policies", "set", "--fallback", "flat_fee", *common, env=prices)
    assert bad.returncode == 2 and "policy.flat_fee" in bad.stderr
    unknown = _metering("policies", "set", "--account", "nobody", *common, env=prices)
    assert unknown.returncode == 2 and "nobody" in unknown.stderr
    deleted = _metering("policies", "delete", "--model", "gpt-4o-mini", *common, env=prices)
    assert deleted.returncode == 0, deleted.stderr
    again = _metering("policies", "delete", "--model", "gpt-4o-mini", *common, env=prices)
    assert again.returncode == 2
    assert (
        "no missing-usage policy for account '', provider '', model 'gpt-4o-mini'" in again.stderr
    )
