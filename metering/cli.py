"""The `metering` command: serve, migrate, prices, budgets, usage export, review, ledger."""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
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
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import OperationalError

from metering import __version__, telemetry
from metering.bootstrap import App, StartupError, build_app, build_writer, writer_in_process
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
from metering.domain.exports import ExportTotals, RecordView
from metering.domain.missing import DEFAULT_POLICY, Fallback, MissingUsagePolicy
from metering.domain.money import decimal_text, parse_decimal_to_nanos
from metering.domain.reconcile import Line, Tally
from metering.domain.summary import Aggregate
from metering.domain.upstream import UpstreamFormat
from metering.domain.usage import TOKEN_FIELDS
from metering.service.auth import AccountTenants, Authenticator, TokenAdmin
from metering.service.exports import ExportKind, ExportQuery, ReviewQuery
from metering.service.group_commit import BatchWriter
from metering.service.prices import import_prices, read_price_file
from metering.service.reconcile import ReconcileOptions, Reconciler
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

    policies = commands.add_parser(
        "policies", help="how calls without usage are recorded and charged (missing usage)"
    )
    policy_commands = policies.add_subparsers(dest="policies_command", required=True)
    policy_set = policy_commands.add_parser("set", help="create or replace a scope's policy")
    policy_set.add_argument("--account", default="", help="scope: this account (default any)")
    policy_set.add_argument("--provider", default="", help="scope: this provider (default any)")
    policy_set.add_argument("--model", default="", help="scope: this model (default any)")
    policy_set.add_argument(
        "--fallback", choices=["none", "flat_fee", "reservation"], default="reservation"
    )
    policy_set.add_argument("--fee", default="", help="flat fee per call in units, e.g. 0.002")
    policy_set.add_argument("--currency", default="USD", help="the fee's currency")
    policy_set.add_argument(
        "--no-estimate", action="store_true", help="record MISSING even when texts were sent"
    )
    database_flag(policy_set)
    database_flag(policy_commands.add_parser("list", help="every policy, most specific first"))
    policy_delete = policy_commands.add_parser("delete", help="remove a scope's policy")
    policy_delete.add_argument("--account", default="")
    policy_delete.add_argument("--provider", default="")
    policy_delete.add_argument("--model", default="")
    database_flag(policy_delete)

    budgets = commands.add_parser("budgets", help="usage limits per account, API key and model")
    budget_commands = budgets.add_subparsers(dest="budgets_command", required=True)
    budget_set = budget_commands.add_parser("set", help="create or replace a budget")
    budget_set.add_argument("account_id")
    budget_set.add_argument("budget_id")
    budget_set.add_argument("--period", choices=["day", "month", "rolling"], required=True)
    budget_set.add_argument("--window-seconds", type=int, default=0, help="for rolling budgets")
    budget_set.add_argument(
        "--metric", choices=["cost", "tokens", "requests", "balance_floor"], required=True
    )
    budget_set.add_argument(
        "--limit",
        type=int,
        required=True,
        help="nanos for cost and balance_floor, else tokens or requests",
    )
    budget_set.add_argument("--soft", action="store_true", help="warn instead of deny")
    budget_set.add_argument("--api-key", default="", help="only this API key's usage")
    budget_set.add_argument("--model", default="", help="only this model's usage")
    budget_set.add_argument("--thresholds", default="50,80,100", help="percents that emit events")
    database_flag(budget_set)
    budget_list = budget_commands.add_parser("list", help="an account's budgets")
    budget_list.add_argument("account_id")
    database_flag(budget_list)

    reconcile = commands.add_parser(
        "reconcile",
        help="compare an upstream export with the local records (dry run unless --apply)",
    )
    reconcile.add_argument("file", help="the provider's export (see docs/upstream-formats.md)")
    reconcile.add_argument(
        "--format",
        choices=[f.value.lower() for f in UpstreamFormat],
        help="the export's format (default: detect)",
    )
    reconcile.add_argument("--provider", default="", help="default: the export's")
    reconcile.add_argument("--account", default="", help="compare and charge only this account")
    reconcile.add_argument(
        "--key-map",
        action="append",
        default=[],
        metavar="UPSTREAM=LOCAL",
        help="an upstream key or project named differently locally (repeatable)",
    )
    reconcile.add_argument("--token-tolerance", type=int, default=0, help="tokens per line")
    reconcile.add_argument(
        "--cost-tolerance", default="0", help="cost per line, in currency units (e.g. 0.001)"
    )
    reconcile.add_argument("--from", dest="start_day", default="", help="first day, YYYY-MM-DD")
    reconcile.add_argument("--to", dest="end_day", default="", help="day after the last")
    reconcile.add_argument(
        "--output", choices=("table", "csv", "json"), default="table", help="report format"
    )
    reconcile.add_argument(
        "--tokens-only",
        action="store_true",
        help="compare tokens and calls, not cost (accounts billed with a markup)",
    )
    reconcile.add_argument("--apply", action="store_true", help="write the corrections")
    database_flag(reconcile)
    usage = commands.add_parser("usage", help="recorded usage")
    usage_commands = usage.add_subparsers(dest="usage_command", required=True)
    exported = usage_commands.add_parser(
        "export",
        help="stream a range's usage records or daily summary rows; totals go to stderr",
    )
    exported.add_argument("--start", required=True, help="RFC 3339, inclusive (event time)")
    exported.add_argument("--end", required=True, help="RFC 3339, exclusive")
    exported.add_argument("--account", default="", help="only this account")
    exported.add_argument("--kind", choices=["records", "summary"], default="records")
    exported.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    exported.add_argument("--time-zone", default="", help="IANA zone of summary days (UTC)")
    exported.add_argument("--output", help="write to this file instead of stdout")
    database_flag(exported)

    review = commands.add_parser("review", help="calls whose usage needs a later figure")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    review_list = review_commands.add_parser(
        "list", help="MISSING calls, and ESTIMATED ones of accounts estimating often; oldest first"
    )
    review_list.add_argument("--start", required=True, help="RFC 3339, inclusive (event time)")
    review_list.add_argument("--end", required=True, help="RFC 3339, exclusive")
    review_list.add_argument("--account", default="", help="only this account")
    review_list.add_argument(
        "--estimated-share-min",
        default="0",
        help="list ESTIMATED calls of accounts whose estimated share of calls is at least "
        "this percent (0-100, up to two decimals; default 0: every estimated call)",
    )
    review_list.add_argument(
        "--limit", type=int, default=1000, help=f"at most this many (1-{_REVIEW_LIMIT_MAX})"
    )
    review_list.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    database_flag(review_list)

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
        if args.command == "policies":
            return _policies(settings, args)
        if args.command == "budgets":
            return _budgets(settings, args)
        if args.command == "reconcile":
            return _reconcile(settings, args)
        if args.command == "usage":
            return _usage_export(settings, args)
        if args.command == "review":
            return _review_list(settings, args)
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


