"""Transport: converts protobuf messages to domain calls and domain errors to gRPC statuses.

Nothing here decides anything: the rules live in :mod:`auth_service.credentials`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, timedelta

import grpc
from google.protobuf import any_pb2, message_factory
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc
from woes.auth.v1 import resources_pb2 as res

from auth_service.api.model_rpcs import COUNTED_FAILURES, ModelRpcMixin
from auth_service.cache.verified import CachedKey, Principal
from auth_service.domain.errors import AuthError, Category, FieldViolation, InternalError, InvalidArgument
from auth_service.domain.keys.manager import KNOWN_UNKNOWN, WRONG_SECRET, CredentialManager, IssueSpec
from auth_service.domain.keys.records import KeyRecord, utcnow
from auth_service.domain.tokens import SERVICE_KINDS, KeyKind
from auth_service.ops.stats import Outcomes

log = logging.getLogger(__name__)

ERROR_DOMAIN = "auth.woes"
SERVICE_NAME = "woes.auth.v1.AuthService"

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

_KIND_TO_PB = {
    KeyKind.SERVER: res.KEY_KIND_SERVER,
    KeyKind.WIDGET: res.KEY_KIND_WIDGET,
    KeyKind.ADMIN: res.KEY_KIND_ADMIN,
    KeyKind.INTERNAL: res.KEY_KIND_INTERNAL,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_STATE_TO_PB = {
    "active": res.KEY_STATE_ACTIVE,
    "revoked": res.KEY_STATE_REVOKED,
    "expired": res.KEY_STATE_EXPIRED,
    "rotated": res.KEY_STATE_ROTATED,
}


# -- errors ---------------------------------------------------------------


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


def _grpc_status(error: AuthError) -> grpc.Status:
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


_KNOWN_UNKNOWN_STATUS = _grpc_status(KNOWN_UNKNOWN)


def abort(context: grpc.ServicerContext, error: AuthError):
    try:
        context.abort_with_status(_grpc_status(error))
    except NotImplementedError:  # grpc_testing's context has no abort_with_status
        context.abort(_CODES[error.category][0], error.message)


def refuse(context: grpc.ServicerContext, error: AuthError) -> None:
    """Set the status of ``error`` on the call (code, message, ErrorInfo trailer) and return ``None``.

    For handlers registered without a response serializer only: grpcio then ends the call with
    the status set on the context, exactly as after :func:`abort`, but without an exception
    travelling up through every frame of the handler, which the refusals of a flood of made-up
    credentials would pay on every call. ``tests/test_rpc_server.py`` checks every reason of
    ``Authenticate`` over a real server, trailer included.
    """
    return set_status(context, _grpc_status(error))


def set_status(context: grpc.ServicerContext, status: grpc.Status) -> None:
    """What :func:`refuse` does, for a status already built."""
    context.set_code(status.code)
    context.set_details(status.details)
    context.set_trailing_metadata(status.trailing_metadata)
    return None


# -- conversions ----------------------------------------------------------


def _set_time(field, value) -> None:
    if value is not None:
        field.FromDatetime(value)


def key_to_pb(record: KeyRecord) -> res.Key:
    """Metadata only: the record's digest never leaves the domain, nor the internal permissions of
    an admin or internal key (its ``scopes``; shown only by ``woes-auth service-keys list``)."""
    key = res.Key(
        key_id=record.key_id,
        workspace_id=record.workspace_id,
        kind=_KIND_TO_PB[record.kind],
        display_name=record.display_name,
        scopes=() if record.kind in SERVICE_KINDS else record.scopes,
        state=_STATE_TO_PB[record.state_at(utcnow()).value],
        rotated_to=record.rotated_to,
        rotated_from=record.rotated_from,
        hint=record.hint,
        allowed_origins=record.allowed_origins,
        revoke_reason=record.revoke_reason,
        use_count=record.use_count,
        last_caller=record.last_caller,
    )
    _set_time(key.create_time, record.create_time)
    _set_time(key.expire_time, record.expire_time)
    _set_time(key.revoke_time, record.revoke_time)
    _set_time(key.grace_expire_time, record.grace_expire_time)
    _set_time(key.last_used_time, record.last_used_time)
    return key


def principal_to_pb(principal: Principal) -> res.Principal:
    out = res.Principal(
        key_id=principal.key_id,
        workspace_id=principal.workspace_id,
        kind=_KIND_TO_PB[principal.kind],
        scopes=principal.scopes,
    )
    _set_time(out.expire_time, principal.expire_time)
    return out


def _answer_of(principal: Principal) -> bytes:
    """The serialized ``AuthenticateResponse`` granting ``principal``."""
    return pb.AuthenticateResponse(principal=principal_to_pb(principal)).SerializeToString()


def _bearer(context: grpc.ServicerContext) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _kind_from_pb(value: int) -> KeyKind | None:
    return _KIND_FROM_PB.get(value)


def _violation(field: str, description: str) -> FieldViolation:
    return FieldViolation(field, description)


# -- the servicer ---------------------------------------------------------


class AuthServicer(ModelRpcMixin, pb_grpc.AuthServiceServicer):
    """Implements ``woes.auth.v1.AuthService`` over a :class:`CredentialManager`
    (and, for the RPCs of :class:`ModelRpcMixin`, the model services)."""

    def __init__(self, manager: CredentialManager, model=None):
        self.manager = manager
        self.model = model
        # A grant of the cache probe is counted once, by the cache (VerifiedCache.probe_grants).
        self.authenticate_outcomes = Outcomes(granted_elsewhere=lambda: manager.cache.probe_grants)
        # Principals are immutable and shared by every call of a cached key: each cache entry
        # holds its response, serialized once when the entry is made (CachedKey.answer).
        manager.answer_of = _answer_of
        # authenticate_cached: the front with nothing after it (one implementation of the grant).
        self._probe_alone = self.authenticate_front(lambda _request, _context, found: found)

    def _refused(self, error: AuthError) -> None:
        self.authenticate_outcomes.refused(error.reason)
        self.count_failure("Authenticate", error)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Authenticate refused: %s", error.reason, extra={"method": "Authenticate", "code": error.reason})

    def _verify(self, request: pb.AuthenticateRequest, context, end_refused=None) -> Principal | None:
        """The full rule; a refusal ends the call through ``end_refused`` (:func:`abort` by default,
        which raises; :func:`refuse` returns ``None``)."""
        try:
            principal = self.manager.authenticate(request.credential, request.required_scopes, request.caller)
        except AuthError as error:
            self._refused(error)
            return (end_refused or abort)(context, error)
        self.authenticate_outcomes.ok()
        return principal

    def Authenticate(self, request: pb.AuthenticateRequest, context):
        return pb.AuthenticateResponse(principal=principal_to_pb(self._verify(request, context)))

    def authenticate_cached(self, request: pb.AuthenticateRequest) -> bytes | AuthError | None:
        """What the caches alone decide (see :meth:`CredentialManager.authenticate_cached`): the
        serialized answer of a grant, a refusal for :meth:`authenticate_refused` to answer once the
        call gate's throttle lets it through, or ``None``. The call gate tries it first."""
        return self._probe_alone(request, None)

    def authenticate_front(
        self,
        rest: Callable,
        decode: Callable[[bytes], object] | None = None,
        refuse: Callable[[object, str, AuthError], bool] | None = None,
    ) -> Callable:
        """:meth:`authenticate_cached` fused with what the call gate does after it, as one frame:
        ``front(request, context)`` answers a grant of the probe itself and passes anything else on
        as ``rest(request, context, found)`` (``found``: the probe's refusal, or ``None``). The gate
        makes it the call's first frame when nothing is decided before the probe (see
        :meth:`auth_service.interceptors.CallGate.wrap`). One Python call fewer than probe and
        gate apart: in a serving process a call's code is out of the processor's caches, and
        there a Python call costs about a microsecond (see :meth:`CredentialManager.probe`).

        With ``decode`` (the method's request deserializer), ``front(wire, context)`` takes the
        request's bytes, as grpcio passes them to a handler registered without a deserializer:
        a repeat of a granted request is answered from them alone
        (:meth:`CredentialManager.probe_wire`), and so is a repeat of one the negative cache
        refused, through ``refuse(context, key_id, error)`` (the gate's accounting of a refusal,
        see :meth:`~auth_service.interceptors.CallGate.wrap`) when it takes it; anything else is
        decoded with ``decode`` and goes on as above, a grant or a negative refusal being
        remembered by its bytes, and so is a refusal of the full rule that the negative cache
        holds once it was made (the first sight of a made-up credential)."""
        probe = self.manager.probe
        undecodable = _UNDECODABLE
        if decode is not None:
            probe_wire = self.manager.probe_wire
            new_fingerprint = self.manager.new_fingerprint
            remember_refused = self.manager.remember_refused

            def front_wire(wire, context):
                hasher = new_fingerprint()
                hasher.update(wire)
                fingerprint = hasher.digest()
                found = probe_wire(fingerprint)
                if found is not None:
                    if type(found) is not str:
                        answer = found.answer
                        return answer if answer is not None else _answer_of(found.principal)
                    # A refusal of the negative cache, remembered (found: the key id it names).
                    if refuse is not None and refuse(context, found, KNOWN_UNKNOWN):
                        return None
                    return rest(decode(wire), context, KNOWN_UNKNOWN)
                request = decode(wire)
                if request is undecodable:
                    return rest(request, context, None)
                scopes = request.required_scopes[:]
                found = probe(request.credential, scopes, request.caller, fingerprint)
                if type(found) is CachedKey:
                    answer = found.answer
                    return answer if answer is not None else _answer_of(found.principal)
                if found is not None:
                    return rest(request, context, found)
                answer = rest(request, context, None)
                if answer is None:  # refused by the full rule (returned, as Authenticate's refusals are)
                    remember_refused(request.credential, scopes, request.caller, fingerprint)
                return answer

            return front_wire

        def front(request, context):
            if request is undecodable:
                return rest(request, context, None)  # refused by the handler proper, as all such are
            # The scopes as a list, by slicing: iterating the request's repeated field walks it by
            # index until IndexError, which costs more than the rest of the scope checks together.
            found = probe(request.credential, request.required_scopes[:], request.caller)
            if type(found) is CachedKey:  # an ok outcome, counted by the cache as a probe grant
                wire = found.answer
                return wire if wire is not None else _answer_of(found.principal)
            return rest(request, context, found)

        return front

    def authenticate_refused(self, request: pb.AuthenticateRequest, context, error: AuthError) -> None:
        """Answer a refusal :meth:`authenticate_cached` found, as :meth:`authenticate_serialized` would
        (the negative cache's refusal with its status built once: this is the path of a flood)."""
        # _refused(), count_failure() and set_status() written out: every call of a flood of
        # made-up credentials comes here, and in a serving process each Python call fewer counts.
        reason = error.reason
        self.authenticate_outcomes.refused(reason)
        model = self.model
        if model is not None and error.category in COUNTED_FAILURES:
            model.failures.record("Authenticate", reason, error.metadata.get("key_id", ""))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Authenticate refused: %s", reason, extra={"method": "Authenticate", "code": reason})
        status = _KNOWN_UNKNOWN_STATUS if error is KNOWN_UNKNOWN or error is WRONG_SECRET else _grpc_status(error)
        context.set_code(status.code)
        context.set_details(status.details)
        context.set_trailing_metadata(status.trailing_metadata)
        return None

    def authenticate_serialized(self, request: pb.AuthenticateRequest, context) -> bytes | None:
        """``Authenticate`` as registered with the server: the response already serialized, and a
        refusal returned rather than raised (see :func:`refuse`)."""
        principal = self._verify(request, context, refuse)
        return None if principal is None else _answer_of(principal)

    def VerifyWidgetKey(self, request: pb.VerifyWidgetKeyRequest, context):
        try:
            principal = self.manager.verify_widget_key(request.public_key, request.origin)
        except AuthError as error:
            error = self.on_widget_refusal(request.public_key, error)
            log.debug(
                "VerifyWidgetKey refused: %s", error.reason, extra={"method": "VerifyWidgetKey", "code": error.reason}
            )
            return abort(context, error)
        return pb.VerifyWidgetKeyResponse(workspace_id=principal.workspace_id, key_id=principal.key_id)

    def _admin(self, context) -> str:
        return "admin:" + self.manager.authenticate_admin(_bearer(context)).key_id

    def IssueKey(self, request: pb.IssueKeyRequest, context):
        try:
            actor = self._admin(context)
            spec = IssueSpec(
                workspace_id=request.workspace_id,
                kind=_kind_from_pb(request.kind),
                display_name=request.display_name,
                scopes=tuple(request.scopes),
                expire_time=request.expire_time.ToDatetime(tzinfo=UTC) if request.HasField("expire_time") else None,
                allowed_origins=tuple(request.allowed_origins),
                request_id=request.request_id,
            )
            issued = self.manager.issue_key(actor, spec)
        except AuthError as error:
            log.info("IssueKey refused: %s", error.reason, extra={"method": "IssueKey", "code": error.reason})
            return abort(context, error)
        except (ValueError, OverflowError):
            return abort(context, InvalidArgument(_violation("expire_time", "not a valid timestamp")))
        log.info(
            "%s key %s (%s) for workspace %s by %s",
            "replayed" if issued.replayed else "issued",
            issued.key.key_id,
            issued.key.kind.value,
            issued.key.workspace_id,
            actor,
            extra={"method": "IssueKey", "key_id": issued.key.key_id},
        )
        return pb.IssueKeyResponse(key=key_to_pb(issued.key), secret=issued.secret, replayed=issued.replayed)

    def Rotate(self, request: pb.RotateRequest, context):
        try:
            actor = self._admin(context)
            grace = None
            if request.HasField("grace_period"):
                d = request.grace_period
                if d.seconds < 0 or d.nanos < 0:
                    grace = timedelta(seconds=-1)
                else:
                    grace = timedelta(seconds=min(d.seconds, 10**9), microseconds=d.nanos // 1000)
            issued, previous = self.manager.rotate(actor, request.key_id, grace)
        except AuthError as error:
            log.info("Rotate refused: %s", error.reason, extra={"method": "Rotate", "code": error.reason})
            return abort(context, error)
        log.info("rotated key %s to %s by %s", previous.key_id, issued.key.key_id, actor, extra={"method": "Rotate"})
        return pb.RotateResponse(key=key_to_pb(issued.key), secret=issued.secret, previous_key=key_to_pb(previous))

    def Revoke(self, request: pb.RevokeRequest, context):
        try:
            actor = self._admin(context)
            record = self.manager.revoke(actor, request.key_id, request.reason)
        except AuthError as error:
            log.info("Revoke refused: %s", error.reason, extra={"method": "Revoke", "code": error.reason})
            return abort(context, error)
        log.info("revoked key %s by %s", record.key_id, actor, extra={"method": "Revoke", "key_id": record.key_id})
        return pb.RevokeResponse(key=key_to_pb(record))

    def GetKey(self, request: pb.GetKeyRequest, context):
        try:
            self._admin(context)
            record = self.manager.get_key(request.key_id)
        except AuthError as error:
            return abort(context, error)
        return pb.GetKeyResponse(key=key_to_pb(record), **self.exposure_fields(record.key_id))

    def ListKeys(self, request: pb.ListKeysRequest, context):
        try:
            self._admin(context)
            page = self.manager.list_keys(request.workspace_id, request.page_size, request.page_token)
        except AuthError as error:
            return abort(context, error)
        return pb.ListKeysResponse(keys=[key_to_pb(k) for k in page.keys], next_page_token=page.next_page_token)


# -- registration -----------------------------------------------------------


class _Undecodable:
    """Stands for request bytes that are not a valid message (e.g. invalid UTF-8 in a string)."""


_UNDECODABLE = _Undecodable()


def _safe_deserializer(message_cls) -> Callable[[bytes], object]:
    from_string = message_cls.FromString

    def deserialize(data: bytes):
        try:
            return from_string(data)
        except (DecodeError, ValueError, RuntimeError):
            return _UNDECODABLE

    return deserialize


def _guarded(method: Callable, name: str) -> Callable:
    def handler(request, context):
        if request is _UNDECODABLE:
            return abort(
                context,
                InvalidArgument(_violation("request", "not a valid message (string fields must be UTF-8)")),
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

    ``gate`` (an :class:`auth_service.interceptors.CallGate`) wraps each handler here, once,
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
            request_deserializer=_safe_deserializer(request_cls),
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
