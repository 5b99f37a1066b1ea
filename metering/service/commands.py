"""Inputs and results of the use cases, free of gRPC types."""

from __future__ import annotations

from dataclasses import dataclass, field

from metering.domain.accounts import BillingMode, RequestAsset, UnpricedPolicy
from metering.domain.reservations import ExpiryPolicy, ReservationState
from metering.domain.summary import Granularity, GroupKey
from metering.domain.usage import TokenUsage, UsageSource


@dataclass(frozen=True)
class RecordUsage:
    account_id: str
    request_id: str
    model: str
    provider: str = ""
    usage: TokenUsage | None = None
    api_key_id: str = ""
    service: str = ""
    event_time_us: int | None = None
    streamed: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    batch: bool = False
    # Instead of usage: the provider's raw response body or SSE tail.
    response_json: bytes = b""
    response_format: str = ""
    reservation_id: str = ""
    # For an estimate when no usage is known: the request body or prompt, and the completion.
    request_json: bytes = b""
    request_format: str = ""
    prompt_text: str = ""
    completion_text: str = ""


@dataclass(frozen=True)
class RecordResult:
    record_id: str
    cost_nanos: int
    currency_code: str
    balance_nanos: int
    request_credits_charged: int
    request_credits: int
    usage_source: UsageSource
    price_id: str
    price_version: int
    balance_exhausted: bool
    replayed: bool = False
    unpriced: bool = False
    usage: TokenUsage | None = None
    reservation_held_nanos: int = 0
    reservation_exceeded: bool = False
    # The tightest applicable budget after this record, and soft limits exceeded.
    budget_id: str = ""
    budget_headroom: int = 0
    budget_warnings: tuple[str, ...] = ()
    # For a MISSING record: the fallback that priced it (a Fallback value).
    missing_fallback: str = ""


@dataclass(frozen=True)
class CreateAccount:
    account_id: str
    # The tenant owning the account (the API layer has checked the caller may use it).
    tenant_id: str | None = None
    currency_code: str = "USD"
    billing_mode: BillingMode = BillingMode.TOKEN
    allow_negative_balance: bool = False
    unpriced_policy: UnpricedPolicy = UnpricedPolicy.REJECT
    price_adjustment_bps: int = 0
    request_asset: RequestAsset = RequestAsset.CREDITS
    default_request_price_nanos: int = 0
    default_request_credits: int = 1
    reservation_expiry_policy: ExpiryPolicy = ExpiryPolicy.RELEASE
    time_zone: str = "UTC"


@dataclass(frozen=True)
class UpdateAccount:
    """New values for the named settings of an account; other settings stay."""

    account_id: str
    changes: dict[str, object]


@dataclass(frozen=True)
class GrantCredits:
    account_id: str
    request_id: str
    amount_nanos: int = 0
    currency_code: str = ""
    request_credits: int = 0
    reason: str = ""


@dataclass(frozen=True)
class GrantResult:
    transaction_id: str
    balance_nanos: int
    currency_code: str
    request_credits: int
    replayed: bool = False


@dataclass(frozen=True)
class Balance:
    account_id: str
    currency_code: str
    billing_mode: BillingMode
    allow_negative_balance: bool
    balance_nanos: int
    held_nanos: int
    request_credits: int
    balance_exhausted: bool
    held_credits: int = 0

    @property
    def available_nanos(self) -> int:
        return self.balance_nanos - self.held_nanos


@dataclass(frozen=True)
class EstimateTokens:
    model: str
    provider: str = ""
    text: str = ""
    completion_text: str = ""
    max_output_tokens: int = 0
    account_id: str = ""
    request_json: bytes = b""
    request_format: str = ""


@dataclass(frozen=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    exact: bool
    tokenizer: str
    currency_code: str
    estimated_cost_nanos: int | None
    worst_case_cost_nanos: int | None
    price_id: str
    price_version: int
    request_format: str = ""
    max_output_tokens: int = 0


@dataclass(frozen=True)
class SummaryQuery:
    start_us: int | None
    end_us: int | None
    account_id: str = ""
    granularity: Granularity = Granularity.NONE
    time_zone: str = "UTC"
    group_by: tuple[GroupKey, ...] = ()
    page_size: int = 0
    page_token: str = ""
    currency_code: str = ""
    usage_sources: tuple[UsageSource, ...] = ()


@dataclass(frozen=True)
class AuthorizeUsage:
    account_id: str
    request_id: str
    model: str = ""
    provider: str = ""
    amount_nanos: int | None = None
    currency_code: str = ""
    request_json: bytes = b""
    request_format: str = ""
    input_tokens: int = 0
    max_output_tokens: int = 0
    ttl_us: int | None = None
    api_key_id: str = ""


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    reservation_id: str
    deny_reason: str
    currency_code: str
    held_nanos: int
    held_credits: int
    available_nanos: int
    available_credits: int
    expire_time_us: int
    replayed: bool = False
    budget_id: str = ""
    budget_headroom: int = 0
    budget_warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Release:
    state: ReservationState
    currency_code: str
    available_nanos: int


@dataclass(frozen=True)
class CorrectUsage:
    """A later, authoritative figure for a recorded call."""

    account_id: str
    request_id: str
    usage: TokenUsage | None = None
    response_json: bytes = b""
    response_format: str = ""
    # An exact cost in the account's currency instead of pricing the usage.
    cost_nanos: int | None = None
    cost_currency_code: str = ""
    correction_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class CorrectionResult:
    corrects_record_id: str
    usage: TokenUsage
    cost_nanos: int
    usage_difference: TokenUsage
    cost_difference_nanos: int
    currency_code: str
    balance_nanos: int
    transaction_id: str
    replayed: bool = False
