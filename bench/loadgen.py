"""An asyncio gRPC load generator for the metering server.

Two modes, both spreading calls over many channels (one HTTP/2 connection each):

* ``closed``: ``--concurrency`` workers, each sending its next call as soon as
  the previous one is answered. The throughput is the server's maximum rate
  at that concurrency; latencies include its queueing.
* ``open``: calls are started on a fixed schedule (``--rate`` per second)
  whether or not earlier ones were answered. A call's latency runs from the
  moment it was *scheduled*, so a stalled server or client shows up in the
  percentiles instead of slowing the schedule (no coordinated omission).

It reports requests/s (and events/s for RecordUsageBatch), p50/p99/p99.9
latency over the measurement window (the first ``--warmup`` seconds are left
out), every error by status code, and the acknowledged events: a RecordUsage
answered OK and not replayed is one record the database must now hold, a
batch counts its records that came back without an error. ``bench/bench.py``
checks those counts against the database after every scenario.

Usage (the server must already run and, for the record scenarios, have the
accounts ``<prefix>0`` .. ``<prefix>N-1``; ``bench/bench.py`` does both)::

    python bench/loadgen.py --target 127.0.0.1:50051 --scenario record-spread \\
        --mode closed --concurrency 32 --channels 16 --duration 10
    python bench/loadgen.py --target 127.0.0.1:50051 --scenario health \\
        --mode open --rate 2000 --duration 10 --json-out result.json
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc
from grpc_health.v1 import health_pb2

from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import types_pb2

SCENARIOS = ("health", "record-spread", "record-hot", "record-batch", "balance", "estimate")
BATCH_SIZE = 100
CALL_TIMEOUT_SECONDS = 60.0
# Open loop: calls not yet answered beyond this many are not sent (counted as dropped).
MAX_OUTSTANDING = 20_000
CHANNEL_OPTIONS = [
    # Without this, channels with the same target and arguments share one
    # connection through grpc's global subchannel pool.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]
MODEL = "gpt-4o-mini"
PROVIDER = "openai"

_TEXT = (
    "the quick brown fox jumps over the lazy dog while a metering relay records usage "
    "for every request it forwards to a large language model; prompts carry system "
    "instructions, tool schemas, retrieved documents and the conversation so far, and "
    "each answer streams back tokens until the model stops or reaches its limit. "
    "Prices differ per million input, cached and output tokens in 2025 and 2026."
)
_WORDS = _TEXT.split()


def estimate_text(size: int = 4096, seed: int = 11) -> str:
    """English-like text of exactly ``size`` characters (ASCII, so also bytes)."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts)[:size]


# -- workloads ----------------------------------------------------------------


@dataclass
class Workload:
    """What one scenario sends: the method, a request maker and an ack counter."""

    method: str
    make: Callable[[int], bytes]
    # Events a response acknowledges (records now stored); None: not a write.
    acked: Callable[[bytes], tuple[int, int]] | None = None


def _record(account_id: str, request_id: str) -> pb.RecordUsageRequest:
    return pb.RecordUsageRequest(
        account_id=account_id,
        request_id=request_id,
        model=MODEL,
        provider=PROVIDER,
        usage=types_pb2.TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=200),
    )


def _acked_record(raw: bytes) -> tuple[int, int]:
    response = pb.RecordUsageResponse.FromString(raw)
    return (0, 1) if response.replayed else (1, 0)


def _acked_batch(raw: bytes) -> tuple[int, int]:
    response = pb.RecordUsageBatchResponse.FromString(raw)
    acked = replayed = 0
    for result in response.results:
        if result.HasField("response"):
            if result.response.replayed:
                replayed += 1
            else:
                acked += 1
    return acked, replayed


