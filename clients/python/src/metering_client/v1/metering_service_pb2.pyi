import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from metering_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EstimateMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ESTIMATE_METHOD_UNSPECIFIED: _ClassVar[EstimateMethod]
    ESTIMATE_METHOD_EXACT: _ClassVar[EstimateMethod]
    ESTIMATE_METHOD_APPROXIMATE: _ClassVar[EstimateMethod]

class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANULARITY_UNSPECIFIED: _ClassVar[Granularity]
    GRANULARITY_NONE: _ClassVar[Granularity]
    GRANULARITY_HOUR: _ClassVar[Granularity]
    GRANULARITY_DAY: _ClassVar[Granularity]
    GRANULARITY_MONTH: _ClassVar[Granularity]

class GroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_BY_UNSPECIFIED: _ClassVar[GroupBy]
    GROUP_BY_MODEL: _ClassVar[GroupBy]
    GROUP_BY_PROVIDER: _ClassVar[GroupBy]
    GROUP_BY_API_KEY: _ClassVar[GroupBy]
    GROUP_BY_SERVICE: _ClassVar[GroupBy]
    GROUP_BY_USAGE_SOURCE: _ClassVar[GroupBy]
    GROUP_BY_ACCOUNT: _ClassVar[GroupBy]

class AuthorizationDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHORIZATION_DECISION_UNSPECIFIED: _ClassVar[AuthorizationDecision]
    AUTHORIZATION_DECISION_ALLOWED: _ClassVar[AuthorizationDecision]
    AUTHORIZATION_DECISION_DENIED: _ClassVar[AuthorizationDecision]

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_STATE_OPEN: _ClassVar[ReservationState]
    RESERVATION_STATE_CAPTURED: _ClassVar[ReservationState]
    RESERVATION_STATE_RELEASED: _ClassVar[ReservationState]
    RESERVATION_STATE_EXPIRED: _ClassVar[ReservationState]
ESTIMATE_METHOD_UNSPECIFIED: EstimateMethod
ESTIMATE_METHOD_EXACT: EstimateMethod
ESTIMATE_METHOD_APPROXIMATE: EstimateMethod
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_NONE: Granularity
GRANULARITY_HOUR: Granularity
GRANULARITY_DAY: Granularity
GRANULARITY_MONTH: Granularity
GROUP_BY_UNSPECIFIED: GroupBy
GROUP_BY_MODEL: GroupBy
GROUP_BY_PROVIDER: GroupBy
GROUP_BY_API_KEY: GroupBy
GROUP_BY_SERVICE: GroupBy
GROUP_BY_USAGE_SOURCE: GroupBy
GROUP_BY_ACCOUNT: GroupBy
AUTHORIZATION_DECISION_UNSPECIFIED: AuthorizationDecision
AUTHORIZATION_DECISION_ALLOWED: AuthorizationDecision
AUTHORIZATION_DECISION_DENIED: AuthorizationDecision
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_STATE_OPEN: ReservationState
RESERVATION_STATE_CAPTURED: ReservationState
RESERVATION_STATE_RELEASED: ReservationState
RESERVATION_STATE_EXPIRED: ReservationState

