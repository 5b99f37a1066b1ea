"""Throwaway PostgreSQL servers for the test suite.

The integration and end-to-end tests need a real PostgreSQL (the storage layer
relies on PostgreSQL semantics: transactions, locking, durability), but must not
touch any database a developer or CI machine already runs. This module starts a
private server in a temporary directory and deletes it afterwards. It only
needs the standard library and psycopg 3, so it works before the rest of the
project's dependencies are importable.

Design notes (the "why"):

* **Throwaway.** Each ``PostgresServer`` gets its own freshly ``initdb``-ed
  data directory under the system temp dir and a free TCP port. Nothing is
  shared with a system cluster and everything is removed by ``stop()``
  (an ``atexit`` hook is a safety net for tests that forget).

* **Root.** CI and the development machines run as root, and PostgreSQL
  refuses to run as root (``initdb``/``postgres`` exit with "cannot be run as
  root"). So when ``os.geteuid() == 0`` the temp dir is chowned to the
  ``postgres`` system user and ``initdb``/``pg_ctl`` are run through
  ``runuser -u postgres --``. As any other user they are run directly.

* **Trust auth, loopback only.** The cluster is initialised with ``-A trust``
  so tests need no passwords. That is only acceptable because the server
  listens on ``127.0.0.1`` alone (plus a Unix socket in the private temp dir)
  and lives only for the duration of a test run.

* **Durable.** Only ``initdb --no-sync`` is used (it skips flushing the
  freshly created template files, which is safe for a throwaway cluster).
  ``fsync`` and ``synchronous_commit`` stay at their durable defaults because
  the test suite checks durability across server restarts
  (see ``stop_server()`` / ``start_server()``).

Run ``python tests/support/postgres.py`` to check that a server can be started
on this machine.
"""

from __future__ import annotations

import atexit
import os
import pathlib
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "PostgresError",
    "PostgresServer",
    "find_pg_bindir",
]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
# The system account that owns the cluster when we are root.
RUN_AS_USER = "postgres"

# pg_ctl -w waits this long for the server to accept connections; the
# subprocess timeout is a bit longer so pg_ctl gets to report its own error.
_PG_CTL_WAIT_SECONDS = 60
_SUBPROCESS_TIMEOUT_SECONDS = 120
_LOG_TAIL_LINES = 40
# Attempts to start on a fresh port when another process grabbed the one we
# picked between closing our probe socket and the postmaster binding it.
_PORT_ATTEMPTS = 3


class PostgresError(RuntimeError):
    """The throwaway server could not be initialised, started or stopped."""


def _has_server_tools(bindir: pathlib.Path) -> bool:
    # pg_ctl launches the ``postgres`` binary from its own directory, so a
    # directory holding initdb alone (e.g. a symlink farm) is not usable.
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def _version_key(path: pathlib.Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<major>/bin: sort "9.6" < "15" < "16" numerically.
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts) if parts else (-1,)


def find_pg_bindir() -> pathlib.Path | None:
    """Locate a directory with the PostgreSQL server tools (initdb, pg_ctl).

    Order: ``$METERING_PG_BINDIR`` (taken as given, so a wrong override fails
    loudly in ``start()`` instead of silently using another version), then
    ``pg_config --bindir``, then the newest ``/usr/lib/postgresql/*/bin``
    (Debian/Ubuntu keep server binaries off PATH), then wherever ``initdb`` is
    on PATH. Returns None if nothing is found.
    """
    override = os.environ.get("METERING_PG_BINDIR")
    if override:
        return pathlib.Path(override)

    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        # pg_config ships with libpq-dev and may describe a client-only
        # install, hence the check for the server tools.
        if out and _has_server_tools(pathlib.Path(out)):
            return pathlib.Path(out)

    candidates = [
        p for p in pathlib.Path("/usr/lib/postgresql").glob("*/bin") if _has_server_tools(p)
    ]
    if candidates:
        return max(candidates, key=_version_key)

    initdb = shutil.which("initdb")
    if initdb is not None:
        path = pathlib.Path(initdb)
        # /usr/local/bin/initdb may be a lone symlink; the real directory
        # (where pg_ctl and postgres live) is behind it.
        for bindir in (path.parent, path.resolve().parent):
            if _has_server_tools(bindir):
                return bindir
        return path.parent
    return None


