"""What a call without usage is recorded as, and charged: the missing-usage policy.

A stream that ends without a usage block (or a provider block of all zeros
next to a completion) is the oldest way relays lose money. When the relay
sent the texts, metering estimates the usage (ESTIMATED); otherwise the call
is recorded as MISSING, one request with zero tokens flagged for review, and
charged the policy's fallback. Policies are scoped to an account, a provider
and a model (empty means any); the most specific one applies.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from metering.domain.errors import Violations
from metering.domain.money import AMOUNT_NANOS_MAX, is_currency_code


class Fallback(enum.Enum):
    """What a MISSING call is charged."""

    NONE = "NONE"  # nothing beyond what zero tokens cost under its price
    FLAT_FEE = "FLAT_FEE"  # the policy's fee per call
    RESERVATION = "RESERVATION"  # the captured hold's amount, when the record captures one


@dataclass(frozen=True)
class MissingUsagePolicy:
    account_id: str = ""
    provider: str = ""
    model: str = ""
    estimate_disabled: bool = False
    fallback: Fallback = Fallback.RESERVATION
    flat_fee_nanos: int = 0
    currency_code: str = "USD"

    @property
    def scope(self) -> tuple[str, str, str]:
        return (self.account_id, self.provider, self.model)

    def specificity(self) -> tuple[bool, bool, bool]:
        """Orders policies: an account's before a provider's before a model's."""
        return (bool(self.account_id), bool(self.provider), bool(self.model))

    def matches(self, account_id: str, provider: str, model: str) -> bool:
        return (
            self.account_id in ("", account_id)
            and self.provider in ("", provider.lower())
            and self.model in ("", model)
        )

    def fee_for(self, currency_code: str) -> int:
        """The flat fee in an account's currency; none for another currency."""
        if self.fallback is not Fallback.FLAT_FEE or currency_code != self.currency_code:
            return 0
        return self.flat_fee_nanos

    def check(self, v: Violations) -> None:
        if self.fallback is Fallback.FLAT_FEE:
            if not 0 < self.flat_fee_nanos <= AMOUNT_NANOS_MAX:
                v.add("policy.flat_fee", "a FLAT_FEE policy needs a positive flat_fee")
            if not is_currency_code(self.currency_code):
                v.add("policy.flat_fee.currency_code", "currency_code must be an ISO 4217 code")
        elif self.flat_fee_nanos:
            v.add("policy.flat_fee", "flat_fee is only for the FLAT_FEE fallback")


# The documented default: estimate when the relay sent the texts; otherwise
# record MISSING and charge the captured hold, if any (the relay authorized
# the worst case; an abandoned stream is billed at it), else nothing.
DEFAULT_POLICY = MissingUsagePolicy()


def policy_for(
    policies: Iterable[MissingUsagePolicy], account_id: str, provider: str, model: str
) -> MissingUsagePolicy:
    """The most specific policy matching the call, else the default."""
    best: MissingUsagePolicy | None = None
    for policy in policies:
        if policy.matches(account_id, provider, model) and (
            best is None or policy.specificity() > best.specificity()
        ):
            best = policy
    return best or DEFAULT_POLICY
