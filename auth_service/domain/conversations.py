"""Conversation history secrets: one secret opens the widget history of one conversation.

Design: a keyed MAC, not a stored digest.

    secret = woes_cs_<signing key id>_<MAC><checksum>
    MAC    = HMAC-SHA256(K_ws, "woes-cs/v1" | workspace id | conversation id | epoch), 256 bits in base62
    K_ws   = HMAC-SHA256(pepper, "woes-auth/conversation-history-key/v1:" | salt)

Each workspace has a current *history signing key*: a row holding a public id,
a random salt and the id of the pepper that derives ``K_ws`` from it. The
database alone cannot derive ``K_ws`` (the pepper never enters it), so a dump
mints no secret. Issuing a secret writes nothing per conversation; verifying
one is two primary-key reads (the signing key named in the secret, and the
conversation's revocation epoch, absent unless it was ever revoked) plus one
HMAC, whatever the number of conversations. A stored digest per conversation
would need a row per conversation (millions) and a write on every issue; the
MAC needs a row per workspace key and one per revoked conversation only.

* Per-conversation revocation advances the conversation's *epoch*; every
  secret issued under an older epoch stops matching. A new secret issued
  afterwards uses the new epoch.
* Workspace-wide revocation rotates the signing key: a new key becomes
  current and older ones stop verifying after a grace (0 = at once).
* The MAC binds the workspace, so a secret presented with another
  workspace's widget key is refused; and it binds the conversation id, so it
  opens no other conversation. The widget key is checked first exactly as by
  ``VerifyWidgetKey`` (revoked, expired, origin). The ``cs`` kind is refused by
  ``Authenticate`` and ``VerifyWidgetKey``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.crypto import Pepper
from auth_service.domain.errors import (
    ConversationSecretInvalid,
    ConversationSecretRevoked,
    ConversationWorkspaceMismatch,
    CredentialKindNotAccepted,
    CredentialNotWidgetKey,
    CredentialUnknown,
    OriginNotAllowed,
    StoreUnavailable,
    Violations,
)
from auth_service.domain.exposure import ExposureGuard
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import CachedKey
from auth_service.domain.ports import ConversationStore
from auth_service.domain.tokens import KeyKind
from auth_service.domain.validation import WORKSPACE_ID_RE, has_control_chars, normalize_origin


@dataclass(frozen=True)
class SigningKey:
    """A workspace's conversation-history signing key. The MAC key is
    ``HMAC(pepper[pepper_id], label || salt)``; the row alone derives nothing."""

    key_id: str
    workspace_id: str
    pepper_id: str
    salt: bytes = field(repr=False)
    create_time: datetime
    retire_time: datetime | None = None  # secrets under it verify until then; None while current
    created_by: str = ""

    def usable_at(self, now: datetime) -> bool:
        return self.retire_time is None or now < self.retire_time


CONVERSATION_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
KEY_LABEL = "woes-auth/conversation-history-key/v1:"
DEFAULT_GRACE = timedelta(hours=1)
MAX_GRACE = timedelta(days=7)
MAX_EPOCHS_CHECKED = 64
MAX_REASON = 200


@dataclass(frozen=True)
class IssuedConversationSecret:
    workspace_id: str
    conversation_id: str
    signing_key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"IssuedConversationSecret({self.workspace_id}/{self.conversation_id}, key={self.signing_key_id})"


@dataclass(frozen=True)
class VerifiedConversation:
    workspace_id: str
    conversation_id: str
    widget_key_id: str
    signing_key_id: str


class ConversationSecrets:
    def __init__(self, manager: CredentialManager, store: ConversationStore, pepper: Pepper, exposure: ExposureGuard):
        self.manager = manager
        self.store = store
        self.pepper = pepper
        self.exposure = exposure

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _check_conversation_id(conversation_id: str, v: Violations) -> None:
        if not CONVERSATION_ID_RE.fullmatch(conversation_id):
            v.add("conversation_id", "required, 1 to 128 characters of A-Z a-z 0-9 _ . : -")

    def _mac_key(self, key: SigningKey) -> bytes | None:
        return self.pepper.digest_with(key.pepper_id, KEY_LABEL + key.salt.hex())

    @staticmethod
    def _mac(mac_key: bytes, workspace_id: str, conversation_id: str, epoch: int) -> str:
        message = f"woes-cs/v1\0{workspace_id}\0{conversation_id}\0{epoch}".encode()
        return tokens.encode_secret(hmac.digest(mac_key, message, "sha256"))

    def _widget(self, public_key: str, origin: str, *, where: str) -> CachedKey:
        """Verify the widget key as VerifyWidgetKey does (origin checked when given or required)."""
        normalized = ""
        if origin:
            normalized = normalize_origin(origin) or ""
            if not normalized:
                v = Violations()
                v.add("origin", "not an origin of the form scheme://host[:port]")
                v.raise_if_any()
        cred = self.manager.parse(public_key)
        if cred.kind is not KeyKind.WIDGET:
            refusal = CredentialNotWidgetKey(
                "public_key must be a widget public key", metadata={"kind": cred.kind.value}
            )
            raise self.exposure.check_browser_credential(public_key, where, refusal)
        entry = self.manager.lookup(cred)
        self.manager.check_live(entry, time.time())
        if entry.allowed_origins and normalized not in entry.allowed_origins:
            raise OriginNotAllowed(
                "the widget key is not allowed from this origin" if normalized else "the widget key requires an origin",
                metadata={"key_id": entry.key_id},
            )
        return entry

    # -- issue / verify --------------------------------------------------------------

    def issue(self, public_key: str, conversation_id: str, origin: str = "") -> IssuedConversationSecret:
        v = Violations()
        self._check_conversation_id(conversation_id, v)
        v.raise_if_any()
        widget = self._widget(public_key, origin, where="IssueConversationSecret")
        workspace_id = widget.workspace_id
        key = self.store.current_signing_key(workspace_id)
        if key is None:
            key = self._first_signing_key(workspace_id)
        mac_key = self._mac_key(key)
        if mac_key is None:
            raise StoreUnavailable("the pepper of the workspace's history signing key is not configured")
        _, epoch = self.store.verification_lookup(key.key_id, workspace_id, conversation_id)
        cred = tokens.assemble(
            KeyKind.CONVERSATION, key.key_id, self._mac(mac_key, workspace_id, conversation_id, epoch)
        )
        return IssuedConversationSecret(workspace_id, conversation_id, key.key_id, cred.token)

    def _new_signing_key(self, workspace_id: str, now: datetime, actor: str) -> SigningKey:
        return SigningKey(
            key_id=tokens.new_key_id(),
            workspace_id=workspace_id,
            pepper_id=self.pepper.primary_id,
            salt=secrets.token_bytes(32),
            create_time=now,
            created_by=actor,
        )

    def _first_signing_key(self, workspace_id: str) -> SigningKey:
        now = utcnow()
        key = self._new_signing_key(workspace_id, now, "system:first-conversation-secret")
        audit = AuditEvent(
            action="conversation_key.create",
            actor=key.created_by,
            outcome="ok",
            key_id=key.key_id,
            workspace_id=workspace_id,
            detail="first history signing key of the workspace",
            time=now,
        )
        return self.store.create_signing_key(key, audit)

    def verify(self, public_key: str, origin: str, conversation_id: str, secret: str) -> VerifiedConversation:
        v = Violations()
        self._check_conversation_id(conversation_id, v)
        if not secret:
            v.add("secret", "required: the conversation history secret (woes_cs_...)")
        v.raise_if_any()
        widget = self._widget(public_key, origin, where="VerifyConversationSecret")
        cred = self.manager.parse(secret)
        if cred.kind is not KeyKind.CONVERSATION:
            refusal = CredentialKindNotAccepted(
                "secret must be a conversation history secret", metadata={"kind": cred.kind.value}
            )
            raise self.exposure.check_browser_credential(secret, "VerifyConversationSecret", refusal)
        workspace_id = widget.workspace_id
        key, epoch = self.store.verification_lookup(cred.key_id, workspace_id, conversation_id)
        if key is None:
            raise CredentialUnknown("unknown conversation history secret")
        if key.workspace_id != workspace_id:
            raise ConversationWorkspaceMismatch(
                "the conversation history secret belongs to another workspace than the widget key",
                metadata={"widget_key_id": widget.key_id},
            )
        mac_key = self._mac_key(key)
        if mac_key is None:
            raise StoreUnavailable("the pepper of the workspace's history signing key is not configured")
        presented = cred.token[len("woes_cs_") + tokens.KEY_ID_LEN + 1 : -tokens.CHECKSUM_LEN]
        if hmac.compare_digest(self._mac(mac_key, workspace_id, conversation_id, epoch), presented):
            if not key.usable_at(utcnow()):
                raise ConversationSecretRevoked(
                    "the workspace's history signing key was rotated and its grace period ended",
                    metadata={"signing_key_id": key.key_id},
                )
            return VerifiedConversation(workspace_id, conversation_id, widget.key_id, key.key_id)
        for old in range(max(0, epoch - MAX_EPOCHS_CHECKED), epoch):
            if hmac.compare_digest(self._mac(mac_key, workspace_id, conversation_id, old), presented):
                raise ConversationSecretRevoked(
                    "this conversation's history secrets were revoked", metadata={"signing_key_id": key.key_id}
                )
        raise ConversationSecretInvalid(
            "the secret does not open this conversation", metadata={"signing_key_id": key.key_id}
        )

    # -- revocation ----------------------------------------------------------------------

    def revoke(
        self, actor: str, workspace_id: str, conversation_id: str, reason: str = "", request_id: str = ""
    ) -> int:
        v = Violations()
        if not WORKSPACE_ID_RE.fullmatch(workspace_id):
            v.add("workspace_id", "required, 1 to 64 characters of A-Z a-z 0-9 _ -")
        self._check_conversation_id(conversation_id, v)
        if len(reason) > MAX_REASON or has_control_chars(reason):
            v.add("reason", f"at most {MAX_REASON} printable characters")
        v.raise_if_any()
        now = utcnow()
        audit = AuditEvent(
            action="conversation.revoke",
            actor=actor,
            outcome="ok",
            workspace_id=workspace_id,
            request_id=request_id,
            detail=f"conversation_id={conversation_id} {reason}".strip(),
            time=now,
        )
        return self.store.revoke_conversation(workspace_id, conversation_id, now, audit)

    def rotate_signing_key(
        self, actor: str, workspace_id: str, grace: timedelta | None, request_id: str = ""
    ) -> tuple[SigningKey, int, datetime]:
        """A new current signing key; older ones verify until ``now + grace``. Returns (key, retired, until)."""
        v = Violations()
        if not WORKSPACE_ID_RE.fullmatch(workspace_id):
            v.add("workspace_id", "required, 1 to 64 characters of A-Z a-z 0-9 _ -")
        if grace is None:
            grace = DEFAULT_GRACE
        elif grace < timedelta(0) or grace > MAX_GRACE:
            v.add("grace_period", "must be between 0 and 7 days")
        v.raise_if_any()
        now = utcnow()
        key = self._new_signing_key(workspace_id, now, actor)
        until = now + grace
        audit = AuditEvent(
            action="conversation_key.rotate",
            actor=actor,
            outcome="ok",
            key_id=key.key_id,
            workspace_id=workspace_id,
            request_id=request_id,
            detail=f"grace_seconds={int(grace.total_seconds())}",
            time=now,
        )
        retired = self.store.rotate_signing_keys(key, until, audit)
        return key, retired, until
