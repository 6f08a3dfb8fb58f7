"""Helpers for reading rich gRPC errors in tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class RichError:
    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)


def rich_error(err: grpc.RpcError) -> RichError:
    out = RichError(err.code(), err.details() or "")
    status = rpc_status.from_call(err)
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.violations = [(v.field, v.description) for v in bad.field_violations]
    return out


def call_error(fn, *args, **kwargs) -> RichError:
    """Call an RPC that must fail; return its decoded error."""
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as err:
        return rich_error(err)
    raise AssertionError("the call succeeded but was expected to fail")


def throttled_plaintext_policy(folder) -> str:
    """A policy file for a plaintext server under test that throttles its (anonymous) callers by
    address, as the built-in policy never does; returns its path."""
    path = folder / "throttled-policy.toml"
    path.write_text('throttled = ["anonymous"]\n\n[callers]\nanonymous = ["verify", "admin", "lab_reveal"]\n')
    return str(path)
