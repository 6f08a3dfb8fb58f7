"""Domain errors of conversation secrets, test credentials, audit and exposure.

Like :mod:`auth_service.errors`, each names a category and a stable reason
(the ``ErrorReason`` value name without its prefix) and never holds a secret.
"""

from __future__ import annotations

from auth_service.domain.errors import AuthError, Category


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
