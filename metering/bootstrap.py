"""The composition root: builds every part from Settings and wires them together."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from metering.config import Settings
from metering.service.exports import UsageExports
from metering.service.handlers import Metering
from metering.service.prices import PriceAdmin, PriceBookCache, sync_catalogue
from metering.service.reprice import Repricer
from metering.storage import migrate
from metering.storage.engine import make_engine, sqlite_file
from metering.storage.store import SqlDatabase
from metering.tokens.registry import TokenizerRegistry


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class StartupError(RuntimeError):
    """The service cannot start; the message is one line for the operator."""


@dataclass
class App:
    settings: Settings
    engine: Engine
    database: SqlDatabase
    metering: Metering
    executor: ThreadPoolExecutor
    price_book: PriceBookCache
    price_admin: PriceAdmin
    repricer: Repricer
    exports: UsageExports

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.engine.dispose()


def bundled_catalogue() -> dict[str, Any]:
    data = resources.files("metering").joinpath("data", "prices.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def load_tokenizers(path: Path | None) -> TokenizerRegistry:
    """The operator's model-pattern -> tokenizer-file registry (METERING_TOKENIZERS_FILE).

    The file is a JSON list of {"pattern": "llama-3*", "file": "/path/tokenizer.json",
    "kind": "huggingface" | "tiktoken"}; relative files are relative to it.
    """
    registry = TokenizerRegistry()
    if path is None:
        return registry
    try:
        entries = json.loads(path.read_text("utf-8"))
        if not isinstance(entries, list):
            raise ValueError("must be a JSON list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not {"pattern", "file"} <= entry.keys():
                raise ValueError(f"entry {index}: needs 'pattern' and 'file'")
            registry.register(
                str(entry["pattern"]), path.parent / str(entry["file"]), kind=entry.get("kind")
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise StartupError(f"METERING_TOKENIZERS_FILE={path}: {exc}") from None
    return registry


def prepare_database(settings: Settings, engine: Engine) -> None:
    """Migrate the embedded SQLite database; insist that PostgreSQL is already migrated.

    An embedded database belongs to this process, so upgrading it is safe; a
    shared PostgreSQL is migrated by an explicit `metering migrate` (one job,
    not every replica racing at start-up).
    """
    if engine.dialect.name == "sqlite":
        migrate.upgrade(engine)
        return
    current, head = migrate.current_revision(engine), migrate.head_revision()
    if current is None:
        migrate.upgrade(engine)  # an empty database: nothing to race with
    elif current != head:
        raise StartupError(
            f"database schema is at revision {current}, this version needs {head}: "
            "run `metering migrate --database-url ...` first"
        )


def writer_in_process(settings: Settings) -> bool:
    """Whether the group commit writes in a process of its own (METERING_WRITER): for
    PostgreSQL and a SQLite file, not for a SQLite database another process may not see."""
    shared = settings.database_dialect == "postgresql" or sqlite_file(settings.database_url)
    return settings.writer == "process" and bool(shared)


def build_writer(settings: Settings) -> Metering:
    """The group-commit writer's service in its own process (metering.service.writer_process).

    The server process has migrated the database and loaded the prices; this
    one only opens the database and reads them. Two connections: the writer's
    and one for a read beside it (account snapshots).
    """
    from metering.telemetry import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    tokenizers = load_tokenizers(settings.tokenizers_file)
    engine = make_engine(settings.database_url, pool_size=2)
    database = SqlDatabase(engine)
    book = PriceBookCache(database)
    book.refresh()
    return Metering(database, book, SystemClock(), tokenizers)


def build_app(settings: Settings, *, background_checkpoints: bool = True) -> App:
    """Open the database, load prices and build the service; no network listening yet.

    ``background_checkpoints=False`` when a writer process serves beside it: its engine
    checkpoints the WAL it writes (most of it), and a second checkpointer here would
    only repeat the work on the server's GIL.
    """
    tokenizers = load_tokenizers(settings.tokenizers_file)  # before touching the database
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        background_checkpoints=background_checkpoints,
    )
    clock = SystemClock()
    try:
        prepare_database(settings, engine)
        database = SqlDatabase(engine)
        if settings.prices_file is not None:
            source = str(settings.prices_file)
            catalogue = json.loads(settings.prices_file.read_text("utf-8"))
        else:
            source, catalogue = "bundled prices.json", bundled_catalogue()
        sync_catalogue(database, catalogue, source, clock)
        book = PriceBookCache(database)
        book.refresh()
    except Exception:
        engine.dispose()
        raise
    executor = ThreadPoolExecutor(
        max_workers=settings.db_pool_size, thread_name_prefix="metering-db"
    )
    return App(
        settings=settings,
        engine=engine,
        database=database,
        metering=Metering(database, book, clock, tokenizers),
        executor=executor,
        price_book=book,
        price_admin=PriceAdmin(database, book, clock),
        repricer=Repricer(database, book, clock),
        exports=UsageExports(database),
    )
