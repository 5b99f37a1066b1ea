"""The `metering` command: serve, migrate, ledger verify."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from metering import __version__, telemetry
from metering.bootstrap import App, StartupError, build_app
from metering.config import (
    ConfigError,
    Settings,
    is_loopback,
    load_security_settings,
    load_settings,
)
from metering.domain.auth import Role
from metering.domain.budgets import Budget, BudgetMetric, BudgetPeriod
from metering.domain.catalogue import CatalogueError
from metering.domain.errors import InvalidArgument, MeteringError
from metering.service.auth import AccountTenants, Authenticator, TokenAdmin
from metering.service.prices import import_prices, read_price_file
from metering.storage import migrate
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase
from metering.tokens.vocab import warm_up

log = logging.getLogger("metering")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metering", description=__doc__)
    parser.add_argument("--version", action="version", version=f"metering {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def database_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url",
            help="SQLAlchemy URL (default: $METERING_DATABASE_URL or sqlite:///metering.db)",
        )

    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--listen", help="HOST:PORT (default: $METERING_LISTEN or 127.0.0.1:50051)")
    database_flag(serve)
    serve.add_argument("--prices-file", help="price catalogue JSON instead of the bundled one")
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port (SO_REUSEPORT); default $METERING_WORKERS or 1",
    )

    migrate_cmd = commands.add_parser("migrate", help="upgrade the database schema")
    database_flag(migrate_cmd)

    prices = commands.add_parser("prices", help="the price book")
    prices_commands = prices.add_subparsers(dest="prices_command", required=True)
    check = prices_commands.add_parser("check", help="validate a price file; list every problem")
    check.add_argument("file")
    check.add_argument("--format", choices=["metering", "litellm"], help="default: detect")
    imported = prices_commands.add_parser("import", help="add a price file's changed entries")
    imported.add_argument("file")
    imported.add_argument("--format", choices=["metering", "litellm"], help="default: detect")
    imported.add_argument("--effective-time", help="RFC 3339; default: now")
    imported.add_argument("--dry-run", action="store_true")
    database_flag(imported)
    listed = prices_commands.add_parser("list", help="list price entries")
    listed.add_argument("--provider", default="")
    listed.add_argument("--model", default="")
    listed.add_argument("--account", default="")
    listed.add_argument("--all-versions", action="store_true")
    database_flag(listed)
    retire = prices_commands.add_parser("retire", help="stop a price id from pricing anything")
    retire.add_argument("price_id")
    retire.add_argument("--at", help="RFC 3339; default: now")
    database_flag(retire)
    reprice = prices_commands.add_parser(
        "reprice", help="recompute recorded usage with current prices (dry run unless --apply)"
    )
    reprice.add_argument("--from", dest="start", required=True, help="RFC 3339, inclusive")
    reprice.add_argument("--to", dest="end", required=True, help="RFC 3339, exclusive")
    reprice.add_argument("--account", help="only this account")
    reprice.add_argument("--apply", action="store_true", help="write correction entries")
    database_flag(reprice)

    tokens = commands.add_parser("tokens", help="API tokens (METERING_AUTH=token)")
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    created = tokens_commands.add_parser(
        "create", help="create a token; prints it once, on stdout (its id goes to stderr)"
    )
    created.add_argument("--role", required=True, choices=[role.value for role in Role])
    created.add_argument("--tenant", help="limit the token to this tenant's accounts")
    created.add_argument("--name", default="", help="a label for listings")
    database_flag(created)
    database_flag(tokens_commands.add_parser("list", help="list tokens (never their secrets)"))
    revoked = tokens_commands.add_parser("revoke", help="revoke a token (within a second)")
    revoked.add_argument("token_id")
    database_flag(revoked)

    budgets = commands.add_parser("budgets", help="usage limits per account, API key and model")
    budget_commands = budgets.add_subparsers(dest="budgets_command", required=True)
    budget_set = budget_commands.add_parser("set", help="create or replace a budget")
    budget_set.add_argument("account_id")
    budget_set.add_argument("budget_id")
    budget_set.add_argument("--period", choices=["day", "month", "rolling"], required=True)
    budget_set.add_argument("--window-seconds", type=int, default=0, help="for rolling budgets")
    budget_set.add_argument("--metric", choices=["cost", "tokens", "requests"], required=True)
    budget_set.add_argument(
        "--limit", type=int, required=True, help="nanos for cost, else tokens or requests"
    )
    budget_set.add_argument("--soft", action="store_true", help="warn instead of deny")
    budget_set.add_argument("--api-key", default="", help="only this API key's usage")
    budget_set.add_argument("--model", default="", help="only this model's usage")
    budget_set.add_argument("--thresholds", default="50,80,100", help="percents that emit events")
    database_flag(budget_set)
    budget_list = budget_commands.add_parser("list", help="an account's budgets")
    budget_list.add_argument("account_id")
    database_flag(budget_list)

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser("verify", help="check balances against entries")
    database_flag(verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "prices" and args.prices_command == "check":
        return _prices_check(args.file, args.format)
    try:
        settings = load_settings(
            listen=getattr(args, "listen", None),
            database_url=args.database_url,
            prices_file=getattr(args, "prices_file", None),
        )
    except ConfigError as exc:
        print(f"metering: {exc}", file=sys.stderr)
        return 2
    telemetry.configure_logging(settings.log_level, settings.log_format)
    # Alembic narrates every migration step at INFO; start-up errors should stand out.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            # The non-loopback rule and TLS files: a bad setting exits 2 with one line.
            load_security_settings(os.environ, settings.listen_host)
            workers = args.workers if args.workers is not None else settings.workers
            if not 1 <= workers <= 64:
                print("metering: --workers must be in [1, 64]", file=sys.stderr)
                return 2
            if workers > 1 and not settings.reuse_port:
                if settings.prometheus_port is not None:
                    # Each worker would need a port of its own; OTLP works with workers.
                    print(
                        "metering: METERING_PROMETHEUS_PORT needs --workers 1; use OTLP",
                        file=sys.stderr,
                    )
                    return 2
                return _serve_workers(settings, workers)
            return _serve(settings)
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "tokens":
            return _tokens(settings, args)
        if args.command == "prices":
            return _prices(settings, args)
        if args.command == "budgets":
            return _budgets(settings, args)
        return _verify(settings)
    except InvalidArgument as exc:
        for violation in exc.violations:
            print(f"metering: {violation.field}: {violation.description}", file=sys.stderr)
        return 2
    except (StartupError, CatalogueError, MeteringError, ValueError) as exc:
        print(f"metering: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(
            f"metering: cannot use the database: {str(exc.orig).strip().splitlines()[0]}",
            file=sys.stderr,
        )
        return 2


def _time_us(text: str, flag: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag} {text!r}: not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{flag} {text!r}: add a time zone, e.g. Z")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _prices_check(path: str, fmt: str | None) -> int:
    """Validate a price file offline; every problem names the file, entry and field."""
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}")
        return 1
    entries, problems, skipped = read_price_file(
        content, fmt.upper() if fmt else None, path, "2000-01-01T00:00:00Z", "2000-01-01"
    )
    for problem in problems:
        print(problem)
    if problems:
        print(f"{path}: {len(problems)} problems")
        return 1
    print(f"{path}: OK, {len(entries)} price entries ({skipped} non-text entries skipped)")
    return 0


def _prices(settings: Settings, args: argparse.Namespace) -> int:
    app = build_app(settings)
    try:
        command = args.prices_command
        if command == "import":
            at = _time_us(args.effective_time, "--effective-time") if args.effective_time else None
            report = import_prices(
                app.price_admin,
                Path(args.file).read_bytes(),
                args.format.upper() if args.format else None,
                args.file,
                at,
                args.dry_run,
            )
            verb = "would add" if args.dry_run else "added"
            print(
                f"{verb} {len(report.added)} price versions, {report.unchanged} unchanged, "
                f"{report.skipped} non-text entries skipped"
            )
            for price_id in report.added:
                print(f"  {price_id}")
        elif command == "list":
            token = ""
            while True:
                entries, token = app.price_admin.list_prices(
                    args.provider, args.model, args.account, args.all_versions, 1000, token
                )
                for entry in entries:
                    print(json.dumps(entry, sort_keys=True))
                if not token:
                    break
        elif command == "retire":
            at = _time_us(args.at, "--at") if args.at else None
            entry = app.price_admin.retire_price(args.price_id, at)
            print(
                f"retired {entry['price_id']} from {entry['effective_time']} "
                f"(version {entry['version']})"
            )
        else:
            return _reprice(app, args)
    finally:
        app.close()
    return 0


def _reprice(app: App, args: argparse.Namespace) -> int:
    report = app.repricer.reprice(
        _time_us(args.start, "--from"), _time_us(args.end, "--to"), args.account, args.apply
    )
    print(f"checked {report.records_checked} records; {len(report.changes)} would change")
    for change in report.changes:
        print(
            f"  {change.account_id} {change.record_id} {change.model}: "
            f"{change.old_cost_nanos} -> {change.new_cost_nanos} nanos "
            f"({change.difference_nanos:+d}), credits {change.old_credits} -> {change.new_credits}"
            f", price {change.old_price_id or 'unpriced'} v{change.old_price_version} -> "
            f"{change.new_price_id or 'default'} v{change.new_price_version}"
        )
    print(f"total difference: {report.difference_nanos:+d} nanos")
    if report.still_unpriced:
        print(f"{report.still_unpriced} records still have no price")
    for problem in report.problems:
        print(f"NOT APPLIED: {problem}")
    if args.apply:
        print(f"applied {report.applied} corrections")
    else:
        print("dry run: nothing written (use --apply)")
    return 1 if report.problems else 0


def _migrate(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        print(f"database migrated: {before or 'empty'} -> {migrate.current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


def _budgets(settings: Settings, args: argparse.Namespace) -> int:
    app = build_app(settings)
    try:
        if args.budgets_command == "set":
            try:
                thresholds = tuple(int(t) for t in args.thresholds.split(",") if t.strip())
            except ValueError:
                raise ValueError(
                    f"--thresholds {args.thresholds!r}: percents like 50,80,100"
                ) from None
            budget = app.metering.set_budget(
                Budget(
                    account_id=args.account_id,
                    budget_id=args.budget_id,
                    period=BudgetPeriod(args.period.upper()),
                    metric=BudgetMetric(args.metric.upper()),
                    limit_value=args.limit,
                    hard=not args.soft,
                    api_key_id=args.api_key,
                    model=args.model,
                    rolling_seconds=args.window_seconds,
                    thresholds=thresholds,
                )
            )
            print(f"set {_describe(budget)}")
        else:
            for budget in app.metering.list_budgets(args.account_id):
                print(_describe(budget))
    finally:
        app.close()
    return 0


def _describe(budget: Budget) -> str:
    scope = " ".join(
        part
        for part in (
            f"key={budget.api_key_id}" if budget.api_key_id else "",
            f"model={budget.model}" if budget.model else "",
        )
        if part
    )
    window = f" {budget.rolling_seconds}s" if budget.period is BudgetPeriod.ROLLING else ""
    return (
        f"{budget.account_id}/{budget.budget_id}: {'hard' if budget.hard else 'soft'} "
        f"{budget.metric.value.lower()} <= {budget.limit_value} per "
        f"{budget.period.value.lower()}{window}"
        f"{' ' + scope if scope else ''} thresholds={','.join(map(str, budget.thresholds))}%"
    )


def _verify(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        if not migrate.is_current(engine):
            print("metering: the database is not migrated to this version", file=sys.stderr)
            return 2
        with SqlDatabase(engine).read() as store:
            report = store.verify_ledger()
    finally:
        engine.dispose()
    print(
        f"checked {report.accounts_checked} accounts, {report.transactions_checked} transactions, "
        f"{report.entries_checked} entries, {report.usage_records_checked} usage records"
    )
    for (ledger_account, asset), total in sorted(report.system_balances.items()):
        print(f"system account {ledger_account} {asset}: {total}")
    for problem in report.problems:
        print(f"MISMATCH: {problem}")
    if report.problems:
        print(f"ledger verify FAILED: {len(report.problems)} problems")
        return 1
    print("ledger verify OK")
    return 0


def _serve_workers(settings: Settings, workers: int) -> int:
    """Run ``workers`` server processes on one port; the kernel balances connections.

    The parent prepares the database once (migrations, catalogue), picks the
    port, starts the workers with SO_REUSEPORT, forwards SIGTERM/SIGINT to
    them and exits when they have all stopped. Each worker has its own group
    commit; the database's row locks keep them correct together.
    """
    build_app(settings).close()
    host, port = settings.listen_host, settings.listen_port
    if port == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    command = [sys.executable, "-m", "metering", "serve", "--listen", listen]
    command += ["--database-url", settings.database_url]
    if settings.prices_file is not None:
        command += ["--prices-file", str(settings.prices_file)]
    env = {**os.environ, "METERING_REUSE_PORT": "1", "METERING_WORKERS": "1"}
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    ready = 0
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if "metering listening on" in line:
            ready += 1
    if ready != workers:
        forward(signal.SIGTERM, None)
        for child in children:
            child.wait()
        print(f"metering: only {ready} of {workers} workers started", file=sys.stderr)
        return 1
    print(
        f"metering listening on {listen} database={settings.database_dialect} workers={workers}",
        flush=True,
    )
    codes = []
    while children:
        for child in list(children):
            code = child.poll()
            if code is None:
                continue
            children.remove(child)
            codes.append(code)
            if code != 0 and not stopping:
                # A worker died on its own: stop the rest rather than serve at reduced capacity
                # without anyone noticing; the supervisor restarts the whole service.
                forward(signal.SIGTERM, None)
        time.sleep(0.1)
    print("metering stopped", flush=True)
    return 0 if all(code == 0 for code in codes) else 1


def _setup_telemetry(settings: Settings) -> telemetry.Telemetry:
    """OTLP and Prometheus exporters as configured (see metering.telemetry)."""
    try:
        exporting = telemetry.setup(
            otlp_endpoint=settings.otlp_endpoint,
            prometheus_host=settings.listen_host,
            prometheus_port=settings.prometheus_port,
        )
    except ImportError:
        raise StartupError(
            "METERING_PROMETHEUS_PORT needs the Prometheus exporter: "
            "pip install 'metering[prometheus]'"
        ) from None
    except OSError as exc:
        raise StartupError(
            f"METERING_PROMETHEUS_PORT={settings.prometheus_port}: "
            f"cannot listen on {settings.listen_host}: {exc.strerror}"
        ) from None
    for exporter in exporting.exporters:
        log.info("telemetry: exporting to %s", exporter)
    return exporting


def _tokens(settings: Settings, args: argparse.Namespace) -> int:
    """`metering tokens create|list|revoke`: tokens are hashed at rest, shown once."""
    from metering.bootstrap import SystemClock, prepare_database

    engine = make_engine(settings.database_url)
    try:
        prepare_database(settings, engine)
        admin = TokenAdmin(SqlDatabase(engine), SystemClock())
        if args.tokens_command == "create":
            info, token = admin.create(Role(args.role), args.tenant, args.name)
            print(
                f"created token {info.token_id} (role {info.role.value}, "
                f"tenant {info.tenant_id or '*'}); it is shown only now",
                file=sys.stderr,
            )
            print(token, flush=True)
        elif args.tokens_command == "list":
            print("TOKEN_ID\tROLE\tTENANT\tCREATED\tREVOKED\tNAME")
            for info in admin.list():
                revoked = _time_text(info.revoke_time_us) if info.revoke_time_us else "-"
                print(
                    f"{info.token_id}\t{info.role.value}\t{info.tenant_id or '*'}\t"
                    f"{_time_text(info.create_time_us)}\t{revoked}\t{info.name}"
                )
        else:
            admin.revoke(args.token_id)
            print(f"revoked {args.token_id} (every server refuses it within a second)")
    finally:
        engine.dispose()
    return 0


def _time_text(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, UTC).isoformat(timespec="seconds")


def _security(settings: Settings, app: App) -> dict[str, Any]:
    """The authentication interceptor and TLS credentials `start_server` takes."""
    from metering.api.auth import AuthInterceptor
    from metering.api.tls import server_credentials

    security = load_security_settings(os.environ, settings.listen_host)
    extra: dict[str, Any] = {}
    if security.auth == "token":
        authenticator = Authenticator(app.database)
        authenticator.refresh()
        if authenticator.token_count == 0:
            log.warning("METERING_AUTH=token but no tokens yet: see `metering tokens create`")
        extra["auth"] = AuthInterceptor(authenticator, AccountTenants(app.database), app.executor)
    elif not is_loopback(settings.listen_host):
        log.warning(
            "!!! SERVING WITHOUT AUTHENTICATION on %s (METERING_ALLOW_UNAUTHENTICATED=1): "
            "anyone who can reach this port can record usage and grant credits !!!",
            settings.listen,
        )
    if security.tls_cert_file is not None and security.tls_key_file is not None:
        extra["credentials"] = server_credentials(
            security.tls_cert_file, security.tls_key_file, security.tls_client_ca_file
        )
    log.info(
        "auth=%s tls=%s%s",
        security.auth,
        "on" if security.tls else "off",
        " (client certificates required)" if security.tls_client_ca_file else "",
    )
    return extra


def _rate_limit(settings: Settings) -> Any:
    """The per-caller rate limit interceptor `start_server` takes (limits are per process)."""
    from metering.api.ratelimit import Limit, RateLimiter, RateLimitInterceptor

    limits = {
        "estimate": Limit(
            settings.rate_limit_estimate_per_second, settings.rate_limit_estimate_burst
        ),
        "summary": Limit(settings.rate_limit_summary_per_second, settings.rate_limit_summary_burst),
        "import": Limit(settings.rate_limit_import_per_second, settings.rate_limit_import_burst),
    }
    log.info(
        "rate limits per caller and process: %s",
        ", ".join(f"{group}={limit}" for group, limit in limits.items()),
    )
    return RateLimitInterceptor(RateLimiter(limits, settings.rate_limit_max_callers))


def _freeze_heap(_done: object) -> None:
    """Move every object alive after start-up to the collector's permanent generation.

    Modules, protobuf descriptors, SQLAlchemy metadata, price books and
    vocabularies live as long as the process; leaving them tracked made each
    full collection scan them: pauses of 45-70 ms every few seconds under load,
    which were the p99 of RecordUsage (measured with gc.callbacks).
    """
    gc.collect()
    gc.freeze()


def _serve(settings: Settings) -> int:
    from metering.api.server import start_server  # grpc only for the serving command

    exporting = _setup_telemetry(settings)
    app = build_app(settings)
    telemetry.watch_pool(app.engine)

    async def run() -> None:
        running = await start_server(
            app.metering,
            app.price_admin,
            app.executor,
            settings.listen,
            settings.max_message_bytes,
            app.database.ping,
            settings.group_commit_linger_ms / 1000,
            settings.group_commit_records_max,
            settings.reuse_port,
            **_security(settings, app),
            rate_limit=_rate_limit(settings),
            sweep_seconds=settings.reservation_sweep_ms / 1000,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Off the request path: the vocabularies load while the server already answers;
        # then what start-up built is left out of garbage collection (_freeze_heap).
        loop.run_in_executor(app.executor, warm_up).add_done_callback(_freeze_heap)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host = settings.listen.rsplit(":", 1)[0]
        # Tests and scripts read the port from this line (listen on port 0 picks a free one).
        print(
            f"metering listening on {host}:{running.port} "
            f"database={settings.database_dialect} prices={len(app.price_book())}",
            flush=True,
        )
        await stop.wait()
        log.info(
            "shutting down: finishing in-flight calls (grace %.0fs)",
            settings.shutdown_grace_seconds,
        )
        await running.stop(settings.shutdown_grace_seconds)

    try:
        asyncio.run(run())
    finally:
        app.close()
        exporting.shutdown()  # flushes the last spans and metrics
    print("metering stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
