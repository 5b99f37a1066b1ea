import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from metering_client.v1 import metering_service_pb2 as _metering_service_pb2
from metering_client.v1 import prices_pb2 as _prices_pb2
from metering_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_KIND_UNSPECIFIED: _ClassVar[ExportKind]
    EXPORT_KIND_RECORDS: _ClassVar[ExportKind]
    EXPORT_KIND_SUMMARY: _ClassVar[ExportKind]

class UpstreamFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSTREAM_FORMAT_UNSPECIFIED: _ClassVar[UpstreamFormat]
    UPSTREAM_FORMAT_OPENAI_USAGE: _ClassVar[UpstreamFormat]
    UPSTREAM_FORMAT_OPENAI_COSTS: _ClassVar[UpstreamFormat]
    UPSTREAM_FORMAT_ANTHROPIC_USAGE: _ClassVar[UpstreamFormat]
    UPSTREAM_FORMAT_ANTHROPIC_COST: _ClassVar[UpstreamFormat]
    UPSTREAM_FORMAT_GENERIC_CSV: _ClassVar[UpstreamFormat]

class DiscrepancyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCREPANCY_KIND_UNSPECIFIED: _ClassVar[DiscrepancyKind]
    DISCREPANCY_KIND_MATCHED: _ClassVar[DiscrepancyKind]
    DISCREPANCY_KIND_LOCAL_ONLY: _ClassVar[DiscrepancyKind]
    DISCREPANCY_KIND_UPSTREAM_ONLY: _ClassVar[DiscrepancyKind]
    DISCREPANCY_KIND_TOKENS: _ClassVar[DiscrepancyKind]
    DISCREPANCY_KIND_COST: _ClassVar[DiscrepancyKind]

class BudgetPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_PERIOD_UNSPECIFIED: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_DAY: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_MONTH: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_ROLLING: _ClassVar[BudgetPeriod]

class BudgetMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_METRIC_UNSPECIFIED: _ClassVar[BudgetMetric]
    BUDGET_METRIC_COST: _ClassVar[BudgetMetric]
    BUDGET_METRIC_TOKENS: _ClassVar[BudgetMetric]
    BUDGET_METRIC_REQUESTS: _ClassVar[BudgetMetric]
    BUDGET_METRIC_BALANCE_FLOOR: _ClassVar[BudgetMetric]
EXPORT_KIND_UNSPECIFIED: ExportKind
EXPORT_KIND_RECORDS: ExportKind
EXPORT_KIND_SUMMARY: ExportKind
UPSTREAM_FORMAT_UNSPECIFIED: UpstreamFormat
UPSTREAM_FORMAT_OPENAI_USAGE: UpstreamFormat
UPSTREAM_FORMAT_OPENAI_COSTS: UpstreamFormat
UPSTREAM_FORMAT_ANTHROPIC_USAGE: UpstreamFormat
UPSTREAM_FORMAT_ANTHROPIC_COST: UpstreamFormat
UPSTREAM_FORMAT_GENERIC_CSV: UpstreamFormat
DISCREPANCY_KIND_UNSPECIFIED: DiscrepancyKind
DISCREPANCY_KIND_MATCHED: DiscrepancyKind
DISCREPANCY_KIND_LOCAL_ONLY: DiscrepancyKind
DISCREPANCY_KIND_UPSTREAM_ONLY: DiscrepancyKind
DISCREPANCY_KIND_TOKENS: DiscrepancyKind
DISCREPANCY_KIND_COST: DiscrepancyKind
BUDGET_PERIOD_UNSPECIFIED: BudgetPeriod
BUDGET_PERIOD_DAY: BudgetPeriod
BUDGET_PERIOD_MONTH: BudgetPeriod
BUDGET_PERIOD_ROLLING: BudgetPeriod
BUDGET_METRIC_UNSPECIFIED: BudgetMetric
BUDGET_METRIC_COST: BudgetMetric
BUDGET_METRIC_TOKENS: BudgetMetric
BUDGET_METRIC_REQUESTS: BudgetMetric
BUDGET_METRIC_BALANCE_FLOOR: BudgetMetric

class MissingUsagePolicy(_message.Message):
    __slots__ = ("account_id", "provider", "model", "estimate_disabled", "fallback", "flat_fee")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_DISABLED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FLAT_FEE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    provider: str
    model: str
    estimate_disabled: bool
    fallback: _types_pb2.MissingUsageFallback
    flat_fee: _types_pb2.Money
    def __init__(self, account_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., estimate_disabled: _Optional[bool] = ..., fallback: _Optional[_Union[_types_pb2.MissingUsageFallback, str]] = ..., flat_fee: _Optional[_Union[_types_pb2.Money, _Mapping]] = ...) -> None: ...

class SetMissingUsagePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: MissingUsagePolicy
    def __init__(self, policy: _Optional[_Union[MissingUsagePolicy, _Mapping]] = ...) -> None: ...

class SetMissingUsagePolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: MissingUsagePolicy
    def __init__(self, policy: _Optional[_Union[MissingUsagePolicy, _Mapping]] = ...) -> None: ...

class ListMissingUsagePoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMissingUsagePoliciesResponse(_message.Message):
    __slots__ = ("policies", "default_policy")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[MissingUsagePolicy]
    default_policy: MissingUsagePolicy
    def __init__(self, policies: _Optional[_Iterable[_Union[MissingUsagePolicy, _Mapping]]] = ..., default_policy: _Optional[_Union[MissingUsagePolicy, _Mapping]] = ...) -> None: ...

class DeleteMissingUsagePolicyRequest(_message.Message):
    __slots__ = ("account_id", "provider", "model")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    provider: str
    model: str
    def __init__(self, account_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class DeleteMissingUsagePolicyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReviewRecordsRequest(_message.Message):
    __slots__ = ("account_id", "start_time", "end_time", "estimated_share_min_basis_points", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SHARE_MIN_BASIS_POINTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    estimated_share_min_basis_points: int
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., estimated_share_min_basis_points: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReviewRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_types_pb2.UsageRecordView]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[_types_pb2.UsageRecordView, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportUsageRequest(_message.Message):
    __slots__ = ("account_id", "start_time", "end_time", "kind", "time_zone", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    kind: ExportKind
    time_zone: str
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[ExportKind, str]] = ..., time_zone: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class ExportTotals(_message.Message):
    __slots__ = ("row_count", "request_count", "cost", "request_credits", "usage")
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    row_count: int
    request_count: int
    cost: _containers.RepeatedCompositeFieldContainer[_types_pb2.Money]
    request_credits: int
    usage: _types_pb2.TokenUsage
    def __init__(self, row_count: _Optional[int] = ..., request_count: _Optional[int] = ..., cost: _Optional[_Iterable[_Union[_types_pb2.Money, _Mapping]]] = ..., request_credits: _Optional[int] = ..., usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ...) -> None: ...

class ExportUsageResponse(_message.Message):
    __slots__ = ("record", "row", "totals", "resume_token")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    record: _types_pb2.UsageRecordView
    row: _metering_service_pb2.UsageSummaryRow
    totals: ExportTotals
    resume_token: str
    def __init__(self, record: _Optional[_Union[_types_pb2.UsageRecordView, _Mapping]] = ..., row: _Optional[_Union[_metering_service_pb2.UsageSummaryRow, _Mapping]] = ..., totals: _Optional[_Union[ExportTotals, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class Discrepancy(_message.Message):
    __slots__ = ("kind", "day", "model", "api_key_id", "request_id", "account_id", "local_request_count", "upstream_request_count", "local_usage", "upstream_usage", "local_cost", "upstream_cost", "cost_difference", "applied", "problem")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_USAGE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_USAGE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_COST_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_COST_FIELD_NUMBER: _ClassVar[int]
    COST_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    kind: DiscrepancyKind
    day: str
    model: str
    api_key_id: str
    request_id: str
    account_id: str
    local_request_count: int
    upstream_request_count: int
    local_usage: _types_pb2.TokenUsage
    upstream_usage: _types_pb2.TokenUsage
    local_cost: _types_pb2.Money
    upstream_cost: _types_pb2.Money
    cost_difference: _types_pb2.Money
    applied: bool
    problem: str
    def __init__(self, kind: _Optional[_Union[DiscrepancyKind, str]] = ..., day: _Optional[str] = ..., model: _Optional[str] = ..., api_key_id: _Optional[str] = ..., request_id: _Optional[str] = ..., account_id: _Optional[str] = ..., local_request_count: _Optional[int] = ..., upstream_request_count: _Optional[int] = ..., local_usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., upstream_usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., local_cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., upstream_cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., cost_difference: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., applied: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("export_data", "format", "provider", "account_id", "key_map", "token_tolerance", "cost_tolerance_nanos", "apply", "start_day", "end_day", "tokens_only")
    class KeyMapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXPORT_DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MAP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    COST_TOLERANCE_NANOS_FIELD_NUMBER: _ClassVar[int]
    APPLY_FIELD_NUMBER: _ClassVar[int]
    START_DAY_FIELD_NUMBER: _ClassVar[int]
    END_DAY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_ONLY_FIELD_NUMBER: _ClassVar[int]
    export_data: bytes
    format: UpstreamFormat
    provider: str
    account_id: str
    key_map: _containers.ScalarMap[str, str]
    token_tolerance: int
    cost_tolerance_nanos: int
    apply: bool
    start_day: str
    end_day: str
    tokens_only: bool
    def __init__(self, export_data: _Optional[bytes] = ..., format: _Optional[_Union[UpstreamFormat, str]] = ..., provider: _Optional[str] = ..., account_id: _Optional[str] = ..., key_map: _Optional[_Mapping[str, str]] = ..., token_tolerance: _Optional[int] = ..., cost_tolerance_nanos: _Optional[int] = ..., apply: _Optional[bool] = ..., start_day: _Optional[str] = ..., end_day: _Optional[str] = ..., tokens_only: _Optional[bool] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("import_id", "discrepancies", "matched_count", "discrepancy_count", "applied_count", "upstream_row_count")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    DISCREPANCIES_FIELD_NUMBER: _ClassVar[int]
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISCREPANCY_COUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    discrepancies: _containers.RepeatedCompositeFieldContainer[Discrepancy]
    matched_count: int
    discrepancy_count: int
    applied_count: int
    upstream_row_count: int
    def __init__(self, import_id: _Optional[str] = ..., discrepancies: _Optional[_Iterable[_Union[Discrepancy, _Mapping]]] = ..., matched_count: _Optional[int] = ..., discrepancy_count: _Optional[int] = ..., applied_count: _Optional[int] = ..., upstream_row_count: _Optional[int] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "currency_code", "billing_mode", "allow_negative_balance", "create_time", "unpriced_policy", "price_adjustment_bps", "request_asset", "default_request_price", "default_request_credits", "tenant_id", "reservation_expiry_policy", "time_zone")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRICE_ADJUSTMENT_BPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ASSET_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REQUEST_PRICE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXPIRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency_code: str
    billing_mode: _types_pb2.BillingMode
    allow_negative_balance: bool
    create_time: _timestamp_pb2.Timestamp
    unpriced_policy: _prices_pb2.UnpricedPolicy
    price_adjustment_bps: int
    request_asset: _prices_pb2.RequestAsset
    default_request_price: _types_pb2.Money
    default_request_credits: int
    tenant_id: str
    reservation_expiry_policy: _types_pb2.ReservationExpiryPolicy
    time_zone: str
    def __init__(self, account_id: _Optional[str] = ..., currency_code: _Optional[str] = ..., billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ..., allow_negative_balance: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unpriced_policy: _Optional[_Union[_prices_pb2.UnpricedPolicy, str]] = ..., price_adjustment_bps: _Optional[int] = ..., request_asset: _Optional[_Union[_prices_pb2.RequestAsset, str]] = ..., default_request_price: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., default_request_credits: _Optional[int] = ..., tenant_id: _Optional[str] = ..., reservation_expiry_policy: _Optional[_Union[_types_pb2.ReservationExpiryPolicy, str]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "currency_code", "billing_mode", "allow_negative_balance", "unpriced_policy", "price_adjustment_bps", "request_asset", "default_request_price", "default_request_credits", "tenant_id", "reservation_expiry_policy", "time_zone")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRICE_ADJUSTMENT_BPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ASSET_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REQUEST_PRICE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXPIRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency_code: str
    billing_mode: _types_pb2.BillingMode
    allow_negative_balance: bool
    unpriced_policy: _prices_pb2.UnpricedPolicy
    price_adjustment_bps: int
    request_asset: _prices_pb2.RequestAsset
    default_request_price: _types_pb2.Money
    default_request_credits: int
    tenant_id: str
    reservation_expiry_policy: _types_pb2.ReservationExpiryPolicy
    time_zone: str
    def __init__(self, account_id: _Optional[str] = ..., currency_code: _Optional[str] = ..., billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ..., allow_negative_balance: _Optional[bool] = ..., unpriced_policy: _Optional[_Union[_prices_pb2.UnpricedPolicy, str]] = ..., price_adjustment_bps: _Optional[int] = ..., request_asset: _Optional[_Union[_prices_pb2.RequestAsset, str]] = ..., default_request_price: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., default_request_credits: _Optional[int] = ..., tenant_id: _Optional[str] = ..., reservation_expiry_policy: _Optional[_Union[_types_pb2.ReservationExpiryPolicy, str]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class GrantCreditsRequest(_message.Message):
    __slots__ = ("account_id", "request_id", "amount", "request_credits", "reason")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    request_id: str
    amount: _types_pb2.Money
    request_credits: int
    reason: str
    def __init__(self, account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., amount: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., request_credits: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class GrantCreditsResponse(_message.Message):
    __slots__ = ("balance", "request_credits", "replayed", "transaction_id")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    balance: _types_pb2.Money
    request_credits: int
    replayed: bool
    transaction_id: str
    def __init__(self, balance: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., request_credits: _Optional[int] = ..., replayed: _Optional[bool] = ..., transaction_id: _Optional[str] = ...) -> None: ...

class UpdateAccountRequest(_message.Message):
    __slots__ = ("account", "update_mask")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    account: Account
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class SetApiKeyBillingModeRequest(_message.Message):
    __slots__ = ("account_id", "api_key_id", "billing_mode")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    api_key_id: str
    billing_mode: _types_pb2.BillingMode
    def __init__(self, account_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ...) -> None: ...

class SetApiKeyBillingModeResponse(_message.Message):
    __slots__ = ("effective_billing_mode",)
    EFFECTIVE_BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    effective_billing_mode: _types_pb2.BillingMode
    def __init__(self, effective_billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ...) -> None: ...

class ListPricesRequest(_message.Message):
    __slots__ = ("provider", "model", "account_id", "all_versions", "page_size", "page_token")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ALL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    account_id: str
    all_versions: bool
    page_size: int
    page_token: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., account_id: _Optional[str] = ..., all_versions: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPricesResponse(_message.Message):
    __slots__ = ("prices", "next_page_token")
    PRICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prices: _containers.RepeatedCompositeFieldContainer[_prices_pb2.PriceEntry]
    next_page_token: str
    def __init__(self, prices: _Optional[_Iterable[_Union[_prices_pb2.PriceEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddPriceRequest(_message.Message):
    __slots__ = ("price",)
    PRICE_FIELD_NUMBER: _ClassVar[int]
    price: _prices_pb2.PriceEntry
    def __init__(self, price: _Optional[_Union[_prices_pb2.PriceEntry, _Mapping]] = ...) -> None: ...

class AddPriceResponse(_message.Message):
    __slots__ = ("price",)
    PRICE_FIELD_NUMBER: _ClassVar[int]
    price: _prices_pb2.PriceEntry
    def __init__(self, price: _Optional[_Union[_prices_pb2.PriceEntry, _Mapping]] = ...) -> None: ...

class RetirePriceRequest(_message.Message):
    __slots__ = ("price_id", "retire_time")
    PRICE_ID_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    price_id: str
    retire_time: _timestamp_pb2.Timestamp
    def __init__(self, price_id: _Optional[str] = ..., retire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RetirePriceResponse(_message.Message):
    __slots__ = ("price",)
    PRICE_FIELD_NUMBER: _ClassVar[int]
    price: _prices_pb2.PriceEntry
    def __init__(self, price: _Optional[_Union[_prices_pb2.PriceEntry, _Mapping]] = ...) -> None: ...

class ImportPricesRequest(_message.Message):
    __slots__ = ("content", "format", "effective_time", "dry_run", "source")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    format: _prices_pb2.PriceFileFormat
    effective_time: _timestamp_pb2.Timestamp
    dry_run: bool
    source: str
    def __init__(self, content: _Optional[bytes] = ..., format: _Optional[_Union[_prices_pb2.PriceFileFormat, str]] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dry_run: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class ImportPricesResponse(_message.Message):
    __slots__ = ("added_count", "unchanged_count", "skipped_count", "added_price_ids")
    ADDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ADDED_PRICE_IDS_FIELD_NUMBER: _ClassVar[int]
    added_count: int
    unchanged_count: int
    skipped_count: int
    added_price_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, added_count: _Optional[int] = ..., unchanged_count: _Optional[int] = ..., skipped_count: _Optional[int] = ..., added_price_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("account_id", "budget_id", "api_key_id", "model", "period", "rolling_window", "metric", "limit", "hard", "thresholds_percent")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    ROLLING_WINDOW_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    budget_id: str
    api_key_id: str
    model: str
    period: BudgetPeriod
    rolling_window: _duration_pb2.Duration
    metric: BudgetMetric
    limit: int
    hard: bool
    thresholds_percent: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, account_id: _Optional[str] = ..., budget_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., model: _Optional[str] = ..., period: _Optional[_Union[BudgetPeriod, str]] = ..., rolling_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., metric: _Optional[_Union[BudgetMetric, str]] = ..., limit: _Optional[int] = ..., hard: _Optional[bool] = ..., thresholds_percent: _Optional[_Iterable[int]] = ...) -> None: ...

class BudgetEvent(_message.Message):
    __slots__ = ("event_id", "account_id", "budget_id", "period_start_time", "threshold_percent", "used", "limit", "create_time")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    account_id: str
    budget_id: str
    period_start_time: _timestamp_pb2.Timestamp
    threshold_percent: int
    used: int
    limit: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., account_id: _Optional[str] = ..., budget_id: _Optional[str] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., threshold_percent: _Optional[int] = ..., used: _Optional[int] = ..., limit: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class SetBudgetResponse(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("account_id", "budget_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    budget_id: str
    def __init__(self, account_id: _Optional[str] = ..., budget_id: _Optional[str] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetEventsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBudgetEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[BudgetEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[BudgetEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
