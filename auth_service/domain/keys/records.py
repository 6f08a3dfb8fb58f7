"""Domain records: what a key is, independent of storage and transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from auth_service.domain.tokens import KeyKind


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoredState(Enum):
    """What the store records; expiry is derived from time, not stored."""

    ACTIVE = "active"
    REVOKED = "revoked"
    ROTATED = "rotated"


class KeyState(Enum):
    """The state as seen at a moment."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ROTATED = "rotated"


@dataclass(frozen=True)
class KeyRecord:
    """One credential's stored record. ``digest`` is the peppered HMAC, never the secret."""

    key_id: str
    workspace_id: str
    kind: KeyKind
    display_name: str
    scopes: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    digest: bytes = field(repr=False)
    pepper_id: str
    hint: str
    create_time: datetime
    stored_state: StoredState = StoredState.ACTIVE
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    revoke_reason: str = ""
    rotated_to: str = ""
    rotated_from: str = ""
    grace_expire_time: datetime | None = None
    request_id: str = ""
    request_fingerprint: str = ""
    created_by: str = ""
    last_used_time: datetime | None = None
    use_count: int = 0
    last_caller: str = ""

    def state_at(self, now: datetime) -> KeyState:
        if self.stored_state is StoredState.REVOKED:
            return KeyState.REVOKED
        if self.stored_state is StoredState.ROTATED:
            return KeyState.ROTATED
        if self.expire_time is not None and now >= self.expire_time:
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    def valid_until(self) -> datetime | None:
        """When the credential stops authenticating (for a rotated key: its grace end)."""
        if self.stored_state is StoredState.ROTATED:
            return self.grace_expire_time
        return self.expire_time


@dataclass(frozen=True)
class AuditEvent:
    """One audit row: who did what to which key, and how it ended. Never a secret."""

    action: str
    actor: str
    outcome: str
    key_id: str = ""
    workspace_id: str = ""
    request_id: str = ""
    detail: str = ""
    time: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class UsageDelta:
    """Usage of one key accumulated in memory since the last flush."""

    key_id: str
    count: int
    last_used_time: datetime
    last_caller: str
