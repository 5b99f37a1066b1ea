"""Reconciliation against the upstream bill: read an export, compare, report, apply.

Lines are UTC day x model x key; where the export names requests, the calls
of that day, model and key are compared one by one. Models are compared by
their price id, so that "gpt-4o-mini-2024-07-18" upstream meets the
"gpt-4o-mini" a relay recorded. Applying writes, per line:

* UPSTREAM_ONLY (a call the relay never reported): a new usage record of the
  upstream figures, at the start of its day, charged the upstream cost where
  the export has one;
* TOKENS / COST on a request: a correction of that call (CorrectUsage);
* TOKENS / COST on a day x model x key: one adjustment of the difference;
* LOCAL_ONLY is reported, never removed: an export can be partial, and a
  call that reached the relay is evidence of its own.

Every write's idempotency key names the import (the sha-256 of its bytes)
and the line, so applying the same export again writes nothing; and after a
run the lines match, so a second run finds nothing to apply either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date

from metering.domain.accounts import BillingMode, charge_for
from metering.domain.errors import MeteringError, Violations
from metering.domain.pricing import PriceBook
from metering.domain.reconcile import Kind, Line, LineKey, Tally, compare_line, token_difference
from metering.domain.records import net_of
from metering.domain.upstream import UpstreamFormat, UpstreamRow, parse_export
from metering.domain.usage import TokenUsage
from metering.service import validation as val
from metering.service.commands import CorrectUsage, RecordUsage
from metering.service.corrections import Adjustment, append_adjustment
from metering.service.handlers import Metering
from metering.service.ports import Clock, Database

DAY_US = 86_400_000_000
# The range a reconciliation may span, and the calls it compares one by one.
DAYS_MAX = 400
CALLS_MAX = 1_000_000
KEY_MAP_ENTRIES_MAX = 10_000
TOLERANCE_MAX = 10**15


@dataclass(frozen=True)
class ReconcileOptions:
    provider: str = ""
    account_id: str = ""
    key_map: dict[str, str] = field(default_factory=dict)
    token_tolerance: int = 0
    cost_tolerance_nanos: int = 0
    apply: bool = False
    start_day: str = ""
    end_day: str = ""
    # Compare tokens and calls only: the account's charge includes a markup.
    tokens_only: bool = False


@dataclass
class ReconcileReport:
    import_id: str
    format: UpstreamFormat
    provider: str
    lines: list[Line]
    upstream_row_count: int
    applied_count: int = 0

    @property
    def matched_count(self) -> int:
        return sum(1 for line in self.lines if line.kind is Kind.MATCHED)

    @property
    def discrepancy_count(self) -> int:
        return len(self.lines) - self.matched_count


class Reconciler:
    def __init__(self, metering: Metering) -> None:
        self._db: Database = metering.database
        self._prices: Callable[[], PriceBook] = metering.prices
        self._clock: Clock = metering.clock
        self._metering = metering

    def reconcile(
        self, data: bytes, fmt: UpstreamFormat | None, options: ReconcileOptions
    ) -> ReconcileReport:
        """Compare an export with the local records; apply the differences when asked."""
        _check(options)
        export = parse_export(data, fmt)
        import_id = hashlib.sha256(data).hexdigest()
        provider = (options.provider or export.provider).lower()
        rows = [
            row
            for row in export.rows
            if (not options.start_day or row.day >= options.start_day)
            and (not options.end_day or row.day < options.end_day)
        ]
        first_day = options.start_day or min((r.day for r in rows), default="")
        last_day = options.end_day or _next_day(max((r.day for r in rows), default=""))
        report = ReconcileReport(import_id, export.format, provider, [], len(export.rows))
        if not first_day or not last_day:
            return report
        start_us, end_us = _day_start_us(first_day), _day_start_us(last_day)
        if end_us - start_us > DAYS_MAX * DAY_US:
            v = Violations()
            v.add("start_day", f"the range must be at most {DAYS_MAX} days")
            v.raise_if_any()
        account = options.account_id or None
        book = self._prices()
        canonical = _Canonical(book, provider, self._clock.now_us())
        compare_tokens = any(r.usage != TokenUsage() for r in rows)
        compare_cost = not options.tokens_only and any(r.cost_nanos is not None for r in rows)
        upstream: dict[LineKey, tuple[Tally, str]] = {}
        per_request_cells: set[LineKey] = set()
        if options.tokens_only:
            rows = [replace(row, cost_nanos=None, currency_code=None) for row in rows]
        for row in rows:
            key_id = options.key_map.get(row.key, row.key)
            line_key = LineKey(row.day, canonical(row.model), key_id, row.request_id)
            upstream[line_key] = _merge(upstream.get(line_key), row)
            if row.request_id:
                per_request_cells.add(LineKey(row.day, line_key.model, key_id))
        local: dict[LineKey, tuple[Tally, str, str]] = {}
        with self._db.read() as store:
            for tally in store.usage_tallies(start_us, end_us, provider, account):
                day = _day_text(tally.day_index)
                line_key = LineKey(day, canonical(tally.model), tally.api_key_id)
                if line_key in per_request_cells:
                    continue  # compared call by call below
                local[line_key] = _add_local(
                    local.get(line_key),
                    Tally(tally.request_count, tally.usage, tally.cost_nanos, tally.currency_code),
                    tally.account_id,
                    tally.model,
                )
            if per_request_cells:
                calls = store.calls_between(start_us, end_us, provider, account, CALLS_MAX)
                by_account: dict[str, list[str]] = {}
                chosen = []
                for call in calls:
                    day = _day_text(call.event_time_us // DAY_US)
                    cell = LineKey(day, canonical(call.model), call.api_key_id)
                    if cell in per_request_cells:
                        chosen.append((cell, call))
                        by_account.setdefault(call.account_id, []).append(call.record_id)
                adjustments = {
                    owner: store.adjustments_of(owner, ids) for owner, ids in by_account.items()
                }
                for cell, call in chosen:
                    net = net_of(call, adjustments[call.account_id].get(call.record_id, []))
                    line_key = LineKey(cell.day, cell.model, cell.api_key_id, call.request_id)
                    local[line_key] = (
                        Tally(1, net.usage, net.cost_nanos, call.currency_code),
                        call.account_id,
                        call.model,
                    )
            missing_keys = sorted(
                {k.api_key_id for k in upstream if k not in local and not account}
            )
            owners = store.accounts_of_keys(missing_keys) if missing_keys else {}
        for line_key in sorted(set(upstream) | set(local), key=_sort_key):
            up = upstream.get(line_key)
            here = local.get(line_key)
            kind, difference = compare_line(
                here[0] if here else None,
                up[0] if up else None,
                compare_tokens=compare_tokens,
                compare_cost=compare_cost,
                token_tolerance=options.token_tolerance,
                cost_tolerance_nanos=options.cost_tolerance_nanos,
            )
            owner = here[1] if here else (account or owners.get(line_key.api_key_id, ""))
            report.lines.append(
                Line(
                    kind=kind,
                    key=line_key,
                    model=up[1] if up else (here[2] if here else line_key.model),
                    account_id=owner,
                    local=here[0] if here else None,
                    upstream=up[0] if up else None,
                    cost_difference_nanos=difference,
                )
            )
        for line in report.lines:
            # Without an upstream cost, the report shows what apply would charge: the
            # difference at the price in force that day.
            if (
                line.cost_difference_nanos is None
                and line.account_id
                and line.upstream
                and line.kind in (Kind.TOKENS, Kind.UPSTREAM_ONLY)
            ):
                line.cost_difference_nanos = self._priced_difference(line, provider)
        report.lines.sort(key=lambda line: (line.kind is Kind.MATCHED, _sort_key(line.key)))
        if options.apply:
            for line in report.lines:
                if line.kind not in (Kind.MATCHED, Kind.LOCAL_ONLY):
                    self._apply(report, line, provider, compare_cost)
        return report

    def _apply(self, report: ReconcileReport, line: Line, provider: str, with_cost: bool) -> None:
        if not line.account_id:
            line.problem = "no account: no local call used this key; pass account_id or key_map"
            return
        digest = hashlib.sha256(
            "\x1f".join(
                (line.key.day, line.key.model, line.key.api_key_id, line.key.request_id)
            ).encode()
        ).hexdigest()[:24]
        key = f"reconcile:{report.import_id[:32]}:{digest}"
        labels = {"reconcile_import": report.import_id[:32]}
        try:
            if line.kind is Kind.UPSTREAM_ONLY:
                written = self._record_lost_call(line, key, provider, labels, with_cost)
            elif line.key.request_id:
                written = self._correct_call(line, key, with_cost)
            else:
                written = self._adjust_cell(line, key, provider, labels, with_cost)
        except MeteringError as exc:
            line.problem = str(exc)
            return
        line.applied = True
        if written:
            report.applied_count += 1

    def _record_lost_call(
        self, line: Line, key: str, provider: str, labels: dict[str, str], with_cost: bool
    ) -> bool:
        assert line.upstream is not None
        usage = line.upstream.usage
        if line.upstream.request_count is not None and line.upstream.request_count > 1:
            labels = {**labels, "upstream_requests": str(line.upstream.request_count)}
        # Under the provider's request id where the export names one: a later run meets
        # it as the same call, and a late report of it from the relay cannot count twice.
        request_id = line.key.request_id or key
        result = self._metering.record_usage(
            RecordUsage(
                account_id=line.account_id,
                request_id=request_id,
                model=line.model,
                provider=provider,
                usage=usage,
                api_key_id=line.key.api_key_id,
                event_time_us=_day_start_us(line.key.day),
                labels=labels,
            )
        )
        written = not result.replayed
        if with_cost and line.upstream.cost_nanos is not None:
            correction = self._metering.corrections.correct_usage(
                CorrectUsage(
                    account_id=line.account_id,
                    request_id=request_id,
                    usage=usage,
                    cost_nanos=line.upstream.cost_nanos,
                    cost_currency_code=line.upstream.currency_code or "",
                    correction_id=f"{key}:cost",
                    reason=f"reconcile {key}: upstream cost",
                )
            )
            written = written or not correction.replayed
        return written

    def _correct_call(self, line: Line, key: str, with_cost: bool) -> bool:
        assert line.upstream is not None and line.local is not None
        cost = line.upstream.cost_nanos if with_cost else None
        result = self._metering.corrections.correct_usage(
            CorrectUsage(
                account_id=line.account_id,
                request_id=line.key.request_id,
                usage=line.upstream.usage if line.kind is Kind.TOKENS else line.local.usage,
                cost_nanos=cost,
                cost_currency_code=(line.upstream.currency_code or "") if cost is not None else "",
                correction_id=key,
                reason=f"reconcile {key}",
            )
        )
        return not result.replayed

    def _adjust_cell(
        self, line: Line, key: str, provider: str, labels: dict[str, str], with_cost: bool
    ) -> bool:
        assert line.upstream is not None and line.local is not None
        tokens = (
            token_difference(line.local.usage, line.upstream.usage)
            if line.kind is Kind.TOKENS
            else TokenUsage()
        )
        if with_cost and line.cost_difference_nanos is not None:
            cost = line.cost_difference_nanos
        else:
            cost = self._priced_difference(line, provider)
        calls = 0
        if line.upstream.request_count is not None and line.local.request_count is not None:
            calls = line.upstream.request_count - line.local.request_count
        return append_adjustment(
            self._db,
            self._clock,
            Adjustment(
                account_id=line.account_id,
                key=key,
                event_time_us=_day_start_us(line.key.day),
                provider=provider,
                model=line.model,
                api_key_id=line.key.api_key_id,
                usage_difference=tokens,
                request_count_difference=calls,
                cost_difference_nanos=cost,
                currency_code=line.local.currency_code or "USD",
                reason=f"reconcile {key}",
                labels=labels,
            ),
        )

    def _priced_difference(self, line: Line, provider: str) -> int:
        """The token difference at the price in force that day (the export has no cost)."""
        assert line.upstream is not None
        with self._db.read() as store:
            account = store.get_account(line.account_id)
        if account is None:
            return 0
        price = self._prices().find(
            provider,
            line.model,
            account.currency_code,
            _day_start_us(line.key.day),
            account.account_id,
        )
        mode = BillingMode.TOKEN
        upstream = charge_for(account, mode, price, line.upstream.usage).cost_nanos
        here = 0
        if line.local is not None:
            here = charge_for(account, mode, price, line.local.usage).cost_nanos
        return upstream - here


class _Canonical:
    """A model's comparison name: its price id where the price book knows it."""

    def __init__(self, book: PriceBook, provider: str, now_us: int) -> None:
        self._book = book
        self._provider = provider
        self._cache: dict[str, str] = {}
        self._now_us = now_us

    def __call__(self, model: str) -> str:
        if model not in self._cache:
            try:
                price = self._book.find(self._provider, model, "USD", self._now_us)
            except MeteringError:
                price = None
            self._cache[model] = price.price_id if price is not None else model
        return self._cache[model]


