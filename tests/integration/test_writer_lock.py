"""The SQLite writers' lock excludes writers of other processes, not just threads."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from metering.storage.engine import make_engine, write_lock_for

HOLD_SECONDS = 0.3


def _hold(database: str, held: multiprocessing.synchronize.Event) -> None:
    engine = make_engine(f"sqlite:///{database}")
    lock = write_lock_for(engine)
    assert lock is not None
    with lock:
        held.set()
        time.sleep(HOLD_SECONDS)
        Path(database + ".released").write_text("about to release")


def test_a_writer_of_another_process_waits_for_the_lock(tmp_path: Path) -> None:
    database = str(tmp_path / "metering.db")
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    other = context.Process(target=_hold, args=(database, held))
    other.start()
    try:
        assert held.wait(30), "the other process never took the lock"
        engine = make_engine(f"sqlite:///{database}")
        lock = write_lock_for(engine)
        assert lock is not None
        with lock:
            # Written by the other process just before it let go: we got in after it.
            assert Path(database + ".released").exists()
        engine.dispose()
    finally:
        other.join(30)
    assert other.exitcode == 0


def test_engines_on_one_file_share_one_lock(tmp_path: Path) -> None:
    first = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    second = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    other = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    lock = write_lock_for(first)
    assert lock is write_lock_for(second)  # else a second flock would wait for the first
    assert lock is not write_lock_for(other)
    assert write_lock_for(make_engine("postgresql+psycopg://u@h/db")) is None
