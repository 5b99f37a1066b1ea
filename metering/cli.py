"""The `metering` command: serve, migrate, ledger verify."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from metering import __version__
from metering.bootstrap import StartupError, build_app
from metering.config import ConfigError, Settings, load_settings
from metering.domain.catalogue import CatalogueError
from metering.domain.errors import MeteringError
from metering.storage import migrate
from metering.storage.engine import make_engine
from metering.storage.store import SqlDatabase

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

    migrate_cmd = commands.add_parser("migrate", help="upgrade the database schema")
    database_flag(migrate_cmd)

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser("verify", help="check balances against entries")
    database_flag(verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            listen=getattr(args, "listen", None),
            database_url=args.database_url,
            prices_file=getattr(args, "prices_file", None),
        )
    except ConfigError as exc:
        print(f"metering: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "serve":
            return _serve(settings)
        if args.command == "migrate":
            return _migrate(settings)
        return _verify(settings)
    except (StartupError, CatalogueError, MeteringError) as exc:
        print(f"metering: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(
            f"metering: cannot use the database: {str(exc.orig).strip().splitlines()[0]}",
            file=sys.stderr,
        )
        return 2


def _migrate(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        print(f"database migrated: {before or 'empty'} -> {migrate.current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


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


def _serve(settings: Settings) -> int:
    from metering.api.server import start_server  # grpc only for the serving command

    app = build_app(settings)

    async def run() -> None:
        running = await start_server(
            app.metering,
            app.executor,
            settings.listen,
            settings.max_message_bytes,
            app.database.ping,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host = settings.listen.rsplit(":", 1)[0]
        # Tests and scripts read the port from this line (listen on port 0 picks a free one).
        print(
            f"metering listening on {host}:{running.port} "
            f"database={settings.database_dialect} prices={len(app.price_book)}",
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
    print("metering stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