_REPORT_COLUMNS = (
    "kind",
    "day",
    "model",
    "api_key_id",
    "request_id",
    "account_id",
    "local_requests",
    "upstream_requests",
    "local_input_tokens",
    "upstream_input_tokens",
    "local_output_tokens",
    "upstream_output_tokens",
    "local_cache_read_tokens",
    "upstream_cache_read_tokens",
    "local_cost",
    "upstream_cost",
    "cost_difference",
    "currency",
    "applied",
    "problem",
)


def _report_row(line: Line) -> dict[str, str]:
    local, upstream = line.local, line.upstream
    currency = (upstream and upstream.currency_code) or (local and local.currency_code) or ""

    def amount(nanos: int | None) -> str:
        return "" if nanos is None else decimal_text(nanos)

    def count(tally: Tally | None, name: str) -> str:
        if tally is None:
            return ""
        if name == "requests":
            return "" if tally.request_count is None else str(tally.request_count)
        return str(getattr(tally.usage, name))

    return {
        "kind": line.kind.value,
        "day": line.key.day,
        "model": line.model,
        "api_key_id": line.key.api_key_id,
        "request_id": line.key.request_id,
        "account_id": line.account_id,
        "local_requests": count(local, "requests"),
        "upstream_requests": count(upstream, "requests"),
        "local_input_tokens": count(local, "input_tokens"),
        "upstream_input_tokens": count(upstream, "input_tokens"),
        "local_output_tokens": count(local, "output_tokens"),
        "upstream_output_tokens": count(upstream, "output_tokens"),
        "local_cache_read_tokens": count(local, "cache_read_tokens"),
        "upstream_cache_read_tokens": count(upstream, "cache_read_tokens"),
        "local_cost": amount(local.cost_nanos if local else None),
        "upstream_cost": amount(upstream.cost_nanos if upstream else None),
        "cost_difference": amount(line.cost_difference_nanos),
        "currency": currency,
        "applied": "yes" if line.applied else "",
        "problem": line.problem,
    }


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    key_map: dict[str, str] = {}
    for item in args.key_map:
        upstream_key, sep, local_key = item.partition("=")
        if not sep or not upstream_key:
            raise ValueError(f"--key-map {item!r}: use UPSTREAM=LOCAL")
        key_map[upstream_key] = local_key
    options = ReconcileOptions(
        provider=args.provider,
        account_id=args.account,
        key_map=key_map,
        token_tolerance=args.token_tolerance,
        cost_tolerance_nanos=parse_decimal_to_nanos(args.cost_tolerance),
        apply=args.apply,
        start_day=args.start_day,
        end_day=args.end_day,
        tokens_only=args.tokens_only,
    )
    data = Path(args.file).read_bytes()
    fmt = UpstreamFormat(args.format.upper()) if args.format else None
    app = build_app(settings)
    try:
        report = Reconciler(app.metering).reconcile(data, fmt, options)
    finally:
        app.close()
    rows = [_report_row(line) for line in report.lines]
    if args.output == "json":
        print(
            json.dumps(
                {
                    "import_id": report.import_id,
                    "format": report.format.value,
                    "provider": report.provider,
                    "upstream_rows": report.upstream_row_count,
                    "matched": report.matched_count,
                    "discrepancies": report.discrepancy_count,
                    "applied": report.applied_count,
                    "lines": rows,
                },
                indent=2,
            )
        )
    elif args.output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=_REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        shown = (
            "kind",
            "day",
            "model",
            "api_key_id",
            "request_id",
            "local_requests",
            "upstream_requests",
            "local_input_tokens",
            "upstream_input_tokens",
            "local_output_tokens",
            "upstream_output_tokens",
            "local_cost",
            "upstream_cost",
            "cost_difference",
            "applied",
        )
        widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in shown}
        print("  ".join(c.ljust(widths[c]) for c in shown))
        for row in rows:
            print("  ".join(row[c].ljust(widths[c]) for c in shown))
            if row["problem"]:
                print(f"    problem: {row['problem']}")
    summary = (
        f"import {report.import_id[:16]} ({report.format.value}, {report.provider or 'any'}): "
        f"{report.upstream_row_count} upstream rows, {len(report.lines)} lines, "
        f"{report.matched_count} matched, {report.discrepancy_count} discrepancies"
    )
    if args.apply:
        summary += f", {report.applied_count} corrections written"
    else:
        summary += "; dry run: nothing written (use --apply)"
    print(summary, file=sys.stderr if args.output != "table" else sys.stdout)
    problems = [line for line in report.lines if line.problem]
    return 1 if problems else 0