def make_workload(
    scenario: str, tag: str, proc: int, accounts: int, prefix: str, seed: int
) -> Workload:
    """The request maker of ``scenario``; request ids are unique per (tag, proc, seq)."""
    rng = random.Random(seed * 1_000_003 + proc)
    service = "/metering.v1.MeteringService/"
    if scenario == "health":
        body = health_pb2.HealthCheckRequest(service="").SerializeToString()
        return Workload("/grpc.health.v1.Health/Check", lambda _seq: body)
    if scenario == "record-spread":

        def spread(seq: int) -> bytes:
            account = f"{prefix}{rng.randrange(accounts)}"
            return _record(account, f"{tag}-{proc}-{seq}").SerializeToString()

        return Workload(service + "RecordUsage", spread, _acked_record)
    if scenario == "record-hot":
        hot = f"{prefix}0"

        def one_account(seq: int) -> bytes:
            return _record(hot, f"{tag}-{proc}-{seq}").SerializeToString()

        return Workload(service + "RecordUsage", one_account, _acked_record)
    if scenario == "record-batch":

        def batch(seq: int) -> bytes:
            records = [
                _record(f"{prefix}{rng.randrange(accounts)}", f"{tag}-{proc}-{seq}-{j}")
                for j in range(BATCH_SIZE)
            ]
            return pb.RecordUsageBatchRequest(records=records).SerializeToString()

        return Workload(service + "RecordUsageBatch", batch, _acked_batch)
    if scenario == "balance":

        def balance(_seq: int) -> bytes:
            account = f"{prefix}{rng.randrange(accounts)}"
            return pb.GetBalanceRequest(account_id=account).SerializeToString()

        return Workload(service + "GetBalance", balance)
    if scenario == "estimate":
        body = pb.EstimateTokensRequest(
            model=MODEL, provider=PROVIDER, text=estimate_text(), max_output_tokens=1000
        ).SerializeToString()
        return Workload(service + "EstimateTokens", lambda _seq: body)
    raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")


# -- one process's run --------------------------------------------------------


@dataclass
class Config:
    target: str
    scenario: str
    mode: str  # closed | open
    duration: float
    warmup: float
    concurrency: int = 32
    channels: int = 16
    rate: float = 0.0  # open loop: calls per second, all processes together
    procs: int = 1
    accounts: int = 10_000
    prefix: str = "bench-"
    tag: str = ""
    seed: int = 1
    watch_pid: int | None = None  # the server: its CPU use is measured over the run
    db_pid: int | None = None  # PostgreSQL's postmaster: its processes' CPU use too


@dataclass
class Part:
    """One process's raw result."""

    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    sent: int = 0
    ok: int = 0
    ok_in_window: int = 0
    window: float = 0.0
    acked: int = 0
    replayed: int = 0
    dropped: int = 0
    max_dispatch_lag: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0
    elapsed: float = 0.0  # from the first call to the last answer
    cpu: dict[str, float | None] = field(default_factory=dict)


