"""Test support: a real `metering serve` subprocess (see clients/conformance/README.md)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CLIENT_ROOT = HERE.parent
REPO = CLIENT_ROOT.parent.parent
CONFORMANCE = REPO / "clients" / "conformance"
PRICES = REPO / "tests" / "data" / "prices.json"
READY = "metering listening on "


def metering_bin() -> str:
    """The server command: $METERING_BIN, else <repo>/.venv/bin/metering."""
    path = os.environ.get("METERING_BIN") or str(REPO / ".venv" / "bin" / "metering")
    if not os.path.exists(path):
        pytest.fail(
            f"metering server not found at {path}: run ./scripts/bootstrap (or ./scripts/test) "
            "at the repository root, or set METERING_BIN",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MeteringServer:
    """One `metering serve` process over a SQLite database; restartable on the same port."""

    def __init__(self, workdir: Path, port: int = 0) -> None:
        self.workdir = workdir
        self.db_url = f"sqlite:///{workdir / 'm.db'}"
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.starts = 0
        self._log = open(workdir / "server.log", "a")  # noqa: SIM115 - closed in close()

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait for the ready line; retry while the port is still taken."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._start_once(deadline)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _start_once(self, deadline: float) -> None:
        self.starts += 1
        self._log.write(f"--- start #{self.starts} on port {self.port}\n")
        self._log.flush()
        proc = subprocess.Popen(
            [
                metering_bin(),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--database-url",
                self.db_url,
                "--prices-file",
                str(PRICES),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "METERING_SHUTDOWN_GRACE_SECONDS": "2"},
        )
        lines: list[str] = []
        found = threading.Event()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if line.startswith(READY):
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        found.wait(max(0.1, deadline - time.monotonic()))
        ready = [ln for ln in lines if ln.startswith(READY)]
        if not ready:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"metering did not start: {''.join(lines)} (see {self._log.name})")
        self.proc = proc
        self.address = ready[0][len(READY) :].split()[0]
        self.port = int(self.address.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        """Stop with ``sig`` (SIGKILL after ``wait`` seconds if still running)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop the server and close its log."""
        self.stop()
        self._log.close()


def nanos(money: object) -> int:
    """A Money message as integer nanos."""
    return int(money.units) * 1_000_000_000 + int(money.nanos)  # type: ignore[attr-defined]