_REVIEW_LIMIT_MAX = 1_000_000
_RECORD_COLUMNS = (
    "event_time",
    "account_id",
    "record_id",
    "request_id",
    "record_kind",
    "corrects_record_id",
    "usage_source",
    "corrected",
    "provider",
    "model",
    "api_key_id",
    "service",
    "request_count",
    *TOKEN_FIELDS,
    "currency_code",
    "cost",
    "cost_nanos",
    "request_credits",
    "price_id",
    "price_version",
    "unpriced",
    "streamed",
    "record_time",
    "transaction_id",
    "labels",
)
_SUMMARY_COLUMNS = (
    "day",
    "account_id",
    "model",
    "usage_source",
    "currency_code",
    "request_count",
    "unpriced_request_count",
    *TOKEN_FIELDS,
    "cost",
    "cost_nanos",
    "request_credits",
)


def _time_rfc3339(time_us: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=time_us)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _record_fields(view: RecordView) -> dict[str, Any]:
    """A record as an export row: money as an exact decimal string and integer nanos."""
    record = view.record
    return {
        "event_time": _time_rfc3339(record.event_time_us),
        "account_id": record.account_id,
        "record_id": record.record_id,
        "request_id": record.request_id,
        "record_kind": record.record_kind,
        "corrects_record_id": record.corrects_record_id or "",
        "usage_source": record.usage_source.value,
        "corrected": view.corrected,
        "provider": record.provider,
        "model": record.model,
        "api_key_id": record.api_key_id,
        "service": record.service,
        "request_count": record.request_count,
        **{name: getattr(record.usage, name) for name in TOKEN_FIELDS},
        "currency_code": record.currency_code,
        "cost": decimal_text(record.cost_nanos),
        "cost_nanos": record.cost_nanos,
        "request_credits": record.request_credits,
        "price_id": record.price_id,
        "price_version": record.price_version,
        "unpriced": record.unpriced,
        "streamed": record.streamed,
        "record_time": _time_rfc3339(record.record_time_us),
        "transaction_id": record.transaction_id,
        "labels": record.labels,
    }


