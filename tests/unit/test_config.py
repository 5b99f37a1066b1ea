"""Settings: defaults, flags over environment, one-line ConfigErrors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from metering.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_LISTEN,
    ConfigError,
    check_database_url,
    load_settings,
    parse_listen,
)


def assert_one_line_naming(error: ConfigError, setting: str) -> None:
    message = str(error)
    assert message
    assert "\n" not in message and "\r" not in message
    assert setting in message, message


def test_defaults() -> None:
    settings = load_settings({})
    assert DEFAULT_LISTEN == "127.0.0.1:50051"
    assert DEFAULT_DATABASE_URL == "sqlite:///metering.db"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 50051)
    assert settings.listen == "127.0.0.1:50051"
    assert settings.database_url == "sqlite:///metering.db"
    assert settings.database_dialect == "sqlite"
    assert settings.prices_file is None
    assert settings.db_pool_size == 8
    assert settings.shutdown_grace_seconds == 10.0
    assert settings.max_message_bytes == 4 * 1024 * 1024
    assert settings.log_level == "INFO"


def test_empty_environment_values_mean_default() -> None:
    settings = load_settings({"METERING_LISTEN": "", "METERING_DATABASE_URL": ""})
    assert settings.listen == DEFAULT_LISTEN
    assert settings.database_url == DEFAULT_DATABASE_URL


def test_environment_is_read(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text("{}", encoding="utf-8")
    settings = load_settings(
        {
            "METERING_LISTEN": "0.0.0.0:6000",
            "METERING_DATABASE_URL": "postgresql+psycopg://u@db/metering",
            "METERING_PRICES_FILE": str(prices),
            "METERING_DB_POOL_SIZE": "20",
            "METERING_SHUTDOWN_GRACE_SECONDS": "30",
            "METERING_MAX_MESSAGE_BYTES": "65536",
            "METERING_LOG_LEVEL": "debug",
        }
    )
    assert settings.listen == "0.0.0.0:6000"
    assert settings.database_url == "postgresql+psycopg://u@db/metering"
    assert settings.database_dialect == "postgresql"
    assert settings.prices_file == prices
    assert settings.db_pool_size == 20
    assert settings.shutdown_grace_seconds == 30.0
    assert settings.max_message_bytes == 65536
    assert settings.log_level == "DEBUG"


def test_flags_beat_environment(tmp_path: Path) -> None:
    env_prices = tmp_path / "env.json"
    flag_prices = tmp_path / "flag.json"
    env_prices.write_text("{}", encoding="utf-8")
    flag_prices.write_text("{}", encoding="utf-8")
    env = {
        "METERING_LISTEN": "0.0.0.0:6000",
        "METERING_DATABASE_URL": "postgresql+psycopg://u@db/metering",
        "METERING_PRICES_FILE": str(env_prices),
    }
    settings = load_settings(
        env,
        listen="127.0.0.2:7000",
        database_url="sqlite:////tmp/flag.db",
        prices_file=str(flag_prices),
    )
    assert settings.listen == "127.0.0.2:7000"
    assert settings.database_url == "sqlite:////tmp/flag.db"
    assert settings.prices_file == flag_prices


def test_a_flag_hides_a_bad_environment_value() -> None:
    settings = load_settings(
        {"METERING_LISTEN": "garbage", "METERING_DATABASE_URL": "mysql://u@h/db"},
        listen="127.0.0.1:1",
        database_url="sqlite:///x.db",
    )
    assert (settings.listen_port, settings.database_url) == (1, "sqlite:///x.db")


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("127.0.0.1:50051", "127.0.0.1", 50051),
        ("127.0.0.1:0", "127.0.0.1", 0),
        ("localhost:65535", "localhost", 65535),
        ("[::1]:50051", "::1", 50051),
        ("[::]:8080", "::", 8080),
        ("metering.internal:443", "metering.internal", 443),
    ],
)
def test_parse_listen(value: str, host: str, port: int) -> None:
    assert parse_listen(value) == (host, port)


def test_ipv6_listen_is_bracketed_again() -> None:
    assert load_settings({}, listen="[::1]:50051").listen == "[::1]:50051"


@pytest.mark.parametrize(
    "value",
    [
        "localhost",  # no port
        "50051",
        ":50051",  # no host
        "localhost:",  # empty port
        "localhost:http",
        "localhost:50051x",
        "localhost:65536",
        "localhost:-1",
        "localhost:99999999999",
    ],
)
def test_bad_listen_from_environment(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"METERING_LISTEN": value})
    assert_one_line_naming(caught.value, "METERING_LISTEN")


@pytest.mark.parametrize("value", ["localhost", "host:port", "host:70000"])
def test_bad_listen_flag_names_the_flag(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, listen=value)
    assert_one_line_naming(caught.value, "--listen")


@pytest.mark.parametrize("value", ["host:50\n051", "host:\n", "host:1\r\n2"])
def test_listen_error_stays_one_line(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"METERING_LISTEN": value})
    assert_one_line_naming(caught.value, "METERING_LISTEN")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///metering.db", "sqlite:///metering.db"),
        ("sqlite:////var/lib/metering/m.db", "sqlite:////var/lib/metering/m.db"),
        ("sqlite://", "sqlite://"),
        (
            "postgresql+psycopg://u:pw@db:5432/metering",
            "postgresql+psycopg://u:pw@db:5432/metering",
        ),
        # plain postgresql:// gets the psycopg 3 driver, keeping the password
        ("postgresql://u:pw@db:5432/metering", "postgresql+psycopg://u:pw@db:5432/metering"),
        ("postgresql://u@db/metering", "postgresql+psycopg://u@db/metering"),
        ("postgresql://u:p%40ss@db/metering", "postgresql+psycopg://u:p%40ss@db/metering"),
        (
            "postgresql://u@db/metering?sslmode=require",
            "postgresql+psycopg://u@db/metering?sslmode=require",
        ),
    ],
)
def test_database_url(url: str, expected: str) -> None:
    assert check_database_url(url) == expected
    assert load_settings({"METERING_DATABASE_URL": url}).database_url == expected
    assert load_settings({}, database_url=url).database_url == expected


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "metering.db",
        "mysql://u:secret@h/db",
        "mysql+pymysql://u:secret@h/db",
        "mariadb://u:secret@h/db",
        "oracle://u:secret@h/db",
        "postgres://u:secret@h/db",
        "postgresql+asyncpg://u:secret@h/db",
        "postgresql+psycopg2://u:secret@h/db",
        "postgresql+pg8000://u:secret@h/db",
    ],
)
def test_bad_database_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"METERING_DATABASE_URL": url})
    assert_one_line_naming(caught.value, "METERING_DATABASE_URL")
    assert "secret" not in str(caught.value)  # never echo a password
    with pytest.raises(ConfigError) as caught:
        load_settings({}, database_url=url)
    assert_one_line_naming(caught.value, "--database-url")


def test_mysql_is_named_unsupported() -> None:
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        check_database_url("mysql://u@h/db")


@pytest.mark.parametrize("value", ["0", "201", "-1", "eight", "", "8.5", "1e3"])
def test_bad_pool_size(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"METERING_DB_POOL_SIZE": value})
    assert_one_line_naming(caught.value, "METERING_DB_POOL_SIZE")


@pytest.mark.parametrize(("value", "size"), [("1", 1), ("200", 200), (" 16 ", 16)])
def test_pool_size_bounds(value: str, size: int) -> None:
    assert load_settings({"METERING_DB_POOL_SIZE": value}).db_pool_size == size


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METERING_SHUTDOWN_GRACE_SECONDS", "-1"),
        ("METERING_SHUTDOWN_GRACE_SECONDS", "601"),
        ("METERING_SHUTDOWN_GRACE_SECONDS", "soon"),
        ("METERING_MAX_MESSAGE_BYTES", "1024"),
        ("METERING_MAX_MESSAGE_BYTES", str(64 * 1024 * 1024 + 1)),
        ("METERING_MAX_MESSAGE_BYTES", "4MB"),
        ("METERING_LOG_LEVEL", "VERBOSE"),
        ("METERING_LOG_LEVEL", "critical"),
    ],
)
def test_other_bad_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    assert_one_line_naming(caught.value, name)


def test_missing_prices_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as caught:
        load_settings({"METERING_PRICES_FILE": str(missing)})
    assert_one_line_naming(caught.value, "METERING_PRICES_FILE")
    # A directory is not a prices file either.
    with pytest.raises(ConfigError) as caught:
        load_settings({"METERING_PRICES_FILE": str(tmp_path)})
    assert_one_line_naming(caught.value, "METERING_PRICES_FILE")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
