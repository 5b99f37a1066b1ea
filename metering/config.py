"""Settings: one frozen object from flags and METERING_* environment variables.

Flags win over the environment, the environment over defaults. Every value
is validated at start-up; a bad one raises ConfigError with a one-line
message naming the setting.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATABASE_URL = "sqlite:///metering.db"


# Host names, IPv4 and IPv6 literals; nothing that could smuggle whitespace.
_HOST = re.compile(r"[A-Za-z0-9.\-:%]{1,253}")


class ConfigError(ValueError):
    """A setting is invalid; the message is one line naming it."""


@dataclass(frozen=True)
class Settings:
    listen_host: str
    listen_port: int
    database_url: str
    prices_file: Path | None
    db_pool_size: int
    shutdown_grace_seconds: float
    max_message_bytes: int
    log_level: str
    tokenizers_file: Path | None = None
    group_commit_linger_ms: int = 2
    group_commit_records_max: int = 500
    workers: int = 1
    # Where the group commit writes: "process" (a child process: the writer and gRPC
    # run on two cores) or "thread" (one process; needed for an in-memory database).
    writer: str = "process"
    reservation_sweep_ms: int = 1000
    # A warning when this share of a model's calls in 5 minutes had no reported usage.
    unmeasured_warn_percent: int = 5
    # Set by `serve --workers N` for its worker processes, which share one port.
    reuse_port: bool = False
    # Observability (metering.telemetry): "auto" is text on a terminal, JSON otherwise.
    log_format: str = "auto"
    otlp_endpoint: str | None = None
    prometheus_port: int | None = None
    # Per-caller rate limits (metering.api.ratelimit), per process: tokens per second
    # (0: unlimited) and burst of the estimate, summary and import method groups.
    rate_limit_estimate_per_second: float = 200.0
    rate_limit_estimate_burst: int = 400
    rate_limit_summary_per_second: float = 20.0
    rate_limit_summary_burst: int = 40
    rate_limit_import_per_second: float = 1.0
    rate_limit_import_burst: int = 2
    rate_limit_max_callers: int = 10_000

    @property
    def listen(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"

    @property
    def database_dialect(self) -> str:
        return make_url(self.database_url).get_backend_name()


def parse_listen(value: str, name: str = "METERING_LISTEN") -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}={value!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(f"{name}={value!r}: write an IPv6 address in brackets, e.g. [::1]:50051")
    host = host.strip("[]")
    if not _HOST.fullmatch(host):
        raise ConfigError(f"{name}={value!r}: {host!r} is not a host name or IP address")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={value!r}: port must be in 0-65535")
    return host, port


WRITERS = ("process", "thread")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    chosen = value.strip().lower()
    if chosen not in choices:
        raise ConfigError(f"{name}={value!r}: use {' or '.join(choices)}")
    return chosen


def _int(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: not an integer") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}={value!r}: must be in [{low}, {high}]")
    return number


def check_database_url(value: str, name: str = "METERING_DATABASE_URL") -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(
            f"{name}: not a database URL; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"{name}: unsupported database {backend!r}; use sqlite or postgresql")
    if backend == "postgresql":
        # A bare postgresql:// means psycopg 3 here; other drivers are not installed.
        if url.drivername == "postgresql":
            return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        if url.drivername != "postgresql+psycopg":
            raise ConfigError(f"{name}: use the psycopg 3 driver: postgresql+psycopg://...")
    return value


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name)
    if not value:
        return None
    if not Path(value).is_file():
        raise ConfigError(f"{name}={value!r}: no such file")
    return Path(value)


RATE_LIMIT_PER_SECOND_MAX = 1_000_000.0


def _rate(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: not a number") from None
    if not 0 <= number <= RATE_LIMIT_PER_SECOND_MAX:  # also refuses nan
        raise ConfigError(f"{name}={value!r}: must be in [0, 1000000] (0: unlimited)")
    return number


def _rate_limit(env: Mapping[str, str], group: str, default: float) -> tuple[float, int]:
    """METERING_RATE_LIMIT_<GROUP>_PER_SECOND and _BURST (default: twice the rate, at least 1)."""
    prefix = f"METERING_RATE_LIMIT_{group.upper()}"
    rate = _rate(
        env.get(f"{prefix}_PER_SECOND", "").strip() or str(default), f"{prefix}_PER_SECOND"
    )
    burst_text = env.get(f"{prefix}_BURST", "").strip()
    burst = (
        _int(burst_text, f"{prefix}_BURST", 1, 100_000_000)
        if burst_text
        else max(1, math.ceil(2 * rate))
    )
    return rate, burst


_OTLP_URL = re.compile(r"https?://[^\s/?#]+(/\S*)?")


def _otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """METERING_OTLP_ENDPOINT, else the standard OTEL_EXPORTER_OTLP_ENDPOINT; None: no OTLP."""
    for name in ("METERING_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = env.get(name, "").strip()
        if not value:
            continue
        if not _OTLP_URL.fullmatch(value):
            # The value is not echoed: an endpoint URL may carry credentials.
            raise ConfigError(
                f"{name}: expected http://HOST:PORT (plaintext) or https://HOST:PORT (TLS)"
            )
        return value
    return None


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    listen: str | None = None,
    database_url: str | None = None,
    prices_file: str | None = None,
) -> Settings:
    """Build and validate the settings; raise ConfigError on the first bad value."""
    env = os.environ if env is None else env
    listen_value = listen or env.get("METERING_LISTEN") or DEFAULT_LISTEN
    host, port = parse_listen(listen_value, "--listen" if listen else "METERING_LISTEN")
    url = check_database_url(
        database_url or env.get("METERING_DATABASE_URL") or DEFAULT_DATABASE_URL,
        "--database-url" if database_url else "METERING_DATABASE_URL",
    )
    prices_text = prices_file or env.get("METERING_PRICES_FILE")
    prices_path = Path(prices_text) if prices_text else None
    if prices_path is not None and not prices_path.is_file():
        source = "--prices-file" if prices_file else "METERING_PRICES_FILE"
        raise ConfigError(f"{source}={prices_text!r}: no such file")
    log_level = env.get("METERING_LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"METERING_LOG_LEVEL={log_level!r}: use DEBUG, INFO, WARNING or ERROR")
    log_format = env.get("METERING_LOG_FORMAT", "auto").strip().lower() or "auto"
    if log_format not in ("auto", "json", "text"):
        raise ConfigError(f"METERING_LOG_FORMAT={log_format!r}: use json, text or auto")
    prometheus_text = env.get("METERING_PROMETHEUS_PORT", "").strip()
    estimate_rate, estimate_burst = _rate_limit(env, "estimate", 200.0)
    summary_rate, summary_burst = _rate_limit(env, "summary", 20.0)
    import_rate, import_burst = _rate_limit(env, "import", 1.0)
    return Settings(
        listen_host=host,
        listen_port=port,
        database_url=url,
        prices_file=prices_path,
        db_pool_size=_int(env.get("METERING_DB_POOL_SIZE", "8"), "METERING_DB_POOL_SIZE", 1, 200),
        shutdown_grace_seconds=float(
            _int(
                env.get("METERING_SHUTDOWN_GRACE_SECONDS", "10"),
                "METERING_SHUTDOWN_GRACE_SECONDS",
                0,
                600,
            )
        ),
        max_message_bytes=_int(
            env.get("METERING_MAX_MESSAGE_BYTES", str(4 * 1024 * 1024)),
            "METERING_MAX_MESSAGE_BYTES",
            64 * 1024,
            64 * 1024 * 1024,
        ),
        log_level=log_level,
        tokenizers_file=_existing_file(env, "METERING_TOKENIZERS_FILE"),
        group_commit_linger_ms=_int(
            env.get("METERING_GROUP_COMMIT_LINGER_MS", "2"), "METERING_GROUP_COMMIT_LINGER_MS", 0, 5
        ),
        workers=_int(env.get("METERING_WORKERS", "1"), "METERING_WORKERS", 1, 64),
        writer=_choice(env.get("METERING_WRITER", "process"), "METERING_WRITER", WRITERS),
        reservation_sweep_ms=_int(
            env.get("METERING_RESERVATION_SWEEP_MS", "1000"),
            "METERING_RESERVATION_SWEEP_MS",
            50,
            600_000,
        ),
        unmeasured_warn_percent=_int(
            env.get("METERING_UNMEASURED_WARN_PERCENT", "5"),
            "METERING_UNMEASURED_WARN_PERCENT",
            1,
            100,
        ),
        reuse_port=env.get("METERING_REUSE_PORT") == "1",
        group_commit_records_max=_int(
            env.get("METERING_GROUP_COMMIT_RECORDS_MAX", "500"),
            "METERING_GROUP_COMMIT_RECORDS_MAX",
            1,
            1000,
        ),
        log_format=log_format,
        otlp_endpoint=_otlp_endpoint(env),
        prometheus_port=(
            _int(prometheus_text, "METERING_PROMETHEUS_PORT", 0, 65535) if prometheus_text else None
        ),
        rate_limit_estimate_per_second=estimate_rate,
        rate_limit_estimate_burst=estimate_burst,
        rate_limit_summary_per_second=summary_rate,
        rate_limit_summary_burst=summary_burst,
        rate_limit_import_per_second=import_rate,
        rate_limit_import_burst=import_burst,
        rate_limit_max_callers=_int(
            env.get("METERING_RATE_LIMIT_MAX_CALLERS", "").strip() or "10000",
            "METERING_RATE_LIMIT_MAX_CALLERS",
            1,
            10_000_000,
        ),
    )


# Security (authentication and TLS) ------------------------------------------


@dataclass(frozen=True)
class SecuritySettings:
    """How `serve` authenticates callers and whether it speaks TLS."""

    auth: str  # "none" or "token"
    allow_unauthenticated: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (host names other than localhost:
    no, they may resolve to anything)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def load_security_settings(
    env: Mapping[str, str] | None = None, listen_host: str = "127.0.0.1"
) -> SecuritySettings:
    """METERING_AUTH (default: ``none`` on loopback, ``token`` elsewhere), the non-loopback
    rule, METERING_TLS_*; raise ConfigError on the first bad value."""
    env = os.environ if env is None else env
    loopback = is_loopback(listen_host)
    auth = env.get("METERING_AUTH") or ("none" if loopback else "token")
    if auth not in ("none", "token"):
        raise ConfigError(f"METERING_AUTH={auth!r}: use none or token")
    allow = env.get("METERING_ALLOW_UNAUTHENTICATED", "").lower() in ("1", "true", "yes")
    if auth == "none" and not loopback and not allow:
        raise ConfigError(
            f"refusing to serve without authentication on non-loopback address {listen_host}: "
            "set METERING_AUTH=token (tokens: `metering tokens create`), listen on 127.0.0.1, "
            "or set METERING_ALLOW_UNAUTHENTICATED=1"
        )
    cert = _existing_file(env, "METERING_TLS_CERT_FILE")
    key = _existing_file(env, "METERING_TLS_KEY_FILE")
    client_ca = _existing_file(env, "METERING_TLS_CLIENT_CA_FILE")
    if (cert is None) != (key is None):
        raise ConfigError("METERING_TLS_CERT_FILE and METERING_TLS_KEY_FILE go together")
    if client_ca is not None and cert is None:
        raise ConfigError("METERING_TLS_CLIENT_CA_FILE needs METERING_TLS_CERT_FILE/KEY_FILE")
    return SecuritySettings(
        auth=auth,
        allow_unauthenticated=allow,
        tls_cert_file=cert,
        tls_key_file=key,
        tls_client_ca_file=client_ca,
    )
