import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_SOURCE_UNSPECIFIED: _ClassVar[UsageSource]
    USAGE_SOURCE_REPORTED: _ClassVar[UsageSource]
    USAGE_SOURCE_ESTIMATED: _ClassVar[UsageSource]
    USAGE_SOURCE_MISSING: _ClassVar[UsageSource]
    USAGE_SOURCE_CORRECTED: _ClassVar[UsageSource]

class MissingUsageFallback(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISSING_USAGE_FALLBACK_UNSPECIFIED: _ClassVar[MissingUsageFallback]
    MISSING_USAGE_FALLBACK_NONE: _ClassVar[MissingUsageFallback]
    MISSING_USAGE_FALLBACK_FLAT_FEE: _ClassVar[MissingUsageFallback]
    MISSING_USAGE_FALLBACK_RESERVATION: _ClassVar[MissingUsageFallback]

class BillingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BILLING_MODE_UNSPECIFIED: _ClassVar[BillingMode]
    BILLING_MODE_TOKEN: _ClassVar[BillingMode]
    BILLING_MODE_REQUEST: _ClassVar[BillingMode]
    BILLING_MODE_HYBRID: _ClassVar[BillingMode]

class ApiFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_FORMAT_UNSPECIFIED: _ClassVar[ApiFormat]
    API_FORMAT_OPENAI_CHAT_COMPLETIONS: _ClassVar[ApiFormat]
    API_FORMAT_OPENAI_RESPONSES: _ClassVar[ApiFormat]
    API_FORMAT_ANTHROPIC_MESSAGES: _ClassVar[ApiFormat]
    API_FORMAT_GEMINI_GENERATE_CONTENT: _ClassVar[ApiFormat]
    API_FORMAT_WORKERS_AI: _ClassVar[ApiFormat]
    API_FORMAT_DIFY: _ClassVar[ApiFormat]

class ReservationExpiryPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_EXPIRY_POLICY_UNSPECIFIED: _ClassVar[ReservationExpiryPolicy]
    RESERVATION_EXPIRY_POLICY_RELEASE: _ClassVar[ReservationExpiryPolicy]
    RESERVATION_EXPIRY_POLICY_CAPTURE: _ClassVar[ReservationExpiryPolicy]
USAGE_SOURCE_UNSPECIFIED: UsageSource
USAGE_SOURCE_REPORTED: UsageSource
USAGE_SOURCE_ESTIMATED: UsageSource
USAGE_SOURCE_MISSING: UsageSource
USAGE_SOURCE_CORRECTED: UsageSource
MISSING_USAGE_FALLBACK_UNSPECIFIED: MissingUsageFallback
MISSING_USAGE_FALLBACK_NONE: MissingUsageFallback
MISSING_USAGE_FALLBACK_FLAT_FEE: MissingUsageFallback
MISSING_USAGE_FALLBACK_RESERVATION: MissingUsageFallback
BILLING_MODE_UNSPECIFIED: BillingMode
BILLING_MODE_TOKEN: BillingMode
BILLING_MODE_REQUEST: BillingMode
BILLING_MODE_HYBRID: BillingMode
API_FORMAT_UNSPECIFIED: ApiFormat
API_FORMAT_OPENAI_CHAT_COMPLETIONS: ApiFormat
API_FORMAT_OPENAI_RESPONSES: ApiFormat
API_FORMAT_ANTHROPIC_MESSAGES: ApiFormat
API_FORMAT_GEMINI_GENERATE_CONTENT: ApiFormat
API_FORMAT_WORKERS_AI: ApiFormat
API_FORMAT_DIFY: ApiFormat
RESERVATION_EXPIRY_POLICY_UNSPECIFIED: ReservationExpiryPolicy
RESERVATION_EXPIRY_POLICY_RELEASE: ReservationExpiryPolicy
RESERVATION_EXPIRY_POLICY_CAPTURE: ReservationExpiryPolicy

class Money(_message.Message):
    __slots__ = ("currency_code", "units", "nanos")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    NANOS_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    units: int
    nanos: int
    def __init__(self, currency_code: _Optional[str] = ..., units: _Optional[int] = ..., nanos: _Optional[int] = ...) -> None: ...

class TokenUsage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ...) -> None: ...

class UsageRecordView(_message.Message):
    __slots__ = ("record_id", "account_id", "request_id", "event_time", "record_time", "provider", "model", "api_key_id", "service", "usage_source", "usage", "cost", "request_credits", "price_id", "price_version", "record_kind", "corrects_record_id", "request_count", "corrected", "labels", "streamed", "unpriced", "transaction_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    PRICE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_KIND_FIELD_NUMBER: _ClassVar[int]
    CORRECTS_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    account_id: str
    request_id: str
    event_time: _timestamp_pb2.Timestamp
    record_time: _timestamp_pb2.Timestamp
    provider: str
    model: str
    api_key_id: str
    service: str
    usage_source: UsageSource
    usage: TokenUsage
    cost: Money
    request_credits: int
    price_id: str
    price_version: int
    record_kind: str
    corrects_record_id: str
    request_count: int
    corrected: bool
    labels: _containers.ScalarMap[str, str]
    streamed: bool
    unpriced: bool
    transaction_id: str
    def __init__(self, record_id: _Optional[str] = ..., account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., api_key_id: _Optional[str] = ..., service: _Optional[str] = ..., usage_source: _Optional[_Union[UsageSource, str]] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., cost: _Optional[_Union[Money, _Mapping]] = ..., request_credits: _Optional[int] = ..., price_id: _Optional[str] = ..., price_version: _Optional[int] = ..., record_kind: _Optional[str] = ..., corrects_record_id: _Optional[str] = ..., request_count: _Optional[int] = ..., corrected: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., streamed: _Optional[bool] = ..., unpriced: _Optional[bool] = ..., transaction_id: _Optional[str] = ...) -> None: ...
