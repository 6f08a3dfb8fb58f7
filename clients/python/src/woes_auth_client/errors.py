"""Typed exceptions of the woes-auth client.

Every failed call raises a subclass of :class:`AuthError`, chosen first by the
``google.rpc.ErrorInfo.reason`` the service sends (domain ``auth.woes``), then
by the gRPC status code when there is no known reason (for instance when the
service cannot be reached at all). Callers branch on the class or on
``reason``, never on the message text.

An exception carries the status code, the reason, the ErrorInfo metadata and
the field violations of a ``google.rpc.BadRequest``. It never carries the
credential: the service never echoes it, and anything shaped like a woes
credential is masked from the message and metadata before they are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "auth.woes"
"""The ``google.rpc.ErrorInfo.domain`` of every error the service returns."""

_CREDENTIAL_LIKE = re.compile(r"woes_[a-z]{2}_[0-9A-Za-z_]{8,}")


def mask_credentials(text: str) -> str:
    """``text`` with anything shaped like a woes credential replaced by ``woes_**_[masked]``."""
    return _CREDENTIAL_LIKE.sub(lambda m: m.group(0)[:8] + "[masked]", text)


class AuthError(Exception):
    """Base of every error the client raises for a failed call."""

    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        violations: tuple[tuple[str, str], ...] = (),
    ):
        self.code = code or self.default_code
        self.reason = reason
        self.message = mask_credentials(message or self.code.name.lower())
        self.metadata = {k: mask_credentials(v) for k, v in (metadata or {}).items()}
        self.violations = tuple((f, mask_credentials(d)) for f, d in violations)
        super().__init__(self.message)

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"


# -- by status code ---------------------------------------------------------------


class Unauthenticated(AuthError):
    """The credential does not authenticate (``UNAUTHENTICATED``)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AuthError):
    """The credential authenticates but may not do this (``PERMISSION_DENIED``)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class InvalidArgument(AuthError):
    """A request field is invalid (``INVALID_ARGUMENT``); ``violations`` lists (field, description) pairs."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(AuthError):
    default_code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(AuthError):
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(AuthError):
    default_code = grpc.StatusCode.ALREADY_EXISTS


class AuthUnavailable(AuthError):
    """woes-auth could not give an answer: unreachable, overloaded, its store down, or too slow.

    Never a verdict on the credential: a caller must refuse the request it is
    serving (fail closed) and may retry later.
    """

    default_code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class AuthDeadlineExceeded(AuthUnavailable):
    """No answer within the call's deadline (``DEADLINE_EXCEEDED``)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class InternalError(AuthError):
    """An unexpected failure on the server (``INTERNAL``/``UNKNOWN`` and other codes)."""

    default_code = grpc.StatusCode.INTERNAL


# -- by ErrorInfo.reason ------------------------------------------------------------


class CredentialMalformed(Unauthenticated):
    """Empty, too long, unknown prefix or bad checksum; decided without storage access."""


class CredentialUnknown(Unauthenticated):
    """Well-formed, but no such credential exists."""


class CredentialRevoked(Unauthenticated):
    """The credential was revoked."""


class CredentialExpired(Unauthenticated):
    """The credential expired, or its rotation grace period ended."""


class AdminCredentialRequired(Unauthenticated):
    """An admin RPC was called without an admin credential."""


class WidgetKeyNotApiCredential(PermissionDenied):
    """A widget public key was given where a server API credential is required."""


class CredentialNotWidgetKey(PermissionDenied):
    """A non-widget credential was given to ``VerifyWidgetKey``."""


class CredentialKindNotAccepted(PermissionDenied):
    """A credential of a kind that never authenticates API calls (an admin or internal credential)."""


class InsufficientScope(PermissionDenied):
    """The credential lacks scopes; ``missing`` names them."""

    @property
    def missing(self) -> tuple[str, ...]:
        raw = self.metadata.get("missing_scopes", "")
        return tuple(s for s in raw.split(",") if s)


class OriginNotAllowed(PermissionDenied):
    """The widget key is not allowed from the given origin."""


class NotAdminCredential(PermissionDenied):
    """An admin RPC was called with a credential that is not an admin credential."""


class KeyNotFound(NotFound):
    pass


class KeyNotRotatable(FailedPrecondition):
    pass


class RequestIdReused(AlreadyExists):
    pass


class StoreUnavailable(AuthUnavailable):
    """The service is up but its credential store cannot be reached."""


class ConversationSecretInvalid(Unauthenticated):
    """The conversation history secret does not open the conversation asked for."""


class ConversationSecretRevoked(Unauthenticated):
    """The conversation's secrets were revoked (or the workspace's signing key rotated)."""


class ConversationWorkspaceMismatch(PermissionDenied):
    """The conversation secret belongs to another workspace than the widget key."""


class CallerNotAllowed(PermissionDenied):
    """The calling service may not call this RPC group under woes-auth's caller policy."""


