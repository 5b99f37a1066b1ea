"""End-to-end benchmark of `metering serve` over gRPC, on SQLite and PostgreSQL.

For each backend: start the real server (``python -m metering serve``, prices
from tests/data/prices.json) on a fresh database -- a SQLite file in a temp
dir (WAL, synchronous=FULL: the shipped default) or a throwaway PostgreSQL
(tests/support/postgres.py, synchronous_commit=on) -- create the accounts
with CreateAccount + GrantCredits, then run each scenario:

* ``health``         grpc.health.v1.Health/Check: the floor (gRPC + server loop, no work)
* ``record-spread``  RecordUsage over all the accounts
* ``record-hot``     RecordUsage, every call on one account
* ``record-batch``   RecordUsageBatch of 100 records per call (events/s)
* ``balance``        GetBalance over all the accounts
* ``estimate``       EstimateTokens of a 4 KB text

Each scenario is measured three ways with the same concurrency and channels:
the Python load generator (bench/loadgen.py) closed loop (the max rate), the
same generator open loop at 70% of that rate (the latency percentiles a
server sees below saturation, without coordinated omission), and ghz closed
loop (a Go client, less client CPU) when ghz is installed. Every figure is
also shown as a ratio to the floor measured the same way on the same server.

After every scenario: the usage records in the database (counted with
SQLAlchemy) must equal the records acknowledged to the clients, and
``metering ledger verify`` must pass (``--verify end``: once per backend,
after its last scenario). Peak RSS is the server's VmHWM, reset before each
scenario through /proc/PID/clear_refs where the kernel allows.

Run it through ``bench/run`` (which installs ghz); ``bench/run --help`` lists
the options. ``bench/profile`` runs the record-spread scenario under py-spy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import grpc
import loadgen
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2
from sqlalchemy import NullPool, create_engine, text

from tests.support.postgres import PostgresError, PostgresServer
from tests.support.server import ServerProcess

PRICES = ROOT / "tests" / "data" / "prices.json"
PROTO_DIR = ROOT / "proto"
GHZ = ROOT / ".tools" / "bin" / "ghz"
SCENARIOS = loadgen.SCENARIOS
WRITES = {"record-spread", "record-hot", "record-batch"}
BACKENDS = ("sqlite", "postgresql")
GRANT_UNITS = 1000  # dollars per account: far more than any run spends
OPEN_FRACTION = 0.70
PREFIX = "bench-"

LABELS = {
    "health": "health (floor)",
    "record-spread": "RecordUsage spread",
    "record-hot": "RecordUsage hot",
    "record-batch": "RecordUsageBatch 100",
    "balance": "GetBalance",
    "estimate": "EstimateTokens 4KB",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- measurements -------------------------------------------------------------


@dataclass
class Options:
    duration: float
    warmup: float
    concurrency: int
    channels: int
    procs: int
    accounts: int
    verify: str  # every | end
    ghz: Path | None
    quick: bool
    server_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Phase:
    """One load run: a generator, a mode, its figures."""

    scenario: str
    generator: str  # py | ghz
    mode: str  # closed | open
    result: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.generator, self.mode)


@dataclass
class ScenarioResult:
    scenario: str
    phases: list[Phase] = field(default_factory=list)
    peak_rss_kb: int | None = None
    peak_rss_process_kb: int | None = None
    rss_reset: bool = False
    acked: int = 0
    ambiguous: int = 0  # calls that failed: their records may or may not exist
    rows_before: int = 0
    rows_after: int = 0
    verify: str = "not run"
    verify_ok: bool | None = None
    verify_seconds: float | None = None

    @property
    def rows_ok(self) -> bool:
        delta = self.rows_after - self.rows_before
        return self.acked <= delta <= self.acked + self.ambiguous


@dataclass
class BackendResult:
    backend: str
    description: str = ""
    setup: dict[str, Any] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    skipped: str | None = None
    server_exit: int | None = None
    server_peak_rss_kb: int | None = None
    final_verify: str = ""
    final_verify_ok: bool | None = None
    total_rows: int | None = None
    total_acked: int = 0
    error: str | None = None


def _vm_hwm_kb(pid: int) -> tuple[int | None, int | None]:
    """Peak RSS (VmHWM) of the server's processes (workers, writer processes): the sum,
    and the largest single process (the target is per process)."""
    total = largest = None
    for member in loadgen.descendants(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kb = int(line.split()[1])
                    total = (total or 0) + kb
                    largest = max(largest or 0, kb)
    return total, largest


def _reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs), for each process."""
    try:
        for member in loadgen.descendants(pid):
            Path(f"/proc/{member}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server so far, with its worker processes if any."""
    processes = loadgen._user_processes()
    return sum(processes[p][1] for p in loadgen.descendants(pid, processes) if p in processes)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_loadgen(
    opts: Options,
    target: str,
    pids: tuple[int, int | None],
    scenario: str,
    mode: str,
    tag: str,
    rate: float = 0.0,
) -> dict[str, Any]:
    """bench/loadgen.py in its own process; ``pids``: the server's, the database's."""
    with tempfile.TemporaryDirectory(prefix="metering-bench-lg-") as tmp:
        out = Path(tmp) / "result.json"
        args = [
            sys.executable,
            str(BENCH / "loadgen.py"),
            "--target", target,
            "--scenario", scenario,
            "--mode", mode,
            "--duration", str(opts.duration),
            "--warmup", str(opts.warmup),
            "--concurrency", str(opts.concurrency),
            "--channels", str(opts.channels),
            "--procs", str(opts.procs),
            "--accounts", str(opts.accounts),
            "--prefix", PREFIX,
            "--tag", tag,
            "--watch-pid", str(pids[0]),
            "--json-out", str(out),
        ]  # fmt: skip
        if pids[1] is not None:
            args += ["--db-pid", str(pids[1])]
        if mode == "open":
            args += ["--rate", f"{rate:.3f}"]
        done = subprocess.run(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=opts.duration + 180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def _ghz_data(scenario: str, accounts: int, tag: str) -> tuple[str, str]:
    """The ghz call and its templated request data (unique request ids per call)."""
    usage = {"input_tokens": 1000, "output_tokens": 500, "cache_read_tokens": 200}

    def record(account: str, request_id: str) -> dict[str, Any]:
        return {
            "account_id": account,
            "request_id": request_id,
            "model": loadgen.MODEL,
            "provider": loadgen.PROVIDER,
            "usage": usage,
        }

    spread = PREFIX + "{{randomInt 0 " + str(accounts) + "}}"
    service = "metering.v1.MeteringService/"
    if scenario == "health":
        return "grpc.health.v1.Health/Check", json.dumps({"service": ""})
    if scenario == "record-spread":
        return service + "RecordUsage", json.dumps(record(spread, tag + "-{{.UUID}}"))
    if scenario == "record-hot":
        return service + "RecordUsage", json.dumps(record(PREFIX + "0", tag + "-{{.UUID}}"))
    if scenario == "record-batch":
        records = [record(spread, f"{tag}-{{{{.UUID}}}}-{j}") for j in range(loadgen.BATCH_SIZE)]
        return service + "RecordUsageBatch", json.dumps({"records": records})
    if scenario == "balance":
        return service + "GetBalance", json.dumps({"account_id": spread})
    if scenario == "estimate":
        body = {
            "model": loadgen.MODEL,
            "provider": loadgen.PROVIDER,
            "text": loadgen.estimate_text(),
            "max_output_tokens": 1000,
        }
        return service + "EstimateTokens", json.dumps(body)
    raise ValueError(scenario)


def _parse_time(value: str) -> float:
    # RFC 3339 with nanoseconds; fromisoformat takes at most microseconds.
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        value = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _protoset(file: FileDescriptor) -> bytes:
    """A FileDescriptorSet of ``file`` and everything it imports."""
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(f: FileDescriptor) -> None:
        if f.name in seen:
            return
        seen.add(f.name)
        for dependency in f.dependencies:
            add(dependency)
        f.CopyToProto(out.file.add())

    add(file)
    return out.SerializeToString()


def run_ghz(
    opts: Options, target: str, pids: tuple[int, int | None], scenario: str, tag: str
) -> dict[str, Any]:
    """ghz closed loop: -c concurrency over --connections channels, -z duration."""
    assert opts.ghz is not None
    call, data = _ghz_data(scenario, opts.accounts, tag)
    args = [
        str(opts.ghz),
        "--insecure",
        "--call", call,
        "--data", data,
        "--concurrency", str(opts.concurrency),
        "--connections", str(opts.channels),
        "--duration", f"{opts.duration}s",
        "--duration-stop", "wait",
        "--timeout", "60s",
        "--format", "json",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="metering-bench-ghz-") as tmp:
        if scenario == "health":
            # Health is not in proto/, and ghz cannot use the server's reflection for
            # it (Python's reflection resolves services, not method symbols): give
            # ghz the descriptor of the installed grpcio-health-checking instead.
            protoset = Path(tmp) / "health.protoset"
            protoset.write_bytes(_protoset(health_pb2.DESCRIPTOR))
            args += ["--protoset", str(protoset)]
        else:
            args += [
                "--proto", str(PROTO_DIR / "metering" / "v1" / "metering_service.proto"),
                "--import-paths", str(PROTO_DIR),
            ]  # fmt: skip
        args.append(target)
        meter = loadgen.CpuMeter(pids[0], pids[1])
        client0, wall0 = _children_cpu(), time.monotonic()
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=opts.duration + 180, check=False
        )
    # ghz's start-up (reflection, proto parsing) is in these, it is short.
    elapsed = time.monotonic() - wall0
    cpu = meter.stop(_children_cpu() - client0, elapsed)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"ghz failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    details = report.get("details") or []
    starts = [_parse_time(d["timestamp"]) for d in details]
    t0 = min(starts) if starts else 0.0
    measure_from, end = t0 + opts.warmup, t0 + opts.duration
    window = end - measure_from
    latencies: list[float] = []
    in_window = 0
    for start, detail in zip(starts, details, strict=True):
        if detail["status"] != "OK":
            continue
        seconds = detail["latency"] / 1e9
        if measure_from <= start + seconds <= end:  # answered in the window
            in_window += 1
            latencies.append(seconds)
    latencies.sort()
    codes: dict[str, int] = dict(report.get("statusCodeDistribution") or {})
    ok = codes.pop("OK", 0)
    rps = in_window / window if window > 0 else 0.0
    per_call = loadgen.BATCH_SIZE if scenario == "record-batch" else 1

    def ms(q: float) -> float | None:
        value = loadgen._percentile(latencies, q)
        return None if value is None else value * 1000

    return {
        "generator": "ghz",
        "scenario": scenario,
        "mode": "closed",
        "concurrency": opts.concurrency,
        "channels": opts.channels,
        "sent": int(report.get("count", 0)),
        "ok": ok,
        "errors": codes,
        "error_messages": report.get("errorDistribution") or {},
        "dropped": 0,
        # ghz cannot read the responses: an OK RecordUsage is one record, an OK
        # batch is taken as 100 (any per-record error shows up in the row check).
        "acked_events": ok * per_call if scenario in WRITES else 0,
        "replayed_events": 0,
        "rps": rps,
        "events_per_s": rps * per_call if scenario == "record-batch" else None,
        "samples": len(latencies),
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": latencies[-1] * 1000 if latencies else None,
        "ghz_rps": report.get("rps"),
        **cpu,
    }


# -- backends -----------------------------------------------------------------


class Backend:
    """A database for one backend run; ``close()`` deletes it."""

    name: str
    url: str
    description: str
    db_pid: int | None = None  # a database server process (PostgreSQL's postmaster)

    def close(self) -> None:
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="metering-bench-sqlite-"))
        path = self.dir / "metering.db"
        self.url = f"sqlite:///{path}"
        self.description = (
            f"SQLite, WAL + synchronous=FULL (the shipped default), {path} "
            f"on {_filesystem(self.dir)}"
        )

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self) -> None:
        self.pg = PostgresServer().start()
        try:
            self.pg.create_database("metering_bench")
            with self.pg.admin_connect() as conn:
                settings = {
                    name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                    for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
                }
        except BaseException:
            self.pg.stop()
            raise
        if settings["synchronous_commit"] != "on" or settings["fsync"] != "on":
            self.pg.stop()
            raise RuntimeError(f"throwaway PostgreSQL is not durable: {settings}")
        self.url = self.pg.url("metering_bench")
        with suppress(OSError, ValueError, IndexError):
            pid_file = (self.pg.datadir / "postmaster.pid").read_text()
            self.db_pid = int(pid_file.split()[0])
        assert self.pg.basedir is not None
        self.description = (
            f"PostgreSQL {settings['server_version']}, synchronous_commit="
            f"{settings['synchronous_commit']}, fsync={settings['fsync']} "
            f"({settings['wal_sync_method']}), throwaway cluster on {_filesystem(self.pg.basedir)}"
        )

    def close(self) -> None:
        self.pg.stop()


