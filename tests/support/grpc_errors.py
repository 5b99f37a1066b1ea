"""Read the google.rpc.Status details (ErrorInfo, BadRequest) of a failed call."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    fields: list[str]


def details_of(error: grpc.RpcError) -> ErrorDetails:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, fields = "", []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [v.field for v in bad.field_violations]
    return ErrorDetails(error.code(), error.details() or "", reason, fields)  # type: ignore[attr-defined]
