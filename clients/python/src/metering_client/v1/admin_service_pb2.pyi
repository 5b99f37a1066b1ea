import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from metering_client.v1 import prices_pb2 as _prices_pb2
from metering_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
BUDGET_PERIOD_UNSPECIFIED: BudgetPeriod
BUDGET_PERIOD_DAY: BudgetPeriod
BUDGET_PERIOD_MONTH: BudgetPeriod
BUDGET_PERIOD_ROLLING: BudgetPeriod
BUDGET_METRIC_UNSPECIFIED: BudgetMetric
BUDGET_METRIC_COST: BudgetMetric
BUDGET_METRIC_TOKENS: BudgetMetric
BUDGET_METRIC_REQUESTS: BudgetMetric

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
