"""Domain errors as gRPC statuses: code, message and ``ErrorInfo`` (with ``BadRequest`` and ``RetryInfo``).

Identical refusals (a flood of one kind) reuse one status object: the memos are bounded and the
statuses immutable.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from auth_service.domain.errors import AuthError, Category, InvalidArgument, TooManyFailures

ERROR_DOMAIN = "auth.woes"


_CODES: dict[Category, tuple[grpc.StatusCode, int]] = {
    Category.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
    Category.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    Category.INVALID_ARGUMENT: (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    Category.NOT_FOUND: (grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    Category.FAILED_PRECONDITION: (grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    Category.ALREADY_EXISTS: (grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    Category.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    Category.INTERNAL: (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL),
    Category.RESOURCE_EXHAUSTED: (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
}


def status_for(error: AuthError) -> status_pb2.Status:
    """The google.rpc.Status of a domain error: code, message, ErrorInfo (+ BadRequest)."""
    _, code = _CODES[error.category]
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))
    details = [info]
    if isinstance(error, InvalidArgument):
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    return status_pb2.Status(code=code, message=error.message, details=details)


_STATUS_MEMO_MAX = 4096


_status_memo: dict[tuple, grpc.Status] = {}


def grpc_status(error: AuthError) -> grpc.Status:
    """The grpc.Status of ``error``; identical refusals (a flood of one kind) reuse one object."""
    if isinstance(error, InvalidArgument):
        return rpc_status.to_status(status_for(error))
    metadata = error.metadata
    key = (type(error), error.message, tuple(sorted(metadata.items())) if metadata else ())
    status = _status_memo.get(key)
    if status is None:
        status = rpc_status.to_status(status_for(error))
        if len(_status_memo) >= _STATUS_MEMO_MAX:
            _status_memo.clear()
        _status_memo[key] = status
    return status


def abort(context: grpc.ServicerContext, error: AuthError):
    try:
        context.abort_with_status(grpc_status(error))
    except NotImplementedError:  # grpc_testing's context has no abort_with_status
        context.abort(_CODES[error.category][0], error.message)


def refuse(context: grpc.ServicerContext, error: AuthError) -> None:
    """Set the status of ``error`` on the call (code, message, ErrorInfo trailer) and return ``None``.

    For handlers registered without a response serializer only: grpcio then ends the call with
    the status set on the context, exactly as after :func:`abort`, but without an exception
    travelling up through every frame of the handler, which the refusals of a flood of made-up
    credentials would pay on every call. ``tests/integration/test_rpc_server.py`` checks every reason of
    ``Authenticate`` over a real server, trailer included.
    """
    return set_status(context, grpc_status(error))


def set_status(context: grpc.ServicerContext, status: grpc.Status) -> None:
    """What :func:`refuse` does, for a status already built."""
    context.set_code(status.code)
    context.set_details(status.details)
    context.set_trailing_metadata(status.trailing_metadata)
    return None


_STATUS_KEY = "grpc-status-details-bin"


def reason_of(context: grpc.ServicerContext) -> str:
    """The ErrorInfo reason of an aborted call (read from its trailing status details)."""
    for name, value in context.trailing_metadata() or ():
        if name == _STATUS_KEY:
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:
                return ""
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info.reason
    return ""


_THROTTLED_MEMO_MAX = 1024


_throttled_memo: dict[tuple[str, int], grpc.Status] = {}


def throttled_status(error: TooManyFailures) -> grpc.Status:
    """The status of a throttled call, with a RetryInfo of ``error.retry_after`` rounded up to the
    next 10 ms; one object per scope and delay, since a flood is refused many times over."""
    centis = max(1, math.ceil(error.retry_after * 100))
    key = (error.metadata.get("scope", ""), centis)
    status = _throttled_memo.get(key)
    if status is None:
        proto = status_for(error)
        retry = any_pb2.Any()
        retry.Pack(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=centis // 100, nanos=(centis % 100) * 10_000_000)
            )
        )
        proto.details.append(retry)
        status = rpc_status.to_status(proto)
        if len(_throttled_memo) >= _THROTTLED_MEMO_MAX:
            _throttled_memo.clear()
        _throttled_memo[key] = status
    return status


def abort_throttled(context: grpc.ServicerContext, error: TooManyFailures):
    context.abort_with_status(throttled_status(error))
