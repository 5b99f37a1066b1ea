"""Retry policy: exponential backoff with full jitter on transient failures."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

from metering_client.errors import RETRYABLE_CODES


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying a call.

    A call is retried only on the codes in ``retry_codes`` (UNAVAILABLE and
    DEADLINE_EXCEEDED by default: the service was not reached, or did not answer
    in time), with the *same* request message, hence the same ``request_id``;
    the service's idempotency makes that safe for RecordUsage,
    RecordUsageBatch, GrantCredits and CorrectUsage (whose ``correction_id`` is
    derived from the payload when not given). Errors that would fail again
    (INVALID_ARGUMENT, NOT_FOUND, REQUEST_ID_CONFLICT, PRICE_NOT_FOUND, ...)
    are never retried.

    The wait before retry ``n`` (1-based) is uniform in
    ``[0, min(max_backoff, initial_backoff * multiplier ** (n - 1))]``
    ("full jitter"), so that many relays that lost the service at once do not
    come back in lockstep.

    Attributes:
        max_attempts: total attempts, the first included (1 disables retries).
        initial_backoff: the cap of the first wait, in seconds.
        max_backoff: the largest cap of any wait, in seconds.
        multiplier: growth of the cap per attempt.
        total_timeout: a budget in seconds for all attempts and waits together;
            ``None`` for no budget (``max_attempts`` still bounds the retries).
        retry_codes: the gRPC codes that are retried.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    total_timeout: float | None = 30.0
    retry_codes: frozenset[grpc.StatusCode] = field(default=RETRYABLE_CODES)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait in seconds after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return (rng or random).uniform(0.0, cap)

    def next_delay(self, attempt: int, code: grpc.StatusCode, elapsed: float) -> float | None:
        """The wait before the next attempt, or ``None`` when the call must fail now."""
        if code not in self.retry_codes or attempt >= self.max_attempts:
            return None
        delay = self.backoff(attempt)
        if self.total_timeout is not None and elapsed + delay >= self.total_timeout:
            return None
        return delay


#: A policy that never retries.
NO_RETRY = RetryPolicy(max_attempts=1)
