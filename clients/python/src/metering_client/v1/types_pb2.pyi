from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class UsageSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_SOURCE_UNSPECIFIED: _ClassVar[UsageSource]
    USAGE_SOURCE_REPORTED: _ClassVar[UsageSource]
    USAGE_SOURCE_ESTIMATED: _ClassVar[UsageSource]
    USAGE_SOURCE_MISSING: _ClassVar[UsageSource]

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