def _filesystem(path: Path) -> str:
    """The file system type holding ``path`` (from /proc/mounts), e.g. 'ext4 /'."""
    best = ("", "?")
    with suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                mount, kind = parts[1], parts[2]
                resolved = str(path.resolve())
                inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best[0]):
                    best = (mount, kind)
    return f"{best[1]} (mounted at {best[0] or '?'})"


def count_usage_records(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM usage_records")).scalar_one())
    finally:
        engine.dispose()


def ledger_verify_command(url: str) -> list[str]:
    return [sys.executable, "-m", "metering", "ledger", "verify", "--database-url", url]


def _verify_summary(done: subprocess.CompletedProcess[str] | tuple[int, str]) -> tuple[bool, str]:
    code, out = (done.returncode, done.stdout) if not isinstance(done, tuple) else done
    lines = [line for line in out.splitlines() if line.strip()]
    checked = next((line for line in lines if line.startswith("checked ")), "")
    ok = code == 0 and "ledger verify OK" in lines
    if ok:
        return True, f"OK ({checked})"
    problems = [line for line in lines if line.startswith(("MISMATCH", "ledger verify"))]
    return False, f"FAILED exit {code}: " + "; ".join(problems[:5] or lines[-3:])


# The per-caller limit on EstimateTokens (where the server has one) would measure the
# limit, not the server: all the load comes from one caller (one loopback address).
SERVER_ENV = {"METERING_RATE_LIMIT_ESTIMATE_PER_SECOND": "0"}


@contextmanager
def _server(url: str, env: dict[str, str]) -> Iterator[ServerProcess]:
    server = ServerProcess(url, prices_file=PRICES, env=env)
    server.start(timeout_seconds=120)
    try:
        yield server
    finally:
        server.kill()


def run_scenario(
    opts: Options, server: ServerProcess, backend: Backend, scenario: str, run_tag: str
) -> ScenarioResult:
    assert server.process is not None
    pid = server.process.pid
    pids = (pid, backend.db_pid)
    target = server.target
    result = ScenarioResult(scenario)
    result.rows_before = count_usage_records(backend.url)
    result.rss_reset = _reset_hwm(pid)

    def phase(generator: str, mode: str, body: Callable[[], dict[str, Any]]) -> Phase:
        out = body()
        made = Phase(scenario, generator, mode, out)
        result.phases.append(made)
        result.acked += int(out["acked_events"])
        if scenario in WRITES:
            result.ambiguous += sum(out["errors"].values()) * (
                loadgen.BATCH_SIZE if scenario == "record-batch" else 1
            )
        log(
            f"  {scenario} {generator} {mode}: {out['rps']:,.1f} req/s, "
            f"p50 {_ms(out['p50_ms'])} p99 {_ms(out['p99_ms'])} p99.9 {_ms(out['p999_ms'])} ms, "
            f"errors {out['errors'] or 0}, cpu %: server {_pct(out['server_cpu_pct'])} "
            f"db {_pct(out['db_cpu_pct'])} client {_pct(out['client_cpu_pct'])} "
            f"other {_pct(out['other_cpu_pct'])} kernel {_pct(out['kernel_cpu_pct'])}"
        )
        return made

    tag = f"{run_tag}-{scenario}"
    closed = phase(
        "py", "closed", lambda: run_loadgen(opts, target, pids, scenario, "closed", tag + "-pc")
    )
    rate = max(1.0, OPEN_FRACTION * closed.result["rps"])
    phase(
        "py", "open", lambda: run_loadgen(opts, target, pids, scenario, "open", tag + "-po", rate)
    )
    if opts.ghz is not None:
        phase("ghz", "closed", lambda: run_ghz(opts, target, pids, scenario, tag + "-gc"))
    result.peak_rss_kb, result.peak_rss_process_kb = _vm_hwm_kb(pid)
    result.rows_after = count_usage_records(backend.url)
    return result


def _verify_now(url: str, into: ScenarioResult) -> None:
    t0 = time.monotonic()
    done = subprocess.run(
        ledger_verify_command(url), capture_output=True, text=True, timeout=3600, check=False
    )
    into.verify_seconds = time.monotonic() - t0
    into.verify_ok, into.verify = _verify_summary(done)


@dataclass
class PendingVerify:
    """A `metering ledger verify` running after its backend's server stopped."""

    process: subprocess.Popen[str]
    backend: Backend
    result: BackendResult
    scenario: ScenarioResult | None
    started: float

    def finish(self) -> None:
        out, _ = self.process.communicate(timeout=3600)
        seconds = time.monotonic() - self.started
        ok, summary = _verify_summary((self.process.returncode, out))
        self.result.final_verify_ok, self.result.final_verify = ok, summary
        if self.scenario is not None:
            self.scenario.verify_ok, self.scenario.verify = ok, summary
            self.scenario.verify_seconds = seconds
        log(f"{self.backend.name}: ledger verify {summary} in {seconds:.1f}s")
        self.backend.close()


def run_backend(
    opts: Options, name: str, scenarios: list[str], previous: PendingVerify | None
) -> tuple[BackendResult, PendingVerify | None]:
    """Run every scenario on one backend; returns its final verify, still running.

    The previous backend's final verify (CPU-bound) runs during this one's
    database and account set-up, which is not measured, and is waited for
    before the first measurement.
    """
    result = BackendResult(name)
    backend: Backend | None = None
    try:
        log(f"{name}: starting the database")
        try:
            backend = SqliteBackend() if name == "sqlite" else PostgresBackend()
        except (PostgresError, RuntimeError) as exc:
            result.skipped = str(exc).splitlines()[0]
            log(f"{name}: skipped: {result.skipped}")
            return result, None
        result.description = backend.description
        with _server(backend.url, opts.server_env) as server:
            assert server.process is not None
            pid = server.process.pid
            log(f"{name}: server pid {pid} on {server.target}; creating {opts.accounts} accounts")
            setup_cpu0 = _proc_cpu_seconds(pid)
            setup = [
                sys.executable, str(BENCH / "loadgen.py"),
                "--target", server.target,
                "--accounts", str(opts.accounts),
                "--prefix", PREFIX,
                "--setup-accounts", str(GRANT_UNITS),
            ]  # fmt: skip
            done = subprocess.run(
                setup,
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"account set-up failed:\n{done.stderr[-3000:]}")
            result.setup = json.loads(done.stdout)
            result.setup["server_cpu_s"] = _proc_cpu_seconds(pid) - setup_cpu0
            log(
                f"{name}: {opts.accounts} accounts in {result.setup['seconds']:.1f}s "
                f"({result.setup['calls_per_s']:.0f} calls/s)"
            )
            if previous is not None:
                log(f"waiting for the {previous.backend.name} ledger verify")
                previous.finish()
                previous = None
            run_tag = f"b{int(time.time())}-{name[:2]}"
            for index, scenario in enumerate(scenarios):
                log(f"{name}: {scenario}")
                scenario_result = run_scenario(opts, server, backend, scenario, run_tag)
                result.scenarios.append(scenario_result)
                result.total_acked += scenario_result.acked
                last = index == len(scenarios) - 1
                if opts.verify == "every" and not last:
                    _verify_now(backend.url, scenario_result)
                    log(f"{name}: ledger verify {scenario_result.verify}")
                elif not last:
                    scenario_result.verify = "at the end (--verify end)"
            result.server_peak_rss_kb = _vm_hwm_kb(pid)[0]
            result.total_rows = count_usage_records(backend.url)
            result.server_exit = server.stop(timeout_seconds=60)
        pending = PendingVerify(
            subprocess.Popen(
                ledger_verify_command(backend.url),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            backend,
            result,
            result.scenarios[-1] if result.scenarios else None,
            time.monotonic(),
        )
        backend = None  # closed by pending.finish()
        return result, pending
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"{name}: FAILED: {result.error}")
        return result, None
    finally:
        if previous is not None:
            previous.finish()
        if backend is not None:
            backend.close()


# -- profile ------------------------------------------------------------------


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


# Leaf frames of a thread that waits (py-spy counts some blocking C calls as active).
WAITING_LEAVES = (
    "_worker (concurrent/futures/thread.py:",  # an idle pool thread: work_queue.get()
    "EpollSelector.select (selectors.py:",  # the event loop with nothing to do
    "Condition.wait (threading.py:",
    "Event.wait (threading.py:",
    # The usage writer process waiting for the next batch on its pipe.
    "_ConnectionBase.recv (multiprocessing/connection.py:",
    "Connection._recv (multiprocessing/connection.py:",
    "_ConnectionBase.poll (multiprocessing/connection.py:",
)


_PROCESS_FRAMES = re.compile(r'(?:process \d+:"[^"]*";)+')


def summarize_collapsed(path: Path, top: int = 30) -> str:
    """Top functions by own and by total samples, from py-spy's raw (collapsed) output."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    ours: dict[str, int] = {}
    threads: dict[str, int] = {}
    samples = waiting = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        process = ""
        # py-spy --subprocesses: `process PID:"cmdline";` for the server and each child
        # in between (a command line may hold ";"): the server or its usage writer.
        processes = _PROCESS_FRAMES.match(stack)
        if processes:
            process = "writer " if "multiprocessing" in processes.group(0) else "server "
            stack = stack[processes.end() :]
        frames = stack.split(";")
        if frames and frames[0].startswith("thread "):
            thread = process + frames[0]
            threads[thread] = threads.get(thread, 0) + count
            frames = frames[1:]
        if not frames:
            continue
        if frames[-1].startswith(WAITING_LEAVES):
            waiting += count
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
            if "(metering/" in frame:
                ours[frame] = ours.get(frame, 0) + count
    if not samples:
        return "no samples (was the server busy? could py-spy attach?)\n"
    active = samples - waiting

    def table(title: str, counts: dict[str, int], of: int) -> list[str]:
        rows = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [title] + [f"{100 * n / of:6.1f}%  {frame}" for frame, n in rows] + [""]

    lines = [
        f"{samples} samples of the server's threads, in all its processes "
        f"({samples / max(1, len(threads) or 1):.0f}"
        f" per thread); {100 * waiting / samples:.1f}% were waiting (an idle pool thread, "
        f"the event loop in epoll, a condition) and are left out below, leaving {active}.",
        "",
    ]
    lines += table("all samples by thread:", threads, samples) if threads else []
    lines += table(f"top {top} by own time, % of the {active} working samples:", own, active)
    lines += table(f"metering code by total time (on the stack), % of {active}:", ours, active)
    lines += table(f"top {top} by total time, % of {active}:", total, active)
    return "\n".join(lines)


def profile(opts: Options, command: str, backends: list[str], out_dir: Path) -> int:
    """record-spread with py-spy attached to the server; saves the stacks and a summary."""
    py_spy = _py_spy()
    if py_spy is None:
        print("py-spy not found: run bench/profile (it installs bench/requirements.txt)")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    status = 0
    for name in backends:
        backend = SqliteBackend() if name == "sqlite" else PostgresBackend()
        try:
            with _server(backend.url, opts.server_env) as server:
                assert server.process is not None
                pid = server.process.pid
                log(f"{name}: creating {opts.accounts} accounts")
                setup = [
                    sys.executable, str(BENCH / "loadgen.py"),
                    "--target", server.target,
                    "--accounts", str(opts.accounts),
                    "--prefix", PREFIX,
                    "--setup-accounts", str(GRANT_UNITS),
                ]  # fmt: skip
                subprocess.run(setup, capture_output=True, check=True, timeout=3600)
                collapsed = out_dir / f"profile-{stamp}-{name}-record-spread.collapsed"
                spy = [
                    py_spy, "record",
                    "--pid", str(pid),
                    "--subprocesses",  # the usage writer process too
                    "--rate", "100",
                    "--duration", str(int(opts.duration)),
                    "--threads",
                    "--function",  # aggregate by function, not by line
                    "--format", "raw",
                    "--output", str(collapsed),
                ]  # fmt: skip
                log(f"{name}: {' '.join(spy)}")
                recorder = subprocess.Popen(
                    spy, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                time.sleep(1.0)  # let py-spy attach before the load starts
                result = run_loadgen(
                    opts,
                    server.target,
                    (pid, backend.db_pid),
                    "record-spread",
                    "closed",
                    f"prof-{stamp}",
                )
                spy_out, _ = recorder.communicate(timeout=opts.duration + 120)
                if recorder.returncode != 0 or not collapsed.exists():
                    print(f"py-spy failed (exit {recorder.returncode}):\n{spy_out}")
                    status = 1
                    continue
                summary = out_dir / f"profile-{stamp}-{name}-record-spread.txt"
                text_out = (
                    f"$ {command}\n"
                    f"{name}: {backend.description}\n"
                    f"load: record-spread, py closed loop c={opts.concurrency} over "
                    f"{opts.channels} channels, {opts.duration:g} s: "
                    f"{result['rps']:,.1f} req/s, p50 {_ms(result['p50_ms'])} ms, "
                    f"p99 {_ms(result['p99_ms'])} ms (under the profiler)\n"
                    f"profiler: {shlex.join(['py-spy', *spy[1:]])}\n\n"
                    + summarize_collapsed(collapsed)
                )
                summary.write_text(text_out, encoding="utf-8")
                print(text_out)
                print(f"saved {collapsed} (open it in speedscope.app or flamegraph.pl)")
                print(f"saved {summary}")
        finally:
            backend.close()
    return status


# -- report -------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _ratio(value: float | None, floor: float | None) -> str:
    if value is None or not floor:
        return "-"
    return f"{value / floor:.2f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render(command: str, opts: Options, header: list[str], results: list[BackendResult]) -> str:
    lines = [f"$ {command}", *header, ""]
    for res in results:
        lines.append(f"== {res.backend}: {res.description or ''}".rstrip())
        if res.skipped:
            lines += [f"skipped: {res.skipped}", ""]
            continue
        if res.setup:
            s = res.setup
            lines.append(
                f"set-up: {s['accounts']:,} accounts (CreateAccount + GrantCredits ${GRANT_UNITS}) "
                f"in {s['seconds']:.1f} s, {s['calls_per_s']:,.0f} calls/s, "
                f"server CPU {s['server_cpu_s']:.1f} s"
            )
        if res.error:
            lines.append(f"ERROR: {res.error}")
        floors = {}
        for sc in res.scenarios:
            if sc.scenario == "health":
                floors = {p.key: p.result for p in sc.phases}
        head = (
            f"{'scenario':<21} {'load':<17} {'req/s':>8} {'xfloor':>6} {'events/s':>9} "
            f"{'p50 ms':>8} {'xfloor':>6} {'p99 ms':>8} {'xfloor':>6} {'p99.9 ms':>8} "
            f"{'xfloor':>6} {'samples':>7} {'errors':>6}  {'cpu% srv/db/cli/oth/krn':<23}"
        )
        lines += [head, "-" * len(head)]
        for sc in res.scenarios:
            for p in sc.phases:
                r = p.result
                f = floors.get(p.key, {})
                if p.mode == "closed":
                    load = f"{p.generator} closed c={r['concurrency']}"
                else:
                    load = f"py open {r['offered_rate']:,.0f}/s"
                errors = sum(r["errors"].values()) + r.get("dropped", 0)
                lines.append(
                    f"{LABELS[sc.scenario]:<21} {load:<17} {_rate(r['rps']):>8} "
                    f"{_ratio(r['rps'], f.get('rps')):>6} {_rate(r['events_per_s']):>9} "
                    f"{_ms(r['p50_ms']):>8} {_ratio(r['p50_ms'], f.get('p50_ms')):>6} "
                    f"{_ms(r['p99_ms']):>8} {_ratio(r['p99_ms'], f.get('p99_ms')):>6} "
                    f"{_ms(r['p999_ms']):>8} {_ratio(r['p999_ms'], f.get('p999_ms')):>6} "
                    f"{r['samples']:>7,} {errors:>6}  {_pct(r['server_cpu_pct']):>4}/"
                    f"{_pct(r['db_cpu_pct']):>3}/{_pct(r['client_cpu_pct']):>3}/"
                    f"{_pct(r['other_cpu_pct']):>3}/{_pct(r['kernel_cpu_pct']):>3}"
                )
        lines.append("")
        head2 = (
            f"{'scenario':<21} {'peak RSS MB':>11} {'per proc':>8} {'records acked':>13} "
            f"{'rows added':>10} "
            f"{'rows check':>10}  ledger verify"
        )
        lines += [head2, "-" * len(head2)]
        for sc in res.scenarios:
            rss = "-" if sc.peak_rss_kb is None else f"{sc.peak_rss_kb / 1024:,.1f}"
            if not sc.rss_reset and sc.peak_rss_kb is not None:
                rss += "*"
            largest = (
                "-" if sc.peak_rss_process_kb is None else f"{sc.peak_rss_process_kb / 1024:,.1f}"
            )
            check = "OK" if sc.rows_ok else "MISMATCH"
            if sc.ambiguous and sc.rows_ok:
                check = f"OK ({sc.ambiguous} unsure)"
            verify = sc.verify
            if sc.verify_seconds is not None:
                verify += f" [{sc.verify_seconds:.0f} s]"
            lines.append(
                f"{LABELS[sc.scenario]:<21} {rss:>11} {largest:>8} {sc.acked:>13,} "
                f"{sc.rows_after - sc.rows_before:>10,} {check:>10}  {verify}"
            )
        if res.total_rows is not None:
            total_ok = res.total_rows == res.total_acked
            lines.append(
                f"total: {res.total_rows:,} usage records in the database, "
                f"{res.total_acked:,} acknowledged: {'OK' if total_ok else 'MISMATCH'}; "
                f"server peak RSS over the whole run "
                f"{(res.server_peak_rss_kb or 0) / 1024:,.1f} MB (since the last reset); "
                f"server exit code {res.server_exit}"
            )
        lines.append("")
    lines += [
        "req/s: calls answered OK per second in the measured window; events/s: records "
        "per second (RecordUsageBatch).",
        "closed c=N: N calls in flight (max rate); py open R/s: calls started on a fixed "
        f"schedule at {OPEN_FRACTION:.0%} of the py closed-loop rate, latency from the "
        "scheduled time.",
        "xfloor: the figure divided by the same figure of health (floor) with the same "
        "generator and load on the same server.",
        "cpu% srv/db/cli/oth/krn: CPU time over the phase, in % of one core, of the server, "
        "the PostgreSQL processes, the load generator, every other process (oth > ~10: "
        "another job was running and skewed the figures) and the rest (the kernel: network, "
        "disk, interrupts; and processes too short-lived to be seen).",
        "peak RSS: the server's VmHWM summed over its processes (the server, its usage "
        "writer process, workers), reset at the start of each scenario (* = not reset: "
        "peak since start); per proc: the largest single process.",
        "rows check: usage_records rows added == records acknowledged (errored calls are "
        "'unsure': may or may not be stored).",
    ]
    return "\n".join(lines) + "\n"


def source_digest() -> str:
    """A short sha256 of metering/'s sources: which code the run measured."""
    digest = hashlib.sha256()
    package = ROOT / "metering"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _header(opts: Options, scenarios: list[str], backends: list[str]) -> list[str]:
    cpu = "?"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ghz = "not installed (bench/run installs it)"
    if opts.ghz is not None:
        out = subprocess.run(
            [str(opts.ghz), "--version"], capture_output=True, text=True, check=False
        )
        ghz = (out.stdout or out.stderr).strip()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    quiet = loadgen.CpuMeter(None)
    time.sleep(2.0)
    busy = quiet.stop(0.0, 2.0)["other_cpu_pct"] or 0.0
    busy_note = f"other processes used {busy:.0f}% of a core just before the run" + (
        ": THE MACHINE IS NOT IDLE, the figures will be skewed" if busy > 10 else ""
    )
    return [
        f"metering benchmark, {now}, {'quick' if opts.quick else 'full'} mode",
        f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}, grpcio {grpc.__version__}, ghz {ghz}",
        f"code: metering/ sources sha256 {source_digest()} (bench/bench.py source_digest)",
        "load average before the run (1/5/15 min): "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f"; {busy_note}",
        f"load: {opts.concurrency} calls in flight over {opts.channels} channels "
        f"(py: {opts.procs} process{'es' if opts.procs > 1 else ''}), "
        f"{opts.duration:g} s per phase, first {opts.warmup:g} s not measured",
        f"data: {opts.accounts:,} accounts ({PREFIX}0..), prices {PRICES.relative_to(ROOT)}, "
        f"RecordUsage {loadgen.MODEL} 1000 in / 500 out / 200 cached tokens, "
        f"batch {loadgen.BATCH_SIZE} records, EstimateTokens on {len(loadgen.estimate_text())} "
        f"bytes of text",
        "server: python -m metering serve --prices-file tests/data/prices.json, environment "
        + " ".join(f"{k}={v}" for k, v in sorted(opts.server_env.items()))
        + " (the shipped defaults otherwise)",
        f"backends: {', '.join(backends)}; scenarios: {', '.join(scenarios)}; ledger verify: "
        + ("after every scenario" if opts.verify == "every" else "per backend, at the end"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n")[0],
        epilog="Environment: BENCH_PYTHON (interpreter with metering installed; "
        "default: ./.venv via scripts/bootstrap).",
    )  # fmt: skip
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 s phases, ledger verify at the end (about 3 minutes)",
    )
    parser.add_argument("--duration", type=float, help="seconds per phase (default 10, quick 2)")
    parser.add_argument("--warmup", type=float, help="seconds not measured (default 1, quick 0.5)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight (32)")
    parser.add_argument("--channels", type=int, default=16, help="connections (16)")
    parser.add_argument("--procs", type=int, default=1, help="loadgen processes (1)")
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (10000)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, from: " + ",".join(SCENARIOS) + " (health is always run first)",
    )
    parser.add_argument(
        "--verify",
        choices=("every", "end"),
        help="ledger verify after every scenario, or once per backend at the end "
        "(default: every; quick: end)",
    )
    parser.add_argument("--no-ghz", action="store_true", help="only the Python load generator")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the server, e.g. METERING_DB_POOL_SIZE=16 or METERING_WORKERS=2 "
        "(repeatable; default: " + " ".join(f"{k}={v}" for k, v in SERVER_ENV.items()) + ")",
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH / "out", help="directory for the report (bench/out)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: record-spread (py closed loop) with the server under py-spy "
        "(bench/profile; default backend sqlite, 15 s)",
    )
    parser.add_argument("--command", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}")
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    scenarios = ["health", *[s for s in scenarios if s != "health"]]
    ghz = None if args.no_ghz or not os.access(GHZ, os.X_OK) else GHZ
    opts = Options(
        duration=args.duration or (2.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0),
        concurrency=args.concurrency,
        channels=args.channels,
        procs=args.procs,
        accounts=args.accounts,
        verify=args.verify or ("end" if args.quick else "every"),
        ghz=ghz,
        quick=args.quick,
        server_env=dict(SERVER_ENV),
    )
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--server-env {item!r}: expected NAME=VALUE")
        opts.server_env[key] = value
    command = args.command or shlex.join([sys.executable, *sys.argv])
    if args.profile:
        if args.backends == ",".join(BACKENDS):
            backends = ["sqlite"]
        opts.duration = args.duration or 15.0
        return profile(opts, command, backends, args.out)
    header = _header(opts, scenarios, backends)
    # Progress goes to stderr; stdout gets the report alone, at the end.
    for line in [f"$ {command}", *header]:
        print(line, file=sys.stderr, flush=True)
    started = time.monotonic()
    results: list[BackendResult] = []
    pending: PendingVerify | None = None
    for name in backends:
        res, pending = run_backend(opts, name, scenarios, pending)
        results.append(res)
    if pending is not None:
        log(f"waiting for the {pending.backend.name} ledger verify")
        pending.finish()
    elapsed = time.monotonic() - started
    report = render(command, opts, header, results)
    report += f"total time: {elapsed:.0f} s\n"
    digest_after = source_digest()
    if f"sha256 {digest_after} " not in "\n".join(header):
        report += (
            f"WARNING: metering/ changed during the run (sources now {digest_after}): "
            "the servers and `metering ledger verify` may have run different code.\n"
        )
    print()
    print(report, end="", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{'quick' if opts.quick else 'full'}"
    (args.out / f"{name}.txt").write_text(report, encoding="utf-8")
    (args.out / f"{name}.json").write_text(
        json.dumps(
            [
                {
                    "backend": r.backend,
                    "description": r.description,
                    "skipped": r.skipped,
                    "error": r.error,
                    "setup": r.setup,
                    "total_rows": r.total_rows,
                    "total_acked": r.total_acked,
                    "scenarios": [
                        {
                            "scenario": s.scenario,
                            "peak_rss_kb": s.peak_rss_kb,
                            "peak_rss_process_kb": s.peak_rss_process_kb,
                            "acked": s.acked,
                            "rows_added": s.rows_after - s.rows_before,
                            "rows_ok": s.rows_ok,
                            "verify": s.verify,
                            "verify_ok": s.verify_ok,
                            "phases": [p.result for p in s.phases],
                        }
                        for s in r.scenarios
                    ],
                }
                for r in results
            ],
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"saved {args.out / name}.txt and .json", file=sys.stderr)
    failed = any(
        r.error
        or r.final_verify_ok is False
        or any(not s.rows_ok or s.verify_ok is False for s in r.scenarios)
        or (r.total_rows is not None and r.total_rows != r.total_acked)
        for r in results
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