# -- CPU accounting (Linux /proc) ---------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, or None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float | None:
    """CPU time all processors spent not idle so far (every process and the kernel)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


def _user_processes() -> dict[int, tuple[int, float]]:
    """(parent pid, CPU seconds) of every user-space process, by pid.

    Kernel threads (children of kthreadd, pid 2) are left out: their work
    (disk journal, network) is counted with the kernel's. Only a process's
    own time: a parent's total for its reaped children would count work
    done before the interval.
    """
    out: dict[int, tuple[int, float]] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if entry.name == "2" or fields[1] == "2":
                continue
            out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return out


def descendants(root: int, processes: dict[int, tuple[int, float]] | None = None) -> set[int]:
    """``root`` and every process under it (e.g. the workers of ``serve --workers N``)."""
    processes = _user_processes() if processes is None else processes
    tree = {root}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in processes.items():
        children.setdefault(ppid, []).append(pid)
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


class CpuMeter:
    """Who used the CPU over an interval: the server, its database, the client, the rest.

    ``stop(client_seconds, elapsed)`` gives percentages of one core:
    ``server`` (the metering process and any processes under it), ``db`` (the
    PostgreSQL processes under ``db_pid``, the postmaster), ``client`` (as
    measured by the caller), ``other`` (every other user-space process: another
    job on the machine skews the figures) and ``kernel`` (the rest of the
    machine's busy time: interrupts, network and disk work, kernel threads,
    processes too short-lived to be seen).
    """

    def __init__(
        self, server_pid: int | None, db_pid: int | None = None, exclude: tuple[int, ...] = ()
    ) -> None:
        self.pid = server_pid
        self.db_pid = db_pid
        self.exclude = {os.getpid(), *exclude}
        self.machine0 = machine_busy_seconds()
        self.procs0 = _user_processes()

    def stop(self, client_seconds: float, elapsed: float) -> dict[str, float | None]:
        machine1 = machine_busy_seconds()
        procs1 = _user_processes()
        servers = descendants(self.pid, procs1) if self.pid else set()
        dbs = descendants(self.db_pid, procs1) if self.db_pid else set()
        server = db = others = 0.0
        for pid, (_ppid, cpu) in procs1.items():
            if pid in self.exclude:
                continue
            used = max(0.0, cpu - self.procs0.get(pid, (0, 0.0))[1])
            if pid in servers:
                server += used
            elif pid in dbs:
                db += used
            else:
                others += used
        kernel = None
        if machine1 is not None and self.machine0 is not None:
            rest = machine1 - self.machine0 - server - client_seconds - db
            others = max(0.0, min(others, rest))
            kernel = max(0.0, rest - others)
        elapsed = elapsed or 1.0
        return {
            "server_cpu_pct": server / elapsed * 100 if self.pid else None,
            "db_cpu_pct": db / elapsed * 100 if self.db_pid is not None else None,
            "client_cpu_pct": client_seconds / elapsed * 100,
            "other_cpu_pct": others / elapsed * 100,
            "kernel_cpu_pct": None if kernel is None else kernel / elapsed * 100,
        }


async def _open_channels(config: Config, count: int) -> list[grpc.aio.Channel]:
    channels = [
        grpc.aio.insecure_channel(config.target, options=CHANNEL_OPTIONS) for _ in range(count)
    ]
    await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in channels)), 30)
    return channels


async def run_part(config: Config, proc: int, start_wall: float | None = None) -> Part:
    """Run this process's share of the load; ``start_wall`` lines processes up."""
    workload = make_workload(
        config.scenario, config.tag, proc, config.accounts, config.prefix, config.seed
    )
    share_channels = max(
        1, config.channels // config.procs + (proc < config.channels % config.procs)
    )
    channels = await _open_channels(config, share_channels)
    calls = [channel.unary_unary(workload.method) for channel in channels]
    part = Part()
    loop = asyncio.get_running_loop()
    if start_wall is not None:
        await asyncio.sleep(max(0.0, start_wall - time.time()))
    meter = CpuMeter(config.watch_pid if proc == 0 else None, config.db_pid)
    cpu0 = time.process_time()
    t0 = loop.time()
    measure_from = t0 + config.warmup
    end = t0 + config.duration
    part.window = end - measure_from
    acked_of = workload.acked
    is_open = config.mode == "open"

    async def one(call: Any, seq: int, origin: float) -> None:
        """One call; ``origin`` is when it started (closed) or was due (open)."""
        try:
            raw = await call(workload.make(seq), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            part.errors[exc.code().name] += 1
            return
        done = loop.time()
        part.ok += 1
        if acked_of is not None:
            acked, replayed = acked_of(raw)
            part.acked += acked
            part.replayed += replayed
        in_window = measure_from <= done <= end
        if in_window:
            part.ok_in_window += 1
        # Closed loop: the calls answered in the window. Open loop: every call
        # due in the window, however late its answer (dropping the slow ones
        # at the end would flatter the tail).
        if (origin >= measure_from and origin < end) if is_open else in_window:
            part.latencies.append(done - origin)

    try:
        if config.mode == "closed":
            share = config.concurrency // config.procs + (proc < config.concurrency % config.procs)
            seqs = iter(range(1 << 62))

            async def worker(index: int) -> None:
                call = calls[index % len(calls)]
                while loop.time() < end:
                    part.sent += 1
                    await one(call, next(seqs), loop.time())

            await asyncio.gather(*(worker(i) for i in range(share)))
        else:
            rate = config.rate / config.procs
            # Processes interleave their schedules instead of firing together.
            offset = proc / config.rate
            pending: set[asyncio.Task[None]] = set()
            seq = 0
            while True:
                now = loop.time()
                if now >= end:
                    break
                due = int((now - t0 - offset) * rate) + 1
                while seq < due:
                    scheduled = t0 + offset + seq / rate
                    if scheduled >= end:
                        break
                    part.max_dispatch_lag = max(part.max_dispatch_lag, now - scheduled)
                    if len(pending) >= MAX_OUTSTANDING:
                        part.dropped += 1
                    else:
                        part.sent += 1
                        task = loop.create_task(one(calls[seq % len(calls)], seq, scheduled))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    seq += 1
                await asyncio.sleep(max(0.0, t0 + offset + seq / rate - loop.time()))
            if pending:
                await asyncio.gather(*pending)
    finally:
        part.elapsed = loop.time() - t0
        part.cpu_seconds = time.process_time() - cpu0
        part.cpu = meter.stop(part.cpu_seconds, part.elapsed)
        for channel in channels:
            await channel.close()
    return part


def _part_in_process(config: Config, proc: int, start_wall: float) -> dict[str, Any]:
    part = asyncio.run(run_part(config, proc, start_wall))
    return {
        "latencies": part.latencies.tobytes(),
        **{k: getattr(part, k) for k in _SCALARS},
        "errors": dict(part.errors),
        "cpu": part.cpu,
    }


_SCALARS = (
    "sent",
    "ok",
    "ok_in_window",
    "window",
    "acked",
    "replayed",
    "dropped",
    "max_dispatch_lag",
    "cpu_seconds",
    "elapsed",
)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0-100)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100)
    return ordered[min(len(ordered), int(rank)) - 1]