class CorrectUsageRequest(_message.Message):
    __slots__ = ("account_id", "request_id", "usage", "response_json", "response_format", "cost", "correction_id", "reason")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    request_id: str
    usage: _types_pb2.TokenUsage
    response_json: bytes
    response_format: _types_pb2.ApiFormat
    cost: _types_pb2.Money
    correction_id: str
    reason: str
    def __init__(self, account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., response_json: _Optional[bytes] = ..., response_format: _Optional[_Union[_types_pb2.ApiFormat, str]] = ..., cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., correction_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CorrectUsageResponse(_message.Message):
    __slots__ = ("corrects_record_id", "usage", "cost", "usage_difference", "cost_difference", "balance", "replayed", "transaction_id")
    CORRECTS_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    USAGE_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    COST_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    corrects_record_id: str
    usage: _types_pb2.TokenUsage
    cost: _types_pb2.Money
    usage_difference: _types_pb2.TokenUsage
    cost_difference: _types_pb2.Money
    balance: _types_pb2.Money
    replayed: bool
    transaction_id: str
    def __init__(self, corrects_record_id: _Optional[str] = ..., usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., usage_difference: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., cost_difference: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., balance: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., replayed: _Optional[bool] = ..., transaction_id: _Optional[str] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("account_id", "request_id", "model", "provider", "usage", "api_key_id", "service", "event_time", "streamed", "labels", "batch", "response_json", "response_format", "reservation_id", "request_json", "request_format", "prompt_text", "completion_text")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TEXT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    request_id: str
    model: str
    provider: str
    usage: _types_pb2.TokenUsage
    api_key_id: str
    service: str
    event_time: _timestamp_pb2.Timestamp
    streamed: bool
    labels: _containers.ScalarMap[str, str]
    batch: bool
    response_json: bytes
    response_format: _types_pb2.ApiFormat
    reservation_id: str
    request_json: bytes
    request_format: _types_pb2.ApiFormat
    prompt_text: str
    completion_text: str
    def __init__(self, account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., api_key_id: _Optional[str] = ..., service: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., streamed: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., batch: _Optional[bool] = ..., response_json: _Optional[bytes] = ..., response_format: _Optional[_Union[_types_pb2.ApiFormat, str]] = ..., reservation_id: _Optional[str] = ..., request_json: _Optional[bytes] = ..., request_format: _Optional[_Union[_types_pb2.ApiFormat, str]] = ..., prompt_text: _Optional[str] = ..., completion_text: _Optional[str] = ...) -> None: ...

class RecordUsageResponse(_message.Message):
    __slots__ = ("cost", "balance", "replayed", "usage_source", "price_id", "price_version", "balance_exhausted", "request_credits_charged", "request_credits", "record_id", "unpriced", "usage", "reservation_held", "reservation_exceeded", "budget_id", "budget_headroom", "budget_warnings", "missing_usage_fallback")
    COST_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_CHARGED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_HELD_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_HEADROOM_FIELD_NUMBER: _ClassVar[int]
    BUDGET_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MISSING_USAGE_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    cost: _types_pb2.Money
    balance: _types_pb2.Money
    replayed: bool
    usage_source: _types_pb2.UsageSource
    price_id: str
    price_version: int
    balance_exhausted: bool
    request_credits_charged: int
    request_credits: int
    record_id: str
    unpriced: bool
    usage: _types_pb2.TokenUsage
    reservation_held: _types_pb2.Money
    reservation_exceeded: bool
    budget_id: str
    budget_headroom: int
    budget_warnings: _containers.RepeatedScalarFieldContainer[str]
    missing_usage_fallback: _types_pb2.MissingUsageFallback
    def __init__(self, cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., balance: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., replayed: _Optional[bool] = ..., usage_source: _Optional[_Union[_types_pb2.UsageSource, str]] = ..., price_id: _Optional[str] = ..., price_version: _Optional[int] = ..., balance_exhausted: _Optional[bool] = ..., request_credits_charged: _Optional[int] = ..., request_credits: _Optional[int] = ..., record_id: _Optional[str] = ..., unpriced: _Optional[bool] = ..., usage: _Optional[_Union[_types_pb2.TokenUsage, _Mapping]] = ..., reservation_held: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., reservation_exceeded: _Optional[bool] = ..., budget_id: _Optional[str] = ..., budget_headroom: _Optional[int] = ..., budget_warnings: _Optional[_Iterable[str]] = ..., missing_usage_fallback: _Optional[_Union[_types_pb2.MissingUsageFallback, str]] = ...) -> None: ...

class EstimateTokensRequest(_message.Message):
    __slots__ = ("model", "provider", "text", "completion_text", "max_output_tokens", "account_id", "request_json", "request_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    text: str
    completion_text: str
    max_output_tokens: int
    account_id: str
    request_json: bytes
    request_format: _types_pb2.ApiFormat
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., text: _Optional[str] = ..., completion_text: _Optional[str] = ..., max_output_tokens: _Optional[int] = ..., account_id: _Optional[str] = ..., request_json: _Optional[bytes] = ..., request_format: _Optional[_Union[_types_pb2.ApiFormat, str]] = ...) -> None: ...

class EstimateTokensResponse(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "method", "tokenizer", "estimated_cost", "worst_case_cost", "price_id", "price_version", "request_format", "max_output_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    WORST_CASE_COST_FIELD_NUMBER: _ClassVar[int]
    PRICE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    method: EstimateMethod
    tokenizer: str
    estimated_cost: _types_pb2.Money
    worst_case_cost: _types_pb2.Money
    price_id: str
    price_version: int
    request_format: _types_pb2.ApiFormat
    max_output_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., method: _Optional[_Union[EstimateMethod, str]] = ..., tokenizer: _Optional[str] = ..., estimated_cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., worst_case_cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., price_id: _Optional[str] = ..., price_version: _Optional[int] = ..., request_format: _Optional[_Union[_types_pb2.ApiFormat, str]] = ..., max_output_tokens: _Optional[int] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance", "held", "available", "request_credits", "currency_code", "billing_mode", "allow_negative_balance", "balance_exhausted")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    balance: _types_pb2.Money
    held: _types_pb2.Money
    available: _types_pb2.Money
    request_credits: int
    currency_code: str
    billing_mode: _types_pb2.BillingMode
    allow_negative_balance: bool
    balance_exhausted: bool
    def __init__(self, balance: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., held: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., available: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., request_credits: _Optional[int] = ..., currency_code: _Optional[str] = ..., billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ..., allow_negative_balance: _Optional[bool] = ..., balance_exhausted: _Optional[bool] = ...) -> None: ...

class UsageSummaryRequest(_message.Message):
    __slots__ = ("account_id", "start_time", "end_time", "granularity", "time_zone", "group_by", "page_size", "page_token", "currency_code", "usage_sources")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    granularity: Granularity
    time_zone: str
    group_by: _containers.RepeatedScalarFieldContainer[GroupBy]
    page_size: int
    page_token: str
    currency_code: str
    usage_sources: _containers.RepeatedScalarFieldContainer[_types_pb2.UsageSource]
    def __init__(self, account_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., time_zone: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[GroupBy, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., currency_code: _Optional[str] = ..., usage_sources: _Optional[_Iterable[_Union[_types_pb2.UsageSource, str]]] = ...) -> None: ...

class UsageSummaryRow(_message.Message):
    __slots__ = ("start_time", "model", "provider", "api_key_id", "service", "usage_source", "request_count", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens", "cost", "account_id", "request_credits", "unpriced_request_count", "estimated_request_count", "estimated_cost", "missing_request_count", "missing_cost")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_FIELD_NUMBER: _ClassVar[int]
    MISSING_REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_COST_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    model: str
    provider: str
    api_key_id: str
    service: str
    usage_source: _types_pb2.UsageSource
    request_count: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    cost: _types_pb2.Money
    account_id: str
    request_credits: int
    unpriced_request_count: int
    estimated_request_count: int
    estimated_cost: _types_pb2.Money
    missing_request_count: int
    missing_cost: _types_pb2.Money
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., api_key_id: _Optional[str] = ..., service: _Optional[str] = ..., usage_source: _Optional[_Union[_types_pb2.UsageSource, str]] = ..., request_count: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., account_id: _Optional[str] = ..., request_credits: _Optional[int] = ..., unpriced_request_count: _Optional[int] = ..., estimated_request_count: _Optional[int] = ..., estimated_cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., missing_request_count: _Optional[int] = ..., missing_cost: _Optional[_Union[_types_pb2.Money, _Mapping]] = ...) -> None: ...

class UsageSummaryResponse(_message.Message):
    __slots__ = ("rows", "totals", "next_page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageSummaryRow]
    totals: UsageSummaryRow
    next_page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageSummaryRow, _Mapping]]] = ..., totals: _Optional[_Union[UsageSummaryRow, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RecordUsageBatchRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[RecordUsageRequest]
    def __init__(self, records: _Optional[_Iterable[_Union[RecordUsageRequest, _Mapping]]] = ...) -> None: ...

class RecordUsageBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecordUsageResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RecordUsageResult, _Mapping]]] = ...) -> None: ...

class RecordUsageResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: RecordUsageResponse
    error: RecordError
    def __init__(self, response: _Optional[_Union[RecordUsageResponse, _Mapping]] = ..., error: _Optional[_Union[RecordError, _Mapping]] = ...) -> None: ...

class RecordError(_message.Message):
    __slots__ = ("code", "message", "reason", "fields")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizeUsageRequest(_message.Message):
    __slots__ = ("account_id", "request_id", "model", "provider", "amount", "request_json", "request_format", "input_tokens", "max_output_tokens", "ttl", "api_key_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    request_id: str
    model: str
    provider: str
    amount: _types_pb2.Money
    request_json: bytes
    request_format: _types_pb2.ApiFormat
    input_tokens: int
    max_output_tokens: int
    ttl: _duration_pb2.Duration
    api_key_id: str
    def __init__(self, account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., amount: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., request_json: _Optional[bytes] = ..., request_format: _Optional[_Union[_types_pb2.ApiFormat, str]] = ..., input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class AuthorizeUsageResponse(_message.Message):
    __slots__ = ("decision", "reservation_id", "deny_reason", "held", "held_request_credits", "available", "available_request_credits", "expire_time", "replayed", "budget_id", "budget_headroom", "budget_warnings")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    DENY_REASON_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    HELD_REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_HEADROOM_FIELD_NUMBER: _ClassVar[int]
    BUDGET_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    decision: AuthorizationDecision
    reservation_id: str
    deny_reason: str
    held: _types_pb2.Money
    held_request_credits: int
    available: _types_pb2.Money
    available_request_credits: int
    expire_time: _timestamp_pb2.Timestamp
    replayed: bool
    budget_id: str
    budget_headroom: int
    budget_warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, decision: _Optional[_Union[AuthorizationDecision, str]] = ..., reservation_id: _Optional[str] = ..., deny_reason: _Optional[str] = ..., held: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., held_request_credits: _Optional[int] = ..., available: _Optional[_Union[_types_pb2.Money, _Mapping]] = ..., available_request_credits: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replayed: _Optional[bool] = ..., budget_id: _Optional[str] = ..., budget_headroom: _Optional[int] = ..., budget_warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseReservationRequest(_message.Message):
    __slots__ = ("account_id", "reservation_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reservation_id: str
    def __init__(self, account_id: _Optional[str] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseReservationResponse(_message.Message):
    __slots__ = ("state", "available")
    STATE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    state: ReservationState
    available: _types_pb2.Money
    def __init__(self, state: _Optional[_Union[ReservationState, str]] = ..., available: _Optional[_Union[_types_pb2.Money, _Mapping]] = ...) -> None: ...
