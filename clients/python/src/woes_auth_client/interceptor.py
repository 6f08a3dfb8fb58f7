"""Server interceptors that guard another Woes gRPC service with woes-auth.

One line installs it::

    server = grpc.server(pool, interceptors=[AuthInterceptor(client, {"/pkg.Svc/Get": ["conversations:read"]})])

For every call (except ``public_methods``) it reads ``authorization: Bearer
<server API credential>``, asks woes-auth whether the credential grants the
method's required scopes, and either refuses the call or runs the handler with
the caller's :class:`~woes_auth_client.types.Principal` available through
:func:`current_principal`. It fails closed: when woes-auth cannot answer the
call is refused with ``UNAVAILABLE``, never let in.

Refusals carry woes-auth's own ``google.rpc.ErrorInfo`` (domain ``auth.woes``),
so the service's callers see the same reasons (``CREDENTIAL_REVOKED``,
``INSUFFICIENT_SCOPE`` with ``missing_scopes``, ...).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .client import AsyncAuthClient, AuthClient
from .errors import (
    ERROR_DOMAIN,
    AuthError,
    AuthUnavailable,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from .types import Principal

ClientT = TypeVar("ClientT", AuthClient, AsyncAuthClient)

log = logging.getLogger("woes_auth_client.interceptor")

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("woes_auth_principal", default=None)


def current_principal() -> Principal:
    """The Principal of the call being handled; raises LookupError outside a guarded handler."""
    principal = _principal.get()
    if principal is None:
        raise LookupError("no authenticated principal here: is this a handler guarded by AuthInterceptor?")
    return principal


def principal_or_none() -> Principal | None:
    """The Principal of the call being handled, or None (a public method, or outside a handler)."""
    return _principal.get()


class _Refusal(Exception):
    """How a failed check travels to the handler wrapper: the status to send."""

    def __init__(self, code: grpc.StatusCode, status: status_pb2.Status):
        super().__init__(status.message)
        self.code = code
        self.status = status


def _status(
    code: grpc.StatusCode, rpc_code: int, message: str, reason: str = "", metadata: Mapping[str, str] | None = None
) -> _Refusal:
    details = []
    if reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})))
        details.append(info)
    return _Refusal(code, status_pb2.Status(code=rpc_code, message=message, details=details))


def _refusal_for(error: AuthError, method: str) -> _Refusal:
    if isinstance(error, Unauthenticated):
        return _status(
            grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED, error.message, error.reason, error.metadata
        )
    if isinstance(error, PermissionDenied):
        return _status(
            grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED, error.message, error.reason, error.metadata
        )
    if isinstance(error, AuthUnavailable):
        log.warning("woes-auth could not answer for %s: %s; refusing the call", method, error.code.name)
        return _status(
            grpc.StatusCode.UNAVAILABLE,
            code_pb2.UNAVAILABLE,
            "authentication is unavailable; retry later",
            error.reason,
            error.metadata,
        )
    if isinstance(error, InvalidArgument):
        # The credential is never an INVALID_ARGUMENT (it would be MALFORMED): the method's scope configuration is.
        log.error("woes-auth refused the required scopes of %s: %s", method, error.message)
        return _status(
            grpc.StatusCode.INTERNAL, code_pb2.INTERNAL, "the service's authorization configuration is invalid"
        )
    log.error("woes-auth failed for %s: %s %s", method, error.code.name, error.reason)
    return _status(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL, "authentication failed unexpectedly")


_MISSING = _status(
    grpc.StatusCode.UNAUTHENTICATED,
    code_pb2.UNAUTHENTICATED,
    "this call needs 'authorization: Bearer <server API credential>' metadata",
    "CREDENTIAL_MALFORMED",
)


def bearer_credential(metadata: Iterable[tuple[str, object]] | None) -> str | None:
    """The credential of the one ``authorization: Bearer ...`` entry, or None (absent, repeated or not Bearer)."""
    values = [v for k, v in (metadata or ()) if k == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class _Policy:
    """Which methods need which scopes, and which are public."""

    def __init__(
        self,
        method_scopes: Mapping[str, Iterable[str]] | None,
        default_scopes: Iterable[str],
        public_methods: Iterable[str],
    ):
        self.method_scopes = {name: tuple(scopes) for name, scopes in (method_scopes or {}).items()}
        self.default_scopes = tuple(default_scopes)
        self.public = frozenset(public_methods)
        for name in [*self.method_scopes, *self.public]:
            if not name.startswith("/"):
                raise ValueError(f"method names are full gRPC paths like '/pkg.Service/Method', not {name!r}")

    @staticmethod
    def _service_wildcard(method: str) -> str:
        return method.rsplit("/", 1)[0] + "/*"

    def is_public(self, method: str) -> bool:
        return method in self.public or self._service_wildcard(method) in self.public

    def scopes_for(self, method: str) -> tuple[str, ...]:
        found = self.method_scopes.get(method)
        if found is None:
            found = self.method_scopes.get(self._service_wildcard(method), self.default_scopes)
        return found


def _handler_kind(handler: grpc.RpcMethodHandler) -> str:
    if handler.unary_unary:
        return "unary_unary"
    if handler.unary_stream:
        return "unary_stream"
    if handler.stream_unary:
        return "stream_unary"
    return "stream_stream"


def _rebuild(handler: grpc.RpcMethodHandler, kind: str, behavior: Callable) -> grpc.RpcMethodHandler:
    factory = getattr(grpc, f"{kind}_rpc_method_handler")
    return factory(
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def _reset(token: contextvars.Token) -> None:
    try:
        _principal.reset(token)
    except ValueError:  # a response generator finalised in another context
        _principal.set(None)


class _Guard(Generic[ClientT]):
    """What both interceptors are configured with: the client to ask, the scopes per method, the caller name."""

    client: ClientT

    def __init__(
        self,
        client: ClientT,
        method_scopes: Mapping[str, Iterable[str]] | None = None,
        *,
        default_scopes: Iterable[str] = (),
        public_methods: Iterable[str] = (),
        caller: str | None = None,
    ):
        self.client = client
        self.policy = _Policy(method_scopes, default_scopes, public_methods)
        self.caller = caller


class AuthInterceptor(_Guard[AuthClient], grpc.ServerInterceptor):
    """Guards a ``grpc.server``: authenticates every call with woes-auth before its handler runs.

    ``method_scopes`` maps full method names (``/pkg.Service/Method``, or
    ``/pkg.Service/*`` for a whole service) to the scopes they need; other
    methods need ``default_scopes`` (none by default: a valid credential).
    ``public_methods`` (same spelling) are not authenticated at all, e.g.
    ``/grpc.health.v1.Health/*``.
    """

    def _check(self, metadata: Any, method: str, scopes: tuple[str, ...]) -> Principal:
        credential = bearer_credential(metadata)
        if credential is None:
            raise _MISSING
        try:
            return self.client.authenticate(credential, scopes, caller=self.caller)
        except AuthError as error:
            raise _refusal_for(error, method) from None
        except Exception:
            log.exception("authenticating a call to %s failed", method)
            raise _status(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL, "authentication failed unexpectedly") from None

    @staticmethod
    def _abort(context: grpc.ServicerContext, refusal: _Refusal) -> None:
        context.abort_with_status(rpc_status.to_status(refusal.status))

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or self.policy.is_public(method):
            return handler
        scopes = self.policy.scopes_for(method)
        metadata = handler_call_details.invocation_metadata
        kind = _handler_kind(handler)
        behavior = getattr(handler, kind)
        check, abort = self._check, self._abort

        if kind.endswith("_stream"):

            def guarded_stream(request, context):
                try:
                    principal = check(metadata, method, scopes)
                except _Refusal as refusal:
                    abort(context, refusal)
                token = _principal.set(principal)
                try:
                    yield from behavior(request, context)
                finally:
                    _reset(token)

            return _rebuild(handler, kind, guarded_stream)

        def guarded(request, context):
            try:
                principal = check(metadata, method, scopes)
            except _Refusal as refusal:
                abort(context, refusal)
            token = _principal.set(principal)
            try:
                return behavior(request, context)
            finally:
                _reset(token)

        return _rebuild(handler, kind, guarded)


class AsyncAuthInterceptor(_Guard[AsyncAuthClient], grpc.aio.ServerInterceptor):
    """The grpc.aio twin of :class:`AuthInterceptor`, over an :class:`AsyncAuthClient`."""

    async def _check(self, metadata: Any, method: str, scopes: tuple[str, ...]) -> Principal:
        credential = bearer_credential(metadata)
        if credential is None:
            raise _MISSING
        try:
            return await self.client.authenticate(credential, scopes, caller=self.caller)
        except AuthError as error:
            raise _refusal_for(error, method) from None
        except Exception:
            log.exception("authenticating a call to %s failed", method)
            raise _status(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL, "authentication failed unexpectedly") from None

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, refusal: _Refusal) -> None:
        trailers = rpc_status.to_status(refusal.status).trailing_metadata
        await context.abort(refusal.code, refusal.status.message, trailing_metadata=trailers)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or self.policy.is_public(method):
            return handler
        scopes = self.policy.scopes_for(method)
        metadata = handler_call_details.invocation_metadata
        kind = _handler_kind(handler)
        behavior = getattr(handler, kind)
        check, abort = self._check, self._abort

        async def authenticate(context: Any) -> Principal:
            try:
                return await check(metadata, method, scopes)
            except _Refusal as refusal:
                await abort(context, refusal)
                raise  # abort always raises; never reached

        if kind.endswith("_stream") and inspect.isasyncgenfunction(behavior):

            async def guarded_stream(request, context):
                token = _principal.set(await authenticate(context))
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    _reset(token)

            return _rebuild(handler, kind, guarded_stream)

        async def guarded(request, context):
            token = _principal.set(await authenticate(context))
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                _reset(token)

        return _rebuild(handler, kind, guarded)
