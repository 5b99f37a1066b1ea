"""The price book: loading the catalogue, the shared in-memory cache, price administration."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from metering.domain.catalogue import CatalogueError, parse_catalogue
from metering.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from metering.domain.litellm import convert_litellm, looks_like_litellm
from metering.domain.pricing import Price, PriceBook
from metering.service.ports import Clock, Database, Store

PRICE_FILE_BYTES_MAX = 16 * 1024 * 1024
PRICE_ID_LENGTH_MAX = 200
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
# Fields of an entry that say when and where it comes from, not what it costs:
# an import that changes only these is not a new price.
_PROVENANCE = ("version", "effective_time", "source", "source_date")
_REVISION = "prices"


def canonical_entry_json(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def time_text(time_us: int) -> str:
    """RFC 3339 with microseconds, the catalogue's time format."""
    moment = datetime.fromtimestamp(time_us // 1_000_000, UTC).replace(
        microsecond=time_us % 1_000_000
    )
    return moment.isoformat().replace("+00:00", "Z")


def _insert(store: Store, price: Price, entry: dict[str, Any], clock: Clock) -> None:
    store.insert_price(
        price_id=price.price_id,
        version=price.version,
        provider=price.provider,
        model=price.model,
        currency_code=price.currency_code,
        effective_time_us=price.effective_time_us,
        end_time_us=price.end_time_us,
        entry_json=canonical_entry_json(entry),
        now_us=clock.now_us(),
        account_id=price.account_id,
    )


def sync_catalogue(db: Database, catalogue: dict[str, Any], source: str, clock: Clock) -> int:
    """Insert catalogue entries the database does not have yet; return how many.

    Stored entries are never changed: an entry whose content differs from the
    stored one under the same ``price_id`` and ``version`` is refused, because
    records already refer to that version.
    """
    prices = parse_catalogue(catalogue, source)  # validates every entry first
    entries = {(e["price_id"], int(e.get("version", 1))): e for e in catalogue["prices"]}
    inserted = 0
    with db.write() as store:
        stored = {(pid, ver): sha for pid, ver, sha, _ in store.price_rows()}
        for price in prices:
            entry = dict(entries[(price.price_id, price.version)])
            entry.setdefault("currency_code", catalogue.get("currency_code", "USD"))
            key = (price.price_id, price.version)
            if key in stored:
                if stored[key] != _sha(canonical_entry_json(entry)):
                    raise FailedPrecondition(
                        "PRICE_VERSION_CHANGED",
                        f"{source}: price {price.price_id} version {price.version} differs "
                        "from the stored entry; give the changed entry a new version",
                    )
                continue
            _insert(store, price, entry, clock)
            inserted += 1
        if inserted:
            store.bump_revision(_REVISION)
    return inserted


def load_price_book(db: Database) -> PriceBook:
    """The price book of every stored price entry."""
    with db.read() as store:
        entries = [json.loads(entry_json) for *_, entry_json in store.price_rows()]
    return PriceBook.of(parse_catalogue({"prices": entries}, "database prices table"))


