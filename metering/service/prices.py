"""Loading the price catalogue into the database and the in-memory price book."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from metering.domain.catalogue import parse_catalogue
from metering.domain.errors import FailedPrecondition
from metering.domain.pricing import PriceBook
from metering.service.ports import Clock, Database


def canonical_entry_json(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


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
            text = canonical_entry_json(entry)
            key = (price.price_id, price.version)
            if key in stored:
                if stored[key] != hashlib.sha256(text.encode()).hexdigest():
                    raise FailedPrecondition(
                        "PRICE_VERSION_CHANGED",
                        f"{source}: price {price.price_id} version {price.version} differs "
                        "from the "
                        "stored entry; give the changed entry a new version",
                    )
                continue
            store.insert_price(
                price_id=price.price_id,
                version=price.version,
                provider=price.provider,
                model=price.model,
                currency_code=price.currency_code,
                effective_time_us=price.effective_time_us,
                end_time_us=price.end_time_us,
                entry_json=text,
                now_us=clock.now_us(),
            )
            inserted += 1
    return inserted


def load_price_book(db: Database) -> PriceBook:
    """The price book of every stored price entry."""
    with db.read() as store:
        entries = [json.loads(entry_json) for *_, entry_json in store.price_rows()]
    return PriceBook.of(parse_catalogue({"prices": entries}, "database prices table"))