def run(config: Config) -> dict[str, Any]:
    """Run the load (in ``config.procs`` processes) and summarise it."""
    if not config.tag:
        config.tag = f"lg{uuid.uuid4().hex[:10]}"
    if config.procs == 1:
        parts = [_part_in_process(config, 0, time.time())]
    else:
        # spawn: grpc must not be forked after it started threads.
        ctx = multiprocessing.get_context("spawn")
        start_wall = time.time() + 2.0 + 0.2 * config.procs
        with ctx.Pool(config.procs) as pool:
            parts = pool.starmap(
                _part_in_process, [(config, p, start_wall) for p in range(config.procs)]
            )
    latencies = array.array("d")
    errors: Counter[str] = Counter()
    totals: dict[str, float] = dict.fromkeys(_SCALARS, 0.0)
    for part in parts:
        latencies.frombytes(part["latencies"])
        errors.update(part["errors"])
        for key in _SCALARS:
            if key in ("window", "max_dispatch_lag", "elapsed"):
                totals[key] = max(totals[key], part[key])
            else:
                totals[key] += part[key]
    ordered = sorted(latencies)
    elapsed = totals["elapsed"] or 1.0
    # Measured by process 0 over its run; the client share is every process's.
    cpu = dict(parts[0]["cpu"])
    if len(parts) > 1:
        extra = (totals["cpu_seconds"] - parts[0]["cpu_seconds"]) / elapsed * 100
        cpu["client_cpu_pct"] = (cpu["client_cpu_pct"] or 0.0) + extra
        cpu["other_cpu_pct"] = max(0.0, (cpu["other_cpu_pct"] or 0.0) - extra)
    window = totals["window"] or 1.0
    rps = totals["ok_in_window"] / window
    batch = config.scenario == "record-batch"

    def ms(q: float) -> float | None:
        value = _percentile(ordered, q)
        return None if value is None else value * 1000

    return {
        "generator": "py",
        "scenario": config.scenario,
        "mode": config.mode,
        "concurrency": config.concurrency if config.mode == "closed" else None,
        "channels": config.channels,
        "procs": config.procs,
        "duration_s": config.duration,
        "warmup_s": config.warmup,
        "offered_rate": config.rate if config.mode == "open" else None,
        "tag": config.tag,
        "sent": int(totals["sent"]),
        "ok": int(totals["ok"]),
        "errors": dict(errors),
        "dropped": int(totals["dropped"]),
        "acked_events": int(totals["acked"]),
        "replayed_events": int(totals["replayed"]),
        "rps": rps,
        "events_per_s": rps * BATCH_SIZE if batch else None,
        "samples": len(ordered),
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": ordered[-1] * 1000 if ordered else None,
        "max_dispatch_lag_ms": totals["max_dispatch_lag"] * 1000,
        "client_cpu_s": totals["cpu_seconds"],
        "elapsed_s": totals["elapsed"],
        **cpu,
    }


# -- account set-up -----------------------------------------------------------


