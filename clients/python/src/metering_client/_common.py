"""Pieces shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

from metering_client import __version__

M = TypeVar("M", bound=Message)

#: The default per-attempt deadline of a call, in seconds.
DEFAULT_TIMEOUT = 10.0
#: The default target (the server's default --listen).
DEFAULT_TARGET = "127.0.0.1:50051"

Metadata = Sequence[tuple[str, str | bytes]]


def channel_options(
    options: Sequence[tuple[str, Any]] | None,
) -> list[tuple[str, Any]]:
    """Channel options with the client's user agent and sane reconnect backoff."""
    merged: dict[str, Any] = {
        "grpc.primary_user_agent": f"metering-client-python/{__version__}",
        # Reconnect quickly after the service restarts: the retry policy owns the
        # waiting, the channel should not add a long reconnect backoff of its own.
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.min_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 2000,
        # The client retries itself (same request_id); gRPC's transparent retries
        # are harmless but its configurable retry policy is left off.
        "grpc.enable_retries": 1,
    }
    merged.update(dict(options or ()))
    return list(merged.items())


def build_request(cls: type[M], request: M | Mapping[str, Any] | None, fields: dict[str, Any]) -> M:
    """The request message: as given, from a mapping, or from keyword fields.

    Nested messages may be given as dicts of proto field names, e.g.
    ``usage={"input_tokens": 10}``.
    """
    if request is not None and fields:
        raise TypeError("pass either a request message or keyword fields, not both")
    if request is None:
        return cls(**fields)
    if isinstance(request, cls):
        return request
    if isinstance(request, Mapping):
        return cls(**request)
    raise TypeError(f"expected {cls.__name__}, a mapping or keyword fields, got {type(request)!r}")


def merge_metadata(base: Metadata, extra: Metadata | None) -> list[tuple[str, str | bytes]] | None:
    """The client's default metadata followed by a call's own."""
    merged = list(base) + list(extra or ())
    return merged or None