def _summary_fields(row: Aggregate) -> dict[str, Any]:
    account_id, model, source = row.keys
    return {
        "day": _time_rfc3339(row.start_us),
        "account_id": account_id,
        "model": model,
        "usage_source": source,
        "currency_code": row.currency_code,
        "request_count": row.request_count,
        "unpriced_request_count": row.unpriced_request_count,
        **{name: getattr(row, name) for name in TOKEN_FIELDS},
        "cost": decimal_text(row.cost_nanos),
        "cost_nanos": row.cost_nanos,
        "request_credits": row.request_credits,
    }


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


class _RowWriter:
    """Rows as CSV with a header, or as JSON lines; each row written as it comes."""

    def __init__(self, out: TextIO, fmt: str, columns: Sequence[str]) -> None:
        self._out = out
        self._fmt = fmt
        self._columns = columns
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(columns)

    def write(self, fields: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([_csv_value(fields[name]) for name in self._columns])
        else:
            self._out.write(json.dumps(fields, separators=(",", ":")) + "\n")


def _totals_fields(totals: ExportTotals) -> dict[str, Any]:
    return {
        "row_count": totals.row_count,
        "request_count": totals.request_count,
        "cost": [
            {"currency_code": code, "amount": decimal_text(nanos), "nanos": nanos}
            for code, nanos in sorted(totals.cost_nanos.items())
        ],
        "request_credits": totals.request_credits,
        **totals.tokens,
    }


def _usage_export(settings: Settings, args: argparse.Namespace) -> int:
    query = ExportQuery(
        start_us=_time_us(args.start, "--start"),
        end_us=_time_us(args.end, "--end"),
        account_id=args.account,
        kind=ExportKind(args.kind.upper()),
        time_zone=args.time_zone,
    )
    app = build_app(settings)
    try:
        run = app.exports.export(query)  # validates before anything is written
        out = (
            open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
            if args.output
            else sys.stdout
        )
        try:
            columns = _SUMMARY_COLUMNS if run.kind is ExportKind.SUMMARY else _RECORD_COLUMNS
            writer = _RowWriter(out, args.format, columns)
            for page in run.pages:
                for view in page.records:
                    writer.write(_record_fields(view))
                for row in page.rows:
                    writer.write(_summary_fields(row))
            totals = _totals_fields(run.totals)
            if args.format == "jsonl":
                out.write(json.dumps({"totals": totals}, separators=(",", ":")) + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
    finally:
        app.close()
    costs = ", ".join(
        f"{c['currency_code']} {c['amount']} ({c['nanos']} nanos)" for c in totals["cost"]
    )
    tokens = " ".join(f"{name}={totals[name]}" for name in TOKEN_FIELDS)
    print(
        f"exported {totals['row_count']} rows, {totals['request_count']} requests; "
        f"cost {costs or 'none'}; request credits {totals['request_credits']}; {tokens}",
        file=sys.stderr,
    )
    return 0


def _basis_points(text: str, flag: str) -> int:
    try:
        percent = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{flag} {text!r}: a percent such as 25 or 12.5") from None
    points = percent * 100
    if not percent.is_finite() or points != points.to_integral_value() or not 0 <= points <= 10000:
        raise ValueError(f"{flag} {text!r}: a percent from 0 to 100 with at most two decimals")
    return int(points)


def _review_list(settings: Settings, args: argparse.Namespace) -> int:
    start_us, end_us = _time_us(args.start, "--start"), _time_us(args.end, "--end")
    share = _basis_points(args.estimated_share_min, "--estimated-share-min")
    if not 1 <= args.limit <= _REVIEW_LIMIT_MAX:
        raise ValueError(f"--limit must be in [1, {_REVIEW_LIMIT_MAX}]")
    columns = (
        "event_time",
        "account_id",
        "record_id",
        "request_id",
        "usage_source",
        "provider",
        "model",
        "api_key_id",
        "currency_code",
        "cost",
        "cost_nanos",
    )
    app = build_app(settings)
    listed, token = 0, ""
    try:
        writer = _RowWriter(sys.stdout, args.format, columns) if args.format != "table" else None
        if writer is None:
            print(
                f"{'EVENT TIME':<27} {'ACCOUNT':<20} {'SOURCE':<9} {'MODEL':<24} "
                f"{'COST':>14}  REQUEST ID"
            )
        while True:
            records, token = app.exports.review_records(
                ReviewQuery(
                    start_us=start_us,
                    end_us=end_us,
                    account_id=args.account,
                    estimated_share_min_bps=share,
                    page_size=min(args.limit - listed, 1000),
                    page_token=token,
                )
            )
            for record in records:
                fields = _record_fields(RecordView(record))
                if writer is not None:
                    writer.write({name: fields[name] for name in columns})
                else:
                    print(
                        f"{fields['event_time']:<27} {record.account_id:<20} "
                        f"{fields['usage_source']:<9} {record.model:<24} "
                        f"{fields['cost'] + ' ' + record.currency_code:>14}  {record.request_id}"
                    )
            listed += len(records)
            if not token or listed >= args.limit:
                break
    finally:
        app.close()
    more = "; more remain (raise --limit)" if token else ""
    print(f"{listed} records to review{more}", file=sys.stderr)
    return 0


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


def _policies(settings: Settings, args: argparse.Namespace) -> int:
    app = build_app(settings)
    try:
        command = args.policies_command
        if command == "set":
            policy = app.metering.set_missing_usage_policy(
                MissingUsagePolicy(
                    account_id=args.account,
                    provider=args.provider,
                    model=args.model,
                    estimate_disabled=args.no_estimate,
                    fallback=Fallback(args.fallback.upper()),
                    flat_fee_nanos=parse_decimal_to_nanos(args.fee) if args.fee else 0,
                    currency_code=args.currency.upper(),
                )
            )
            print(f"set {_describe_policy(policy)}")
        elif command == "list":
            for policy in app.metering.list_missing_usage_policies():
                print(_describe_policy(policy))
            print(f"default: {_describe_policy(DEFAULT_POLICY)}")
        else:
            app.metering.delete_missing_usage_policy(args.account, args.provider, args.model)
            print("deleted")
    finally:
        app.close()
    return 0


def _describe_policy(policy: MissingUsagePolicy) -> str:
    scope = "/".join(part or "*" for part in policy.scope)
    fee = (
        f" {decimal_text(policy.flat_fee_nanos)} {policy.currency_code}"
        if policy.fallback is Fallback.FLAT_FEE
        else ""
    )
    estimate = "never estimate" if policy.estimate_disabled else "estimate from texts"
    return f"{scope}: {estimate}; missing -> {policy.fallback.value.lower()}{fee}"


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


def _writer(settings: Settings) -> BatchWriter | None:
    """The group commit's writer: a child process unless asked for a thread, or unless
    the database is in memory (only this process can see it)."""
    if not writer_in_process(settings):
        return None
    from metering.service.writer_process import ProcessWriter

    return ProcessWriter(functools.partial(build_writer, settings))


def _serve(settings: Settings) -> int:
    from metering.api.server import start_server  # grpc only for the serving command

    exporting = _setup_telemetry(settings)
    app = build_app(settings, background_checkpoints=not writer_in_process(settings))
    telemetry.watch_pool(app.engine)

    telemetry.configure_unmeasured_share(settings.unmeasured_warn_percent)

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
            exports=app.exports,
            writer=_writer(settings),
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