def _free_port() -> int:
    # Binding to port 0 lets the kernel choose an unused port. There is a
    # small race until the postmaster binds it; start() retries on that.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: pathlib.Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _world_traversable(path: pathlib.Path) -> bool:
    # The postgres user must be able to reach its data dir through every
    # parent directory (e.g. a TMPDIR inside root's home would not work).
    for parent in path.resolve().parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class PostgresServer:
    """A private PostgreSQL cluster in a temp dir, listening on 127.0.0.1.

    Usage::

        with PostgresServer() as pg:
            pg.create_database("t1")
            engine = sqlalchemy.create_engine(pg.url("t1"))
    """

    host: str = HOST

    def __init__(self, bindir: pathlib.Path | str | None = None) -> None:
        found = pathlib.Path(bindir) if bindir is not None else find_pg_bindir()
        if found is None:
            raise PostgresError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install "
                "the 'postgresql' package or set METERING_PG_BINDIR"
            )
        self.bindir: pathlib.Path = found
        self.port: int = 0
        self.basedir: pathlib.Path | None = None
        self._running = False
        self._as_root = os.geteuid() == 0

    # -- paths ------------------------------------------------------------

    def _base(self) -> pathlib.Path:
        if self.basedir is None:
            raise PostgresError("server has not been started")
        return self.basedir

    @property
    def datadir(self) -> pathlib.Path:
        return self._base() / "data"

    @property
    def sockdir(self) -> pathlib.Path:
        return self._base() / "sock"

    @property
    def logfile(self) -> pathlib.Path:
        return self._base() / "postgres.log"

    @property
    def running(self) -> bool:
        return self._running

    # -- helpers ----------------------------------------------------------

    def _tool(self, name: str) -> str:
        path = self.bindir / name
        if not path.is_file():
            raise PostgresError(f"{name} not found in {self.bindir} (check METERING_PG_BINDIR)")
        return str(path)

    def _run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PostgresError("running as root but 'runuser' is not available")
            cmd = [runuser, "-u", RUN_AS_USER, "--", *cmd]
        # Drop PG* variables (PGDATA, PGPORT, PGHOST, ...) from the caller's
        # environment so they cannot redirect the tools to another cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # cwd inside our own dir: the postgres user may not be able to read
        # the caller's cwd (e.g. /root), which initdb complains about.
        return subprocess.run(
            cmd,
            cwd=self._base(),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_SUBPROCESS_TIMEOUT_SECONDS,
            check=False,
        )

    def _make_basedir(self) -> pathlib.Path:
        parent: str | None = None
        if self._as_root and not _world_traversable(pathlib.Path(tempfile.gettempdir())):
            parent = "/tmp"
        base = pathlib.Path(tempfile.mkdtemp(prefix="metering-pg-", dir=parent))
        (base / "sock").mkdir()
        if self._as_root:
            # initdb creates data/ itself and pg_ctl creates the log file,
            # both as the postgres user, so it must own the whole tree.
            for p in (base, base / "sock"):
                shutil.chown(p, user=RUN_AS_USER, group=RUN_AS_USER)
        return base

    # -- lifecycle --------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb a fresh cluster and start it; returns self."""
        if self._running:
            return self
        initdb = self._tool("initdb")
        self._tool("pg_ctl")
        self.basedir = self._make_basedir()
        # Registered before anything can fail so the temp dir is removed
        # even when the test process exits without calling stop().
        atexit.register(self.stop)
        try:
            res = self._run(
                [
                    initdb,
                    "-D", str(self.datadir),
                    "-A", "trust",
                    "-U", SUPERUSER,
                    "--no-sync",
                    "-E", "UTF8",
                    "--locale=C",
                ]
            )  # fmt: skip
            if res.returncode != 0:
                raise PostgresError(
                    f"initdb failed (exit {res.returncode}):\n{res.stdout}{res.stderr}"
                )
            last_error: PostgresError | None = None
            for _ in range(_PORT_ATTEMPTS):
                self.port = _free_port()
                try:
                    self.start_server()
                    return self
                except PostgresError as exc:
                    last_error = exc
                    if "already in use" not in str(exc):
                        break
            assert last_error is not None
            raise last_error
        except BaseException:
            self.stop()
            raise

    def start_server(self) -> None:
        """(Re)start the server on the existing data dir and port.

        Together with ``stop_server()`` this lets tests simulate a database
        outage: data committed before the outage must still be there after.
        """
        if self._running:
            return
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={HOST}",
                f"-k {shlex.quote(str(self.sockdir))}",
                "-c max_connections=200",
                "-c shared_buffers=128MB",
            ]
        )
        res = self._run(
            [
                self._tool("pg_ctl"),
                "-w",
                "-t", str(_PG_CTL_WAIT_SECONDS),
                "-D", str(self.datadir),
                "-l", str(self.logfile),
                "-o", options,
                "start",
            ]
        )  # fmt: skip
        if res.returncode != 0:
            raise PostgresError(
                f"PostgreSQL failed to start on port {self.port} "
                f"(pg_ctl exit {res.returncode}):\n{res.stdout}{res.stderr}\n"
                f"--- last lines of {self.logfile} ---\n{_tail(self.logfile)}"
            )
        self._running = True

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data dir, so start_server() can resume.

        ``mode`` is passed to ``pg_ctl -m``: "fast" is a clean shutdown,
        "immediate" simulates a crash (recovery runs on the next start).
        """
        if not self._running:
            return
        res = self._run(
            [
                self._tool("pg_ctl"),
                "-w",
                "-t", str(_PG_CTL_WAIT_SECONDS),
                "-D", str(self.datadir),
                "-m", mode,
                "stop",
            ]
        )  # fmt: skip
        if res.returncode != 0:
            raise PostgresError(
                f"pg_ctl stop failed (exit {res.returncode}):\n{res.stdout}{res.stderr}\n"
                f"--- last lines of {self.logfile} ---\n{_tail(self.logfile)}"
            )
        self._running = False

    def stop(self) -> None:
        """Stop the server and delete its temp dir. Safe to call repeatedly."""
        atexit.unregister(self.stop)
        if self.basedir is None:
            return
        try:
            if self._running:
                self.stop_server("fast")
        finally:
            shutil.rmtree(self.basedir, ignore_errors=True)
            self.basedir = None
            self._running = False

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client side ------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL for ``dbname`` (psycopg 3 driver, no password)."""
        db = urllib.parse.quote(dbname, safe="")
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{db}"

    def admin_connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """Autocommit superuser connection to the ``postgres`` database.

        Autocommit because CREATE/DROP DATABASE cannot run in a transaction.
        """
        if not self._running:
            raise PostgresError("server is not running")
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE, optionally copied from ``template``.

        Copying a migrated template is much faster than re-running migrations
        per test; PostgreSQL requires the template to have no open sessions.
        """
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with self.admin_connect() as conn:
            conn.execute(query)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, terminating sessions still connected to it.

        WITH (FORCE) (PostgreSQL 13+) because a test that leaked a connection
        pool would otherwise make the drop fail and mask the real error.
        """
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.admin_connect() as conn:
            conn.execute(query)


def _main() -> int:
    bindir = find_pg_bindir()
    print(f"bindir: {bindir}")
    t0 = time.monotonic()
    with PostgresServer(bindir) as pg:
        ready = time.monotonic() - t0
        print(f"url: {pg.url('postgres')}")
        with pg.admin_connect() as conn:
            row = conn.execute("SELECT version()").fetchone()
        print(f"version: {row[0] if row else None}")
        print(f"start-to-ready: {ready:.2f}s")
    print(f"total (incl. stop): {time.monotonic() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
