"""The grpc.aio server: servicers, health, reflection, limits, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from metering.api.malformed import MalformedRequestInterceptor
from metering.api.observability import ObservabilityInterceptor
from metering.api.servicers import MeteringAdminServicer, MeteringServicer
from metering.service.exports import UsageExports
from metering.service.group_commit import (
    BATCH_RECORDS_MAX_DEFAULT,
    LINGER_SECONDS_DEFAULT,
    BatchWriter,
    GroupCommitter,
    ThreadWriter,
)
from metering.service.handlers import Metering
from metering.service.prices import PriceAdmin
from metering.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    metering_service_pb2,
    metering_service_pb2_grpc,
)

log = logging.getLogger(__name__)

HEALTH_PROBE_INTERVAL_SECONDS = 5.0
LIVENESS_SERVICE = "metering.liveness"
SERVICE_NAMES = (
    metering_service_pb2.DESCRIPTOR.services_by_name["MeteringService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["MeteringAdminService"].full_name,
)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    committer: GroupCommitter
    probe_task: asyncio.Task[None] | None = None
    sweep_task: asyncio.Task[None] | None = None

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting calls, let in-flight calls finish within the grace period.

        In-flight RecordUsage calls wait for their group commit, which keeps
        running until the server has stopped; then what is left is written.
        """
        if self.probe_task is not None:
            self.probe_task.cancel()
        if self.sweep_task is not None:
            self.sweep_task.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_seconds)
        await self.committer.close()


async def start_server(
    metering: Metering,
    prices: PriceAdmin,
    executor: ThreadPoolExecutor,
    listen: str,
    max_message_bytes: int,
    database_ping: Callable[[], bool],
    linger_seconds: float = LINGER_SECONDS_DEFAULT,
    batch_records_max: int = BATCH_RECORDS_MAX_DEFAULT,
    reuse_port: bool = False,
    auth: grpc.aio.ServerInterceptor | None = None,
    rate_limit: grpc.aio.ServerInterceptor | None = None,
    credentials: grpc.ServerCredentials | None = None,
    sweep_seconds: float = 1.0,
    exports: UsageExports | None = None,
    writer: BatchWriter | None = None,
) -> RunningServer:
    """``auth`` checks every call (None: no authentication); ``rate_limit`` limits callers
    (metering.api.ratelimit; None: no limits); ``credentials`` serve TLS; ``exports`` serves
    the exports and review queue (default: over the metering service's database); ``writer``
    writes the group commit's batches (default: a thread of this process)."""
    server = grpc.aio.server(
        # Observability first (outermost): it sees every other interceptor's outcome too.
        # Authentication (metering.api.auth) after it, before any servicer runs.
        # Rate limits (metering.api.ratelimit) after authentication: they charge its caller,
        # and a refused caller costs nothing.
        interceptors=[
            ObservabilityInterceptor(),
            # Before auth and rate limits: they read fields of the parsed request.
            MalformedRequestInterceptor(),
            *([auth] if auth is not None else []),
            *([rate_limit] if rate_limit is not None else []),
        ],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # One process per port, unless `serve --workers N` runs several on purpose:
            # then the kernel spreads connections over them.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    # The generated registration functions are untyped (grpc_tools emits no annotations).
    committer = GroupCommitter(writer or ThreadWriter(metering), linger_seconds, batch_records_max)
    await committer.start()
    metering_service_pb2_grpc.add_MeteringServiceServicer_to_server(  # type: ignore[no-untyped-call]
        MeteringServicer(metering, committer, executor), server
    )
    admin_service_pb2_grpc.add_MeteringAdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
        MeteringAdminServicer(
            metering, prices, executor, exports or UsageExports(metering.database)
        ),
        server,
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = (
        server.add_secure_port(listen, credentials)
        if credentials is not None
        else server.add_insecure_port(listen)
    )
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    running = RunningServer(server, port, health, committer)
    # Liveness says only that the process answers: a database outage makes the
    # service NOT_SERVING (readiness) but must not get every replica restarted.
    await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await _set_health(health, database_ping(), executor)
    running.probe_task = asyncio.create_task(_probe_database(health, database_ping, executor))
    running.sweep_task = asyncio.create_task(_sweep_reservations(metering, executor, sweep_seconds))
    return running


async def _sweep_reservations(
    metering: Metering, executor: ThreadPoolExecutor, interval_seconds: float
) -> None:
    """Expire holds past their TTL. Every replica sweeps; each hold expires once."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await loop.run_in_executor(executor, metering.expire_reservations)
        except Exception:  # a database outage must not kill the sweeper
            log.warning("reservation sweep failed; retrying", exc_info=True)


async def _set_health(
    health: health_aio.HealthServicer, ok: bool, _executor: ThreadPoolExecutor
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await health.set(name, status)


def _in_daemon_thread(fn: Callable[[], bool]) -> asyncio.Future[bool]:
    """Run ``fn`` on a thread of its own, one that cannot hold up the process's exit.

    The probe must not queue behind calls stuck on the database (the shared pool), and
    a probe stuck on a silent database must not keep a stopping server alive.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool] = loop.create_future()

    def settle(outcome: bool | BaseException) -> None:
        if future.done():  # timed out and cancelled meanwhile
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def run() -> None:
        try:
            outcome: bool | BaseException = fn()
        except Exception as exc:
            outcome = exc
        loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="metering-health-probe", daemon=True).start()
    return future


async def _probe_database(
    health: health_aio.HealthServicer, ping: Callable[[], bool], executor: ThreadPoolExecutor
) -> None:
    """Health follows database reachability, so load balancers route around an outage."""
    previous = True
    while True:
        await asyncio.sleep(HEALTH_PROBE_INTERVAL_SECONDS)
        try:
            # A database that stops answering (rather than refusing) must not leave the
            # health at its last value: no answer in time is NOT_SERVING.
            ok = await asyncio.wait_for(_in_daemon_thread(ping), HEALTH_PROBE_INTERVAL_SECONDS)
        except Exception:
            ok = False
        if ok != previous:
            log.warning("database %s", "reachable again" if ok else "unreachable: NOT_SERVING")
            previous = ok
        await _set_health(health, ok, executor)
