"""Domain errors.

Every failure the service reports is one of these. Each names a *category*
(what kind of failure it is, independent of any transport) and a stable
*reason* (the ``ErrorReason`` value name without its prefix). The transport
layer maps categories to status codes; domain code knows nothing of gRPC.

Messages and metadata must never contain a secret: they are returned to
callers and written to logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Category(Enum):
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    FAILED_PRECONDITION = "failed_precondition"
    ALREADY_EXISTS = "already_exists"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource_exhausted"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class AuthError(Exception):
    """Base of every domain error."""

    category: Category = Category.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


class CredentialMalformed(AuthError):
    category = Category.UNAUTHENTICATED
    reason = "CREDENTIAL_MALFORMED"


class CredentialUnknown(AuthError):
    category = Category.UNAUTHENTICATED
    reason = "CREDENTIAL_UNKNOWN"


class CredentialRevoked(AuthError):
    category = Category.UNAUTHENTICATED
    reason = "CREDENTIAL_REVOKED"


class CredentialExpired(AuthError):
    category = Category.UNAUTHENTICATED
    reason = "CREDENTIAL_EXPIRED"


class WidgetKeyNotApiCredential(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "WIDGET_KEY_NOT_API_CREDENTIAL"


class CredentialNotWidgetKey(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "CREDENTIAL_NOT_WIDGET_KEY"


class CredentialKindNotAccepted(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "CREDENTIAL_KIND_NOT_ACCEPTED"


class InsufficientScope(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "INSUFFICIENT_SCOPE"

    def __init__(self, missing: list[str]):
        super().__init__(
            "the credential lacks required scopes: " + ", ".join(missing),
            metadata={"missing_scopes": ",".join(missing)},
        )
        self.missing = tuple(missing)


class OriginNotAllowed(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "ORIGIN_NOT_ALLOWED"


class InvalidArgument(AuthError):
    category = Category.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation] | FieldViolation):
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = tuple(violations)
        text = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(
            f"invalid request: {text}",
            metadata={"fields": ",".join(dict.fromkeys(v.field for v in self.violations))},
        )


class KeyNotFound(AuthError):
    category = Category.NOT_FOUND
    reason = "KEY_NOT_FOUND"

    def __init__(self, key_id: str):
        super().__init__(f"no key has id {key_id!r}", metadata={"key_id": key_id})


class KeyNotRotatable(AuthError):
    category = Category.FAILED_PRECONDITION
    reason = "KEY_NOT_ROTATABLE"


class RequestIdReused(AuthError):
    category = Category.ALREADY_EXISTS
    reason = "REQUEST_ID_REUSED"


class AdminCredentialRequired(AuthError):
    category = Category.UNAUTHENTICATED
    reason = "ADMIN_CREDENTIAL_REQUIRED"


class NotAdminCredential(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "NOT_ADMIN_CREDENTIAL"


class StoreUnavailable(AuthError):
    category = Category.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"

    def __init__(self, message: str = "the credential store is unavailable; retry later"):
        super().__init__(message)


class InternalError(AuthError):
    category = Category.INTERNAL
    reason = "INTERNAL"


class CallerNotAllowed(AuthError):
    category = Category.PERMISSION_DENIED
    reason = "CALLER_NOT_ALLOWED"

    def __init__(self, caller: str, group: str):
        super().__init__(
            f"caller {caller!r} may not call {group} RPCs; ask for it in the caller policy",
            metadata={"caller": caller, "group": group},
        )


class TooManyFailures(AuthError):
    category = Category.RESOURCE_EXHAUSTED
    reason = "TOO_MANY_FAILURES"

    def __init__(self, scope: str, retry_after: float):
        super().__init__(
            f"too many failed authentications from this {scope.replace('_', ' ')}; retry later",
            metadata={"scope": scope},
        )
        self.retry_after = retry_after


@dataclass
class Violations:
    """Collects field violations while validating a request."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_name: str, description: str) -> None:
        self.items.append(FieldViolation(field_name, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


# -- conversation secrets, test credentials, internal credentials ------------------


class ConversationSecretInvalid(AuthError):
    """The conversation secret does not open this conversation (or was forged)."""

    category = Category.UNAUTHENTICATED
    reason = "CONVERSATION_SECRET_INVALID"


class ConversationSecretRevoked(AuthError):
    """The secret was revoked: for its conversation, or by a rotation of the workspace's history key."""

    category = Category.UNAUTHENTICATED
    reason = "CONVERSATION_SECRET_REVOKED"


class ConversationWorkspaceMismatch(AuthError):
    """The secret belongs to another workspace than the widget key presented with it."""

    category = Category.PERMISSION_DENIED
    reason = "CONVERSATION_WORKSPACE_MISMATCH"


class PermissionRequired(AuthError):
    """The credential presented holds no internal permission named ``permission`` (metadata
    ``permission``; ``kind`` too when the credential is no internal credential at all, e.g. an
    admin credential, which never carries one)."""

    category = Category.PERMISSION_DENIED
    reason = "INTERNAL_PERMISSION_REQUIRED"

    def __init__(self, permission: str, kind: str = ""):
        metadata = {"permission": permission}
        if kind:
            metadata["kind"] = kind
        super().__init__(
            f"this RPC needs an internal credential (woes_ik_) holding the permission {permission!r}"
            + (f"; a credential of kind {kind} holds none" if kind else ""),
            metadata=metadata,
        )


class InternalCredentialRequired(AuthError):
    """An internal RPC was called without ``authorization: Bearer <internal credential>``."""

    category = Category.UNAUTHENTICATED
    reason = "INTERNAL_CREDENTIAL_REQUIRED"


class TestCredentialNotFound(AuthError):
    category = Category.NOT_FOUND
    reason = "TEST_CREDENTIAL_NOT_FOUND"

    def __init__(self, credential_id: str):
        super().__init__(f"no test credential has id {credential_id!r}", metadata={"credential_id": credential_id})


class KeyEncryptionKeyMissing(AuthError):
    """The key-encryption key that wrapped a record is not configured."""

    category = Category.FAILED_PRECONDITION
    reason = "KEK_NOT_CONFIGURED"


class TestCredentialUnreadable(AuthError):
    """The stored ciphertext failed authentication: tampered, or moved from another row."""

    category = Category.INTERNAL
    reason = "TEST_CREDENTIAL_UNREADABLE"


# pytest would try to collect classes named Test*; these are not tests.
TestCredentialNotFound.__test__ = False  # type: ignore[attr-defined]


TestCredentialUnreadable.__test__ = False  # type: ignore[attr-defined]


# pytest would try to collect classes named Test*; these are not tests.
TestCredentialNotFound.__test__ = False  # type: ignore[attr-defined]
TestCredentialUnreadable.__test__ = False  # type: ignore[attr-defined]


# -- configuration ----------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change (never key material).

    Not an :class:`AuthError`: it stops a process or a command, it is never a call's answer."""