class PriceBookCache:
    """The price book in memory, reloaded when any process changed the prices.

    Each lookup costs nothing; at most once per ``check_seconds`` one cheap
    query compares the database's price revision with the cached one, so a
    price added through another process is used within that interval, and
    through this process at once (:meth:`invalidate`).
    """

    def __init__(
        self,
        db: Database,
        check_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._check_seconds = check_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._book = PriceBook()
        self._revision = -1
        self._checked = float("-inf")

    def __call__(self) -> PriceBook:
        if self._monotonic() - self._checked >= self._check_seconds:
            self.refresh()
        return self._book

    def refresh(self) -> None:
        with self._lock:
            with self._db.read() as store:
                revision = store.get_revision(_REVISION)
            if revision != self._revision:
                book = load_price_book(self._db)
                book.revision = revision
                self._book = book
                self._revision = revision
            self._checked = self._monotonic()

    def invalidate(self) -> None:
        self._checked = float("-inf")


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: int = 0


def read_price_file(
    content: bytes, fmt: str | None, source: str, effective_time: str, source_date: str
) -> tuple[list[dict[str, Any]], list[str], int]:
    """Catalogue entries from a price file (metering or LiteLLM format).

    Returns the entries, every problem found (entry and field named), and how
    many LiteLLM entries were skipped as non-text models. Nothing raises for
    bad content; problems say what is wrong.
    """
    if len(content) > PRICE_FILE_BYTES_MAX:
        return [], [f"{source}: larger than {PRICE_FILE_BYTES_MAX} bytes"], 0
    try:
        data = json.loads(content.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers beyond Python's 4,300-digit limit.
        return [], [f"{source}: not JSON ({exc})"], 0
    if fmt is None:
        fmt = "LITELLM" if looks_like_litellm(data) else "METERING"
    if fmt == "LITELLM":
        if not isinstance(data, dict):
            return [], [f"{source}: a LiteLLM file is an object of model names"], 0
        converted = convert_litellm(data, source, effective_time, source_date)
        problems = [f"{source}: {p}" for p in converted.problems]
        entries, skipped = converted.entries, converted.skipped
    else:
        if not isinstance(data, dict) or not isinstance(data.get("prices"), list):
            return [], [f"{source}: top level: must be an object with a 'prices' list"], 0
        entries, problems, skipped = _decimals_as_text(data), [], 0
    try:
        parse_catalogue({"prices": entries}, source)
    except CatalogueError as exc:
        problems += [f"{source}: {p}" for p in exc.problems]
    return entries, problems, skipped


def _decimals_as_text(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Catalogue prices are strings; a JSON number stays a number so the check reports it."""
    prices: list[dict[str, Any]] = data["prices"]
    return [
        {k: (float(v) if isinstance(v, Decimal) else v) for k, v in entry.items()}
        if isinstance(entry, dict)
        else entry
        for entry in prices
    ]


def _price_fields(entry: dict[str, Any]) -> str:
    return canonical_entry_json({k: v for k, v in entry.items() if k not in _PROVENANCE})


class PriceAdmin:
    """Price administration: every change is a new version, visible to every process."""

    def __init__(self, db: Database, cache: PriceBookCache, clock: Clock) -> None:
        self._db = db
        self._cache = cache
        self._clock = clock

    def add_price(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Store ``entry`` as the next version of its price id; return the stored entry."""
        price_id = entry.get("price_id")
        if not isinstance(price_id, str) or not 0 < len(price_id) <= PRICE_ID_LENGTH_MAX:
            raise InvalidArgument(
                [FieldViolation("price.price_id", f"1-{PRICE_ID_LENGTH_MAX} characters")]
            )
        entry = {k: v for k, v in entry.items() if v not in (None, "", [], False)}
        entry.setdefault("effective_time", time_text(self._clock.now_us()))
        entry.setdefault("currency_code", "USD")
        with self._db.write() as store:
            latest = _latest_versions(store).get(price_id)
            entry["version"] = latest[0] + 1 if latest else 1
            price = _parse_one(entry)
            _insert(store, price, entry, self._clock)
            store.bump_revision(_REVISION)
        self._cache.invalidate()
        return entry

    def retire_price(self, price_id: str, retire_time_us: int | None) -> dict[str, Any]:
        """Add a tombstone version: from ``retire_time_us`` on the id prices nothing."""
        with self._db.read() as store:
            latest = _latest_versions(store).get(price_id)
        if latest is None:
            raise NotFound(
                "PRICE_NOT_FOUND", f"no price with id {price_id!r}", {"price_id": price_id}
            )
        tombstone = {k: v for k, v in json.loads(latest[1]).items() if k not in ("end_time",)}
        tombstone.update(
            retired=True,
            effective_time=time_text(
                retire_time_us if retire_time_us is not None else self._clock.now_us()
            ),
            source="retired",
        )
        return self.add_price(tombstone)

    def import_prices(
        self,
        content: bytes,
        fmt: str | None,
        source: str,
        effective_time_us: int | None,
        dry_run: bool,
    ) -> ImportReport:
        """Add each entry whose prices differ from its id's newest version, as a new version."""
        now = self._clock.now_us()
        effective = time_text(effective_time_us if effective_time_us is not None else now)
        entries, problems, skipped = read_price_file(
            content, fmt, source or "import", effective, time_text(now)[:10]
        )
        if problems:
            raise InvalidArgument(
                [FieldViolation("content", problem) for problem in problems[:100]]
            )
        report = ImportReport(skipped=skipped)
        with self._db.write() as store:
            latest = _latest_versions(store)
            for entry in entries:
                entry = {**entry, "effective_time": effective}
                current = latest.get(entry["price_id"])
                if current is not None and _price_fields(json.loads(current[1])) == _price_fields(
                    {**entry, "currency_code": entry.get("currency_code", "USD")}
                ):
                    report.unchanged += 1
                    continue
                entry.setdefault("currency_code", "USD")
                entry["version"] = current[0] + 1 if current else 1
                report.added.append(entry["price_id"])
                if not dry_run:
                    _insert(store, _parse_one(entry), entry, self._clock)
                    latest[entry["price_id"]] = (entry["version"], canonical_entry_json(entry))
            if report.added and not dry_run:
                store.bump_revision(_REVISION)
            if dry_run:
                raise _DryRun(report)
        self._cache.invalidate()
        return report

    def list_prices(
        self,
        provider: str,
        model: str,
        account_id: str,
        all_versions: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[dict[str, Any]], str]:
        """Entries by price id and version, filtered, one page at a time."""
        v = Violations()
        page_size = page_size or PAGE_SIZE_DEFAULT
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            v.add("page_size", f"page_size must be in [1, {PAGE_SIZE_MAX}]")
        offset = _offset(page_token, v)
        v.raise_if_any()
        with self._db.read() as store:
            rows = sorted(store.price_rows())
        newest: dict[str, int] = {}
        for price_id, version, *_ in rows:
            newest[price_id] = max(version, newest.get(price_id, 0))
        selected = []
        for price_id, version, _, text in rows:
            if not all_versions and newest[price_id] != version:
                continue
            entry = json.loads(text)
            names = [entry.get("model", ""), *entry.get("aliases", [])]
            if provider and entry.get("provider") != provider.lower():
                continue
            if model and model.lower() not in (n.lower() for n in names):
                continue
            if entry.get("account_id", "") != account_id:
                continue
            selected.append(entry)
        page = selected[offset : offset + page_size]
        more = offset + page_size < len(selected)
        return page, _token(offset + page_size) if more else ""


class _DryRun(Exception):
    """Rolls back a dry run's transaction while carrying its report out."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__("dry run")
        self.report = report


def import_prices(
    admin: PriceAdmin,
    content: bytes,
    fmt: str | None,
    source: str,
    effective_time_us: int | None,
    dry_run: bool,
) -> ImportReport:
    """Import a price file; a dry run reports what would be added and writes nothing."""
    try:
        return admin.import_prices(content, fmt, source, effective_time_us, dry_run)
    except _DryRun as done:
        return done.report


def _latest_versions(store: Store) -> dict[str, tuple[int, str]]:
    latest: dict[str, tuple[int, str]] = {}
    for price_id, version, _, text in store.price_rows():
        if price_id not in latest or version > latest[price_id][0]:
            latest[price_id] = (version, text)
    return latest


def _parse_one(entry: dict[str, Any]) -> Price:
    try:
        return parse_catalogue({"prices": [entry]}, "price")[0]
    except CatalogueError as exc:
        raise InvalidArgument(
            [FieldViolation(_field_of(problem), problem) for problem in exc.problems]
        ) from None


def _field_of(problem: str) -> str:
    """'prices[0] (id).input_per_million: ...' -> 'price.input_per_million'."""
    head = problem.split(": ", 1)[0]
    if ")." in head:
        return "price." + head.split(").", 1)[1]
    if "]." in head:
        return "price." + head.split("].", 1)[1]
    return "price"


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _offset(token: str, v: Violations) -> int:
    if not token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()[:64]).decode())
        if offset < 0:
            raise ValueError
        return offset
    except ValueError:
        v.add("page_token", "page_token is invalid")
        return 0