def _merge(previous: tuple[Tally, str] | None, row: UpstreamRow) -> tuple[Tally, str]:
    tally = Tally(row.request_count, row.usage, row.cost_nanos, row.currency_code)
    if previous is None:
        return tally, row.model
    return _sum(previous[0], tally), previous[1]


def _add_local(
    previous: tuple[Tally, str, str] | None, tally: Tally, account_id: str, model: str
) -> tuple[Tally, str, str]:
    if previous is None:
        return tally, account_id, model
    return _sum(previous[0], tally), previous[1], previous[2]


def _sum(a: Tally, b: Tally) -> Tally:
    def plus(x: int | None, y: int | None) -> int | None:
        return y if x is None else x if y is None else x + y

    return Tally(
        plus(a.request_count, b.request_count),
        a.usage.plus(b.usage),
        plus(a.cost_nanos, b.cost_nanos),
        a.currency_code or b.currency_code,
    )


def _sort_key(key: LineKey) -> tuple[str, str, str, str]:
    return (key.day, key.model, key.api_key_id, key.request_id)


def _day_text(day_index: int) -> str:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day_index).isoformat()


def _day_start_us(day: str) -> int:
    parsed = date.fromisoformat(day)
    return (parsed.toordinal() - date(1970, 1, 1).toordinal()) * DAY_US


