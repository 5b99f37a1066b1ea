"""Usage exports and the review queue: admin reads over ranges of usage records.

An export reads in keyset pages, one read transaction per page, so that its
memory is the same for a day or for 400 days and no transaction stays open
while a slow client drains the stream. Its totals are the sums of exactly the
rows it produced: a range nothing writes into meanwhile ties to the ledger.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from metering.domain.errors import Violations
from metering.domain.exports import BASIS_POINTS_MAX, ExportTotals, RecordView
from metering.domain.records import UsageRecord
from metering.domain.summary import Aggregate, Granularity, GroupKey, SummaryFilter, regroup
from metering.domain.summary import segments as zone_segments
from metering.service import validation as val
from metering.service.handlers import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    SUMMARY_RANGE_MAX_US,
    _account_not_found,
    _payload_sha256,
    _zone,
)
from metering.service.ports import Database

# Rows per read transaction of a records export.
EXPORT_RECORDS_PER_READ = 1000
# The summary export's group keys after the day: what a bill line needs.
SUMMARY_GROUP_BY = (GroupKey.ACCOUNT, GroupKey.MODEL, GroupKey.USAGE_SOURCE)
_PAGE_TOKEN_LENGTH_MAX = 1024


class ExportKind(enum.Enum):
    RECORDS = "RECORDS"
    SUMMARY = "SUMMARY"


@dataclass(frozen=True)
class ExportQuery:
    start_us: int | None
    end_us: int | None
    account_id: str = ""
    kind: ExportKind = ExportKind.RECORDS
    time_zone: str = ""
    # RECORDS only: resume after the record this token names.
    page_token: str = ""


@dataclass(frozen=True)
class ExportPage:
    """One read's worth of an export: records (kind RECORDS) or summary rows (SUMMARY)."""

    records: list[RecordView] = field(default_factory=list)
    rows: list[Aggregate] = field(default_factory=list)


@dataclass
class ExportRun:
    """An export under way: iterate ``pages``; when they are exhausted ``totals`` are final."""

    kind: ExportKind
    pages: Iterator[ExportPage]
    totals: ExportTotals
    # Binds resume tokens to the query they resume.
    fingerprint: str = ""

    def resume_token(self, view: RecordView) -> str:
        """A token that resumes this export after ``view``."""
        record = view.record
        return _encode_key(
            (record.event_time_us, record.account_id, record.record_id), self.fingerprint
        )


@dataclass(frozen=True)
class ReviewQuery:
    start_us: int | None
    end_us: int | None
    account_id: str = ""
    estimated_share_min_bps: int = 0
    page_size: int = 0
    page_token: str = ""


