"""Validation and limits for every field that comes from a caller."""

from __future__ import annotations

import re

from metering.domain.accounts import ID_LENGTH_MAX, SYSTEM_PREFIX, is_account_id, is_request_id
from metering.domain.errors import Violations

MODEL_LENGTH_MAX = 128
PROVIDER_LENGTH_MAX = 64
NAME_LENGTH_MAX = 128
REASON_LENGTH_MAX = 256
LABELS_COUNT_MAX = 16
LABEL_VALUE_LENGTH_MAX = 256
TEXT_LENGTH_MAX = 1_000_000
# 2000-01-01T00:00:00Z: older event times are mistakes (and predate every price).
EARLIEST_TIME_US = 946_684_800_000_000
# Relays' clocks drift; a day ahead is the most we accept.
FUTURE_SKEW_MAX_US = 24 * 3600 * 1_000_000

_LABEL_KEY = re.compile(r"[a-z0-9_.-]{1,64}")
_PROVIDER = re.compile(r"[a-z0-9_.-]{1,64}")


def _printable(value: str) -> bool:
    return value.isprintable()


def check_account_id(v: Violations, value: str, field: str = "account_id") -> None:
    if not value:
        v.add(field, "account_id is required")
    elif not is_account_id(value):
        v.add(field, f"account_id must be 1-{ID_LENGTH_MAX} characters of [A-Za-z0-9._:@/-]")


def check_new_account_id(v: Violations, value: str) -> None:
    check_account_id(v, value)
    if value.startswith(SYSTEM_PREFIX):
        v.add("account_id", f"account ids starting with {SYSTEM_PREFIX!r} are reserved")


def check_request_id(v: Violations, value: str) -> None:
    if not value:
        v.add("request_id", "request_id is required (the idempotency key)")
    elif not is_request_id(value):
        v.add("request_id", f"request_id must be 1-{ID_LENGTH_MAX} printable ASCII characters")


def check_model(v: Violations, value: str) -> None:
    if not value.strip():
        v.add("model", "model is required")
    elif len(value) > MODEL_LENGTH_MAX or not _printable(value):
        v.add("model", f"model must be at most {MODEL_LENGTH_MAX} printable characters")


def check_provider(v: Violations, value: str) -> None:
    if value and not _PROVIDER.fullmatch(value.lower()):
        v.add("provider", f"provider must be 1-{PROVIDER_LENGTH_MAX} characters of [a-z0-9_.-]")


def check_name(v: Violations, field: str, value: str, length_max: int = NAME_LENGTH_MAX) -> None:
    if len(value) > length_max or not _printable(value):
        v.add(field, f"{field} must be at most {length_max} printable characters")


def check_labels(v: Violations, labels: dict[str, str]) -> None:
    if len(labels) > LABELS_COUNT_MAX:
        v.add("labels", f"at most {LABELS_COUNT_MAX} labels")
        return
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            v.add(f"labels[{key[:64]!r}]", "label keys must be 1-64 characters of [a-z0-9_.-]")
        elif len(value) > LABEL_VALUE_LENGTH_MAX or not _printable(value):
            v.add(
                f"labels[{key!r}]",
                f"label values must be at most {LABEL_VALUE_LENGTH_MAX} printable characters",
            )


def check_time(v: Violations, field: str, time_us: int, now_us: int | None = None) -> None:
    if time_us < EARLIEST_TIME_US:
        v.add(field, f"{field} must not be before 2000-01-01T00:00:00Z")
    elif now_us is not None and time_us > now_us + FUTURE_SKEW_MAX_US:
        v.add(field, f"{field} must not be more than 24 hours in the future")
