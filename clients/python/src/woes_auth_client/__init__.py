"""Client of the woes-auth service (package ``woes.auth.v1``).

* :class:`AuthClient` / :class:`AsyncAuthClient`: ``authenticate`` and
  ``verify_widget_key`` with deadlines, retries of ``UNAVAILABLE`` through the
  gRPC service config, keepalive, TLS and client certificates.
* :class:`AuthInterceptor` / :class:`AsyncAuthInterceptor`: guard another gRPC
  service in one line; handlers read :func:`current_principal`.
* Typed errors (:mod:`woes_auth_client.errors`), all subclasses of :class:`AuthError`.
"""

from .cache import MicroCache
from .channel import DEFAULT_TIMEOUT, ChannelSettings, RetryPolicy, TLSConfig
from .client import AsyncAuthClient, AuthClient
from .errors import (
    ERROR_DOMAIN,
    AdminCredentialRequired,
    AlreadyExists,
    AuthDeadlineExceeded,
    AuthError,
    AuthUnavailable,
    CallerNotAllowed,
    ConversationSecretInvalid,
    ConversationSecretRevoked,
    ConversationWorkspaceMismatch,
    CredentialExpired,
    CredentialKindNotAccepted,
    CredentialMalformed,
    CredentialNotWidgetKey,
    CredentialRevoked,
    CredentialUnknown,
    FailedPrecondition,
    InsufficientScope,
    InternalCredentialRequired,
    InternalError,
    InternalPermissionRequired,
    InvalidArgument,
    KeyNotFound,
    KeyNotRotatable,
    NotAdminCredential,
    NotFound,
    OriginNotAllowed,
    PermissionDenied,
    RequestIdReused,
    StoreUnavailable,
    TooManyFailures,
    Unauthenticated,
    WidgetKeyNotApiCredential,
)
from .interceptor import AsyncAuthInterceptor, AuthInterceptor, bearer_credential, current_principal, principal_or_none
from .types import ConversationAccess, Principal, WidgetKey

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_DOMAIN",
    "AdminCredentialRequired",
    "AlreadyExists",
    "AsyncAuthClient",
    "AsyncAuthInterceptor",
    "AuthClient",
    "AuthDeadlineExceeded",
    "AuthError",
    "AuthInterceptor",
    "AuthUnavailable",
    "CallerNotAllowed",
    "ConversationAccess",
    "ConversationSecretInvalid",
    "ConversationSecretRevoked",
    "ConversationWorkspaceMismatch",
    "ChannelSettings",
    "CredentialExpired",
    "CredentialKindNotAccepted",
    "CredentialMalformed",
    "CredentialNotWidgetKey",
    "CredentialRevoked",
    "CredentialUnknown",
    "FailedPrecondition",
    "InsufficientScope",
    "InternalCredentialRequired",
    "InternalError",
    "InternalPermissionRequired",
    "InvalidArgument",
    "KeyNotFound",
    "KeyNotRotatable",
    "MicroCache",
    "NotAdminCredential",
    "NotFound",
    "OriginNotAllowed",
    "PermissionDenied",
    "Principal",
    "RequestIdReused",
    "RetryPolicy",
    "StoreUnavailable",
    "TooManyFailures",
    "TLSConfig",
    "Unauthenticated",
    "WidgetKey",
    "WidgetKeyNotApiCredential",
    "bearer_credential",
    "current_principal",
    "principal_or_none",
]