class InternalPermissionRequired(PermissionDenied):
    """The credential lacks the internal permission of an internal RPC (metadata ``permission``):
    an internal credential without it, or a credential of another kind (metadata ``kind``)."""


class InternalCredentialRequired(Unauthenticated):
    """An internal RPC was called without an internal credential (``woes_ik_``)."""


class TooManyFailures(AuthError):
    """Too many failed authentications from this caller or for this key id: back off.

    Not retried automatically: retrying a refused credential only prolongs the throttle.
    """

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


REASONS: dict[str, type[AuthError]] = {
    "CREDENTIAL_MALFORMED": CredentialMalformed,
    "CREDENTIAL_UNKNOWN": CredentialUnknown,
    "CREDENTIAL_REVOKED": CredentialRevoked,
    "CREDENTIAL_EXPIRED": CredentialExpired,
    "ADMIN_CREDENTIAL_REQUIRED": AdminCredentialRequired,
    "WIDGET_KEY_NOT_API_CREDENTIAL": WidgetKeyNotApiCredential,
    "CREDENTIAL_NOT_WIDGET_KEY": CredentialNotWidgetKey,
    "CREDENTIAL_KIND_NOT_ACCEPTED": CredentialKindNotAccepted,
    "INSUFFICIENT_SCOPE": InsufficientScope,
    "ORIGIN_NOT_ALLOWED": OriginNotAllowed,
    "NOT_ADMIN_CREDENTIAL": NotAdminCredential,
    "INVALID_ARGUMENT": InvalidArgument,
    "KEY_NOT_FOUND": KeyNotFound,
    "KEY_NOT_ROTATABLE": KeyNotRotatable,
    "REQUEST_ID_REUSED": RequestIdReused,
    "STORE_UNAVAILABLE": StoreUnavailable,
    "INTERNAL": InternalError,
    "CONVERSATION_SECRET_INVALID": ConversationSecretInvalid,
    "CONVERSATION_SECRET_REVOKED": ConversationSecretRevoked,
    "CONVERSATION_WORKSPACE_MISMATCH": ConversationWorkspaceMismatch,
    "CALLER_NOT_ALLOWED": CallerNotAllowed,
    "INTERNAL_PERMISSION_REQUIRED": InternalPermissionRequired,
    "INTERNAL_CREDENTIAL_REQUIRED": InternalCredentialRequired,
    "TOO_MANY_FAILURES": TooManyFailures,
}
"""``ErrorInfo.reason`` (domain ``auth.woes``) -> exception class."""

CODES: dict[grpc.StatusCode, type[AuthError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAVAILABLE: AuthUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: AuthDeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: AuthUnavailable,
    grpc.StatusCode.CANCELLED: AuthUnavailable,
}
"""Status code -> exception class, for errors without a known reason."""


def _details(error: grpc.RpcError) -> tuple[str, dict[str, str], tuple[tuple[str, str], ...]]:
    reason = ""
    metadata: dict[str, str] = {}
    violations: tuple[tuple[str, str], ...] = ()
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # trailing status does not match the call's code/message
        status = None
    if status is None:
        return reason, metadata, violations
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = tuple((v.field, v.description) for v in bad.field_violations)
    return reason, metadata, violations


def from_rpc_error(error: grpc.RpcError) -> AuthError:
    """The typed exception for a failed call (``error`` must be a call error with ``code()``)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    code = code or grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else "") or ""
    reason, metadata, violations = _details(error)
    cls = REASONS.get(reason)
    if cls is None or cls.default_code != code:  # a reason counts only with the code it belongs to
        cls = CODES.get(code, InternalError)
    return cls(message, code=code, reason=reason, metadata=metadata, violations=violations)