class UsageExports:
    """Exports of usage and the review queue, over a database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def export(self, query: ExportQuery) -> ExportRun:
        """Validate an export and return it ready to stream; nothing is read until iterated.

        INVALID_ARGUMENT names each bad field; NOT_FOUND when the account filter
        names an account that does not exist.
        """
        v = Violations()
        _check_range(v, query.start_us, query.end_us)
        if query.account_id:
            val.check_account_id(v, query.account_id)
        zone = _check_zone(v, query.time_zone)
        fingerprint = _payload_sha256(
            {
                "start_us": query.start_us,
                "end_us": query.end_us,
                "account_id": query.account_id,
                "kind": query.kind.value,
            }
        )[:16]
        after: tuple[int, str, str] | None = None
        if query.page_token:
            if query.kind is not ExportKind.RECORDS:
                v.add("page_token", "only a RECORDS export resumes")
            else:
                after = _decode_key(query.page_token, fingerprint, v)
        v.raise_if_any()
        assert query.start_us is not None and query.end_us is not None and zone is not None
        account_id = query.account_id or None
        if account_id is not None:
            with self._db.read() as store:
                if store.get_account(account_id) is None:
                    raise _account_not_found(account_id)
        totals = ExportTotals()
        if query.kind is ExportKind.SUMMARY:
            pages = self._summary_pages(query.start_us, query.end_us, account_id, zone, totals)
        else:
            pages = self._record_pages(
                query.start_us,
                query.end_us,
                account_id,
                totals,
                after or (query.start_us - 1, "", ""),
            )
        return ExportRun(query.kind, pages, totals, fingerprint)

    def _record_pages(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        totals: ExportTotals,
        after: tuple[int, str, str],
    ) -> Iterator[ExportPage]:
        while True:
            # The transaction ends before the page is handed out: a slow reader holds none.
            with self._db.read() as store:
                page = store.records_page(
                    start_us, end_us, account_id, after, EXPORT_RECORDS_PER_READ
                )
            if not page:
                return
            for view in page:
                totals.add_record(view.record)
            yield ExportPage(records=page)
            if len(page) < EXPORT_RECORDS_PER_READ:
                return
            last = page[-1].record
            after = (last.event_time_us, last.account_id, last.record_id)

    def _summary_pages(
        self,
        start_us: int,
        end_us: int,
        account_id: str | None,
        zone: ZoneInfo,
        totals: ExportTotals,
    ) -> Iterator[ExportPage]:
        """One local day per read: the day's rows by account x model x source (x currency),
        from the same rollups and bucketing as UsageSummary with granularity DAY."""
        day_start = start_us
        while day_start < end_us:
            day_end = min(_next_local_midnight_us(day_start, zone), end_us)
            flt = SummaryFilter(
                start_us=day_start,
                end_us=day_end,
                account_id=account_id,
                currency_code=None,
                group_by=SUMMARY_GROUP_BY,
                segments=zone_segments(day_start, day_end, zone, Granularity.DAY),
            )
            with self._db.read() as store:
                slices = store.summarize(flt)
            rows = regroup(slices, Granularity.DAY, zone, day_start)
            if rows:
                for row in rows:
                    totals.add_row(row)
                yield ExportPage(rows=rows)
            day_start = day_end

    def review_records(self, query: ReviewQuery) -> tuple[list[UsageRecord], str]:
        """The review queue, oldest first: original calls not yet corrected that were
        recorded as MISSING, or as ESTIMATED in an account whose estimated share of calls
        in the range reaches the minimum. Returns a page and the next page's token."""
        v = Violations()
        _check_range(v, query.start_us, query.end_us)
        if query.account_id:
            val.check_account_id(v, query.account_id)
        if not 0 <= query.estimated_share_min_bps <= BASIS_POINTS_MAX:
            v.add(
                "estimated_share_min_basis_points",
                f"estimated_share_min_basis_points must be in [0, {BASIS_POINTS_MAX}]",
            )
        page_size = query.page_size or PAGE_SIZE_DEFAULT
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            v.add("page_size", f"page_size must be in [1, {PAGE_SIZE_MAX}]")
        # The token is bound to every field but the page size, which a caller may change.
        fingerprint = _payload_sha256(
            {
                "start_us": query.start_us,
                "end_us": query.end_us,
                "account_id": query.account_id,
                "estimated_share_min_bps": query.estimated_share_min_bps,
            }
        )[:16]
        after: tuple[int, str, str] = (-1, "", "")
        if query.page_token:
            after = _decode_key(query.page_token, fingerprint, v)
        v.raise_if_any()
        assert query.start_us is not None and query.end_us is not None
        if after == (-1, "", ""):
            after = (query.start_us - 1, "", "")
        account_id = query.account_id or None
        with self._db.read() as store:
            if account_id is not None and store.get_account(account_id) is None:
                raise _account_not_found(account_id)
            # One more than asked: the last page says so with an empty token.
            found = store.review_page(
                query.start_us,
                query.end_us,
                account_id,
                query.estimated_share_min_bps,
                after,
                page_size + 1,
            )
        page = found[:page_size]
        token = ""
        if len(found) > page_size:
            last = page[-1]
            token = _encode_key((last.event_time_us, last.account_id, last.record_id), fingerprint)
        return page, token


def _check_range(v: Violations, start_us: int | None, end_us: int | None) -> None:
    """The range rules of UsageSummary: both ends, half-open, at most 400 days."""
    if start_us is None:
        v.add("start_time", "start_time is required")
    else:
        val.check_time(v, "start_time", start_us)
    if end_us is None:
        v.add("end_time", "end_time is required")
    if start_us is not None and end_us is not None:
        if end_us <= start_us:
            v.add("end_time", "end_time must be after start_time (the range is half-open)")
        elif end_us - start_us > SUMMARY_RANGE_MAX_US:
            v.add("end_time", "the range must be at most 400 days")


def _check_zone(v: Violations, name: str) -> ZoneInfo | None:
    tz_name = name or "UTC"
    if len(tz_name) > 64 or not tz_name.isprintable():
        v.add("time_zone", "time_zone must be an IANA name such as Europe/Berlin")
        return None
    zone = _zone(tz_name)
    if zone is None:
        v.add("time_zone", f"unknown time zone {tz_name!r}; use an IANA name")
    return zone


def _next_local_midnight_us(time_us: int, zone: ZoneInfo) -> int:
    """The first local midnight in ``zone`` after ``time_us`` (UTC microseconds)."""
    local = datetime.fromtimestamp(time_us // 1_000_000, UTC).astimezone(zone)
    following = local.date() + timedelta(days=1)
    midnight = datetime(following.year, following.month, following.day, tzinfo=zone)
    found = int(midnight.timestamp()) * 1_000_000
    # A zone whose clocks skip midnight still moves forward by about a day.
    return found if found > time_us else time_us + 86_400_000_000


def _encode_key(key: tuple[int, str, str], fingerprint: str) -> str:
    raw = json.dumps({"k": list(key), "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_key(token: str, fingerprint: str, v: Violations) -> tuple[int, str, str]:
    try:
        if len(token) > _PAGE_TOKEN_LENGTH_MAX:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        time_us, account_id, record_id = data["k"]
        if (
            data["f"] != fingerprint
            or not isinstance(time_us, int)
            or not isinstance(account_id, str)
            or not isinstance(record_id, str)
        ):
            raise ValueError("mismatch")
        return time_us, account_id, record_id
    except (ValueError, KeyError, TypeError):
        v.add("page_token", "page_token is invalid or belongs to a different query")
        return (-1, "", "")
