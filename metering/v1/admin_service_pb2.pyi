import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from metering.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Account(_message.Message):
    __slots__ = ("account_id", "currency_code", "billing_mode", "allow_negative_balance", "create_time")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency_code: str
    billing_mode: _types_pb2.BillingMode
    allow_negative_balance: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., currency_code: _Optional[str] = ..., billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ..., allow_negative_balance: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "currency_code", "billing_mode", "allow_negative_balance")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency_code: str
    billing_mode: _types_pb2.BillingMode
    allow_negative_balance: bool
    def __init__(self, account_id: _Optional[str] = ..., currency_code: _Optional[str] = ..., billing_mode: _Optional[_Union[_types_pb2.BillingMode, str]] = ..., allow_negative_balance: _Optional[bool] = ...) -> None: ...

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
