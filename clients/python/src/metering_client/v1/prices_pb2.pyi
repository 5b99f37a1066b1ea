import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PriceFileFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRICE_FILE_FORMAT_UNSPECIFIED: _ClassVar[PriceFileFormat]
    PRICE_FILE_FORMAT_METERING: _ClassVar[PriceFileFormat]
    PRICE_FILE_FORMAT_LITELLM: _ClassVar[PriceFileFormat]

class UnpricedPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNPRICED_POLICY_UNSPECIFIED: _ClassVar[UnpricedPolicy]
    UNPRICED_POLICY_REJECT: _ClassVar[UnpricedPolicy]
    UNPRICED_POLICY_RECORD: _ClassVar[UnpricedPolicy]

class RequestAsset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_ASSET_UNSPECIFIED: _ClassVar[RequestAsset]
    REQUEST_ASSET_CREDITS: _ClassVar[RequestAsset]
    REQUEST_ASSET_MONEY: _ClassVar[RequestAsset]
PRICE_FILE_FORMAT_UNSPECIFIED: PriceFileFormat
PRICE_FILE_FORMAT_METERING: PriceFileFormat
PRICE_FILE_FORMAT_LITELLM: PriceFileFormat
UNPRICED_POLICY_UNSPECIFIED: UnpricedPolicy
UNPRICED_POLICY_REJECT: UnpricedPolicy
UNPRICED_POLICY_RECORD: UnpricedPolicy
REQUEST_ASSET_UNSPECIFIED: RequestAsset
REQUEST_ASSET_CREDITS: RequestAsset
REQUEST_ASSET_MONEY: RequestAsset

class PriceEntry(_message.Message):
    __slots__ = ("price_id", "version", "provider", "model", "aliases", "account_id", "currency_code", "effective_time", "end_time", "input_per_million", "output_per_million", "cache_read_per_million", "cache_write_5m_per_million", "cache_write_1h_per_million", "reasoning_per_million", "request_fee", "long_context", "request_price", "request_credits", "batch_discount_percent", "retired", "source", "source_date")
    PRICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUT_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    REASONING_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FEE_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PRICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CREDITS_FIELD_NUMBER: _ClassVar[int]
    BATCH_DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DATE_FIELD_NUMBER: _ClassVar[int]
    price_id: str
    version: int
    provider: str
    model: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    account_id: str
    currency_code: str
    effective_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    input_per_million: str
    output_per_million: str
    cache_read_per_million: str
    cache_write_5m_per_million: str
    cache_write_1h_per_million: str
    reasoning_per_million: str
    request_fee: str
    long_context: LongContextTier
    request_price: str
    request_credits: int
    batch_discount_percent: str
    retired: bool
    source: str
    source_date: str
    def __init__(self, price_id: _Optional[str] = ..., version: _Optional[int] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., account_id: _Optional[str] = ..., currency_code: _Optional[str] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., input_per_million: _Optional[str] = ..., output_per_million: _Optional[str] = ..., cache_read_per_million: _Optional[str] = ..., cache_write_5m_per_million: _Optional[str] = ..., cache_write_1h_per_million: _Optional[str] = ..., reasoning_per_million: _Optional[str] = ..., request_fee: _Optional[str] = ..., long_context: _Optional[_Union[LongContextTier, _Mapping]] = ..., request_price: _Optional[str] = ..., request_credits: _Optional[int] = ..., batch_discount_percent: _Optional[str] = ..., retired: _Optional[bool] = ..., source: _Optional[str] = ..., source_date: _Optional[str] = ...) -> None: ...

class LongContextTier(_message.Message):
    __slots__ = ("threshold_input_tokens", "input_per_million", "output_per_million", "cache_read_per_million", "cache_write_5m_per_million", "cache_write_1h_per_million", "reasoning_per_million")
    THRESHOLD_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    REASONING_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    threshold_input_tokens: int
    input_per_million: str
    output_per_million: str
    cache_read_per_million: str
    cache_write_5m_per_million: str
    cache_write_1h_per_million: str
    reasoning_per_million: str
    def __init__(self, threshold_input_tokens: _Optional[int] = ..., input_per_million: _Optional[str] = ..., output_per_million: _Optional[str] = ..., cache_read_per_million: _Optional[str] = ..., cache_write_5m_per_million: _Optional[str] = ..., cache_write_1h_per_million: _Optional[str] = ..., reasoning_per_million: _Optional[str] = ...) -> None: ...
