"""``woes.auth.v1.AuthService``: one servicer per feature, registered together.

:func:`add_to_server` registers every method of the contract with a decoder that turns
undecodable requests into ``INVALID_ARGUMENT`` and, when given, the call gate wrapped around
each handler once (:mod:`auth_service.api.gate`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from google.protobuf import message_factory
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc

from auth_service.api.audit import AuditServicer
from auth_service.api.conversations import ConversationServicer
from auth_service.api.fastpath import UNDECODABLE, safe_deserializer
from auth_service.api.keys import KeyServicer
from auth_service.api.status import abort
from auth_service.api.test_credentials import TestCredentialServicer
from auth_service.domain.errors import AuthError, FieldViolation, InternalError, InvalidArgument

log = logging.getLogger("auth_service.rpc")  # every servicer's logger (api/base.py)

SERVICE_NAME = "woes.auth.v1.AuthService"


class AuthServicer(
    KeyServicer, ConversationServicer, TestCredentialServicer, AuditServicer, pb_grpc.AuthServiceServicer
):
    """Implements ``woes.auth.v1.AuthService``: the feature servicers, over one credential manager and
    (for every feature but keys) the services of :mod:`auth_service.app.services`."""


def _guarded(method: Callable, name: str) -> Callable:
    def handler(request, context):
        if request is UNDECODABLE:
            return abort(
                context,
                InvalidArgument(FieldViolation("request", "not a valid message (string fields must be UTF-8)")),
            )
        try:
            return method(request, context)
        except Exception as exc:
            if isinstance(exc, AuthError):
                return abort(context, exc)
            if context.code() is not None or _is_abort(exc):
                raise
            log.exception("unexpected error in %s", name)
            return abort(context, InternalError("internal error; see the server log"))

    return handler


def _is_abort(exc: Exception) -> bool:
    # grpcio signals an abort by raising a bare Exception subclass from context.abort.
    return type(exc).__name__ in ("_AbortError", "AbortError") or isinstance(exc, grpc.RpcError)


def _serialize(message) -> bytes:
    return message.SerializeToString()


def add_to_server(servicer: AuthServicer, server: grpc.Server, gate=None) -> None:
    """Register the service with decoders that turn undecodable requests into INVALID_ARGUMENT.

    ``gate`` (an :class:`auth_service.api.gate.CallGate`) wraps each handler here, once,
    rather than as a server interceptor that would run on every call in the server's polling
    thread; ``Authenticate`` hands it its cache probe to try before anything else.
    """
    service = pb.DESCRIPTOR.services_by_name["AuthService"]
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        probe = front = None
        if method.name == "Authenticate":  # the hot path: memoized response bytes, sent as they are
            behaviour, serializer = servicer.authenticate_serialized, None
            probe, front = servicer.authenticate_cached, servicer.authenticate_front
        else:
            behaviour, serializer = getattr(servicer, method.name), _serialize
        handler = grpc.unary_unary_rpc_method_handler(
            _guarded(behaviour, method.name),
            request_deserializer=safe_deserializer(request_cls),
            response_serializer=serializer,
        )
        if gate is not None:
            refused = servicer.authenticate_refused if probe is not None else None
            handler = gate.wrap(
                f"/{SERVICE_NAME}/{method.name}", handler, probe=probe, answer_refusal=refused, front=front
            )
        handlers[method.name] = handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