async def create_accounts(
    target: str, accounts: int, prefix: str, units: int, concurrency: int = 64, channels: int = 8
) -> dict[str, Any]:
    """CreateAccount + GrantCredits for ``<prefix>0..N-1``, ``concurrency`` at a time.

    Idempotent: an existing account (ALREADY_EXISTS) is fine, and the grant's
    request id is fixed per account, so a rerun replays it.
    """
    config = Config(target=target, scenario="health", mode="closed", duration=0, warmup=0)
    chans = await _open_channels(config, channels)
    create = [
        c.unary_unary(
            "/metering.v1.MeteringAdminService/CreateAccount",
            request_serializer=admin_pb.CreateAccountRequest.SerializeToString,
            response_deserializer=admin_pb.CreateAccountResponse.FromString,
        )
        for c in chans
    ]
    grant = [
        c.unary_unary(
            "/metering.v1.MeteringAdminService/GrantCredits",
            request_serializer=admin_pb.GrantCreditsRequest.SerializeToString,
            response_deserializer=admin_pb.GrantCreditsResponse.FromString,
        )
        for c in chans
    ]
    numbers = iter(range(accounts))
    created = existing = 0
    t0 = time.perf_counter()

    async def worker(index: int) -> None:
        nonlocal created, existing
        for n in numbers:
            account_id = f"{prefix}{n}"
            try:
                await create[index % channels](
                    admin_pb.CreateAccountRequest(account_id=account_id, currency_code="USD"),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
                created += 1
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                existing += 1
            await grant[index % channels](
                admin_pb.GrantCreditsRequest(
                    account_id=account_id,
                    request_id=f"bench-grant-{n}",
                    amount=types_pb2.Money(currency_code="USD", units=units),
                    reason="benchmark",
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for c in chans:
            await c.close()
    seconds = time.perf_counter() - t0
    return {
        "accounts": accounts,
        "created": created,
        "existing": existing,
        "seconds": seconds,
        "calls_per_s": 2 * accounts / seconds if seconds else None,
    }


# -- command line -------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the metering server")
    parser.add_argument("--scenario", choices=SCENARIOS, default="health")
    parser.add_argument("--mode", choices=("closed", "open"), default="closed")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds left out of stats")
    parser.add_argument("--concurrency", type=int, default=32, help="closed loop: calls in flight")
    parser.add_argument("--channels", type=int, default=16, help="connections, all processes")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: calls per second")
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--prefix", default="bench-", help="account id prefix")
    parser.add_argument("--tag", default="", help="request id prefix (default: random)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--watch-pid", type=int, help="server process: report its CPU use")
    parser.add_argument("--db-pid", type=int, help="PostgreSQL postmaster: report its CPU use")
    parser.add_argument(
        "--setup-accounts",
        type=int,
        metavar="UNITS",
        help="instead of load: create the accounts and grant each UNITS dollars",
    )
    parser.add_argument("--json-out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.setup_accounts is not None:
        result = asyncio.run(
            create_accounts(args.target, args.accounts, args.prefix, args.setup_accounts)
        )
    else:
        if args.mode == "open" and args.rate <= 0:
            parser.error("--mode open needs --rate")
        if args.procs < 1 or args.channels < args.procs or args.concurrency < args.procs:
            parser.error("need procs >= 1, channels >= procs and concurrency >= procs")
        result = run(
            Config(
                target=args.target,
                scenario=args.scenario,
                mode=args.mode,
                duration=args.duration,
                warmup=min(args.warmup, args.duration / 2),
                concurrency=args.concurrency,
                channels=args.channels,
                rate=args.rate,
                procs=args.procs,
                accounts=args.accounts,
                prefix=args.prefix,
                tag=args.tag,
                seed=args.seed,
                watch_pid=args.watch_pid,
                db_pid=args.db_pid,
            )
        )
        print(
            f"{result['scenario']} {result['mode']}: {_fmt(result['rps'], 1)} req/s"
            + (f" ({_fmt(result['events_per_s'], 0)} events/s)" if result["events_per_s"] else "")
            + f", p50 {_fmt(result['p50_ms'])} ms, p99 {_fmt(result['p99_ms'])} ms,"
            f" p99.9 {_fmt(result['p999_ms'])} ms; ok {result['ok']}, errors {result['errors']},"
            f" acked events {result['acked_events']}, cpu %: client"
            f" {result['client_cpu_pct']:.0f} server {_fmt(result['server_cpu_pct'], 0)}"
            f" db {_fmt(result['db_cpu_pct'], 0)}"
            f" other {_fmt(result['other_cpu_pct'], 0)} kernel {_fmt(result['kernel_cpu_pct'], 0)}",
            file=sys.stderr,
        )
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
