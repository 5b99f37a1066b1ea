"""Start the real `metering serve` in a subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

_LISTENING = re.compile(r"metering listening on (\S+):(\d+)")


class ServerProcess:
    """A `python -m metering serve` child process; its output is kept for failure messages."""

    def __init__(
        self,
        database_url: str | None,
        prices_file: Path | None = None,
        env: dict[str, str] | None = None,
        listen: str | None = "127.0.0.1:0",
        cwd: Path | None = None,
    ) -> None:
        """``database_url`` or ``listen`` None leaves the flag out (the defaults apply)."""
        self.database_url = database_url
        self.prices_file = prices_file
        self.extra_env = env or {}
        self.listen = listen
        self.cwd = cwd
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=400)
        self._pump: threading.Thread | None = None
        self._terminated = False

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 60.0) -> ServerProcess:
        command = [sys.executable, "-m", "metering", "serve"]
        if self.listen is not None:
            command += ["--listen", self.listen]
        if self.database_url is not None:
            command += ["--database-url", self.database_url]
        if self.prices_file is not None:
            command += ["--prices-file", str(self.prices_file)]
        env = {
            **os.environ,
            "METERING_SHUTDOWN_GRACE_SECONDS": "5",
            # Tests give holds TTLs of a second; sweep often enough to see them expire.
            "METERING_RESERVATION_SWEEP_MS": "200",
            # Scenarios fire many calls from one loopback peer (one rate-limit bucket without
            # authentication): no rate limits unless a test sets them (tests/e2e/test_ratelimit.py).
            "METERING_RATE_LIMIT_ESTIMATE_PER_SECOND": "0",
            "METERING_RATE_LIMIT_SUMMARY_PER_SECOND": "0",
            "METERING_RATE_LIMIT_IMPORT_PER_SECOND": "0",
            **self.extra_env,
        }
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        found = threading.Event()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line.rstrip("\n"))
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.port = int(match.group(2))
                    found.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout_seconds
        while not found.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("metering serve did not start:\n" + self.log_tail())
        return self

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(list(self.output)[-lines:])

    def stop(self, timeout_seconds: float = 30.0) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit code."""
        if self.process is None:
            return 0
        self.terminate()
        try:
            code = self.process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._close_pipe()
        return code

    def terminate(self) -> None:
        """Send SIGTERM once: a second one during shutdown would only interrupt it."""
        if self.process is not None and self.process.poll() is None and not self._terminated:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        # The pump thread ends at end-of-file; join it before closing its pipe.
        if self._pump is not None:
            self._pump.join(10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