def _next_day(day: str) -> str:
    if not day:
        return ""
    return date.fromordinal(date.fromisoformat(day).toordinal() + 1).isoformat()


def _check(options: ReconcileOptions) -> None:
    v = Violations()
    if options.account_id:
        val.check_account_id(v, options.account_id)
    if options.provider:
        val.check_provider(v, options.provider)
    if len(options.key_map) > KEY_MAP_ENTRIES_MAX:
        v.add("key_map", f"key_map must have at most {KEY_MAP_ENTRIES_MAX} entries")
    for upstream_key, local_key in list(options.key_map.items())[:KEY_MAP_ENTRIES_MAX]:
        if len(upstream_key) > 128 or len(local_key) > 128:
            v.add("key_map", "keys must be at most 128 characters")
            break
    if not 0 <= options.token_tolerance <= TOLERANCE_MAX:
        v.add("token_tolerance", "token_tolerance must be in [0, 10^15]")
    if not 0 <= options.cost_tolerance_nanos <= TOLERANCE_MAX:
        v.add("cost_tolerance_nanos", "cost_tolerance_nanos must be in [0, 10^15]")
    for name in ("start_day", "end_day"):
        value = getattr(options, name)
        if value:
            try:
                date.fromisoformat(value)
                if len(value) != 10:
                    raise ValueError(value)
            except ValueError:
                v.add(name, f"{name} must be a date, YYYY-MM-DD")
    v.raise_if_any()
