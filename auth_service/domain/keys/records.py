"""What a key is: its stored record, its state, and what a verified credential speaks for.

Plain values, independent of storage and transport. :class:`CachedKey` is what the caches keep of
a verified key and what every authentication rule decides from; :class:`Principal` is the answer."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from auth_service.domain.scopes import ALL_SCOPES, effective
from auth_service.domain.tokens import KeyKind


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
class UsageDelta:
    """Usage of one key accumulated in memory since the last flush."""

    key_id: str
    count: int
    last_used_time: datetime
    last_caller: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified credential speaks for."""

    key_id: str
    workspace_id: str
    kind: KeyKind
    scopes: tuple[str, ...]
    expire_time: datetime | None


@dataclass(frozen=True, slots=True)
class CachedKey:
    """What the hot path needs of a verified key; no secret, no digest."""

    key_id: str
    kind: KeyKind
    workspace_id: str
    stored_state: StoredState
    valid_until: float | None  # epoch seconds; for a rotated key the end of its grace
    effective_scopes: frozenset[str]
    allowed_origins: frozenset[str]
    principal: Principal
    cached_at: float  # monotonic
    # For the hot path, which grants a call from the cache alone with as few steps as it can:
    # until when (epoch seconds) the entry may grant Authenticate at all (0 for a revoked key or
    # a key of another kind), and which requested scopes it grants (its effective scopes that are
    # also registered, so that within them means known too).
    grants_until: float = 0.0
    grantable: frozenset[str] = frozenset()
    # What the transport answers a grant of this entry with, prepared once when the entry is made
    # (``answer_of(principal)``; opaque here): held by the entry, it lives and goes with it.
    answer: object = None

    @classmethod
    def from_record(
        cls, record: KeyRecord, now_monotonic: float, answer_of: Callable[[Principal], object] | None = None
    ) -> CachedKey:
        until = record.valid_until()
        workspace_id = shared(record.workspace_id)
        scopes = shared(tuple(record.scopes))
        valid_until = until.timestamp() if until is not None else None
        grants = record.kind is KeyKind.SERVER and record.stored_state is not StoredState.REVOKED
        effective_scopes = shared(("effective", scopes), lambda: effective(scopes))
        principal = Principal(record.key_id, workspace_id, record.kind, scopes, until)
        return cls(
            key_id=record.key_id,
            kind=record.kind,
            workspace_id=workspace_id,
            stored_state=record.stored_state,
            valid_until=valid_until,
            effective_scopes=effective_scopes,
            allowed_origins=shared(
                ("origins", tuple(record.allowed_origins)), lambda: frozenset(record.allowed_origins)
            ),
            principal=principal,
            cached_at=now_monotonic,
            grants_until=(math.inf if valid_until is None else valid_until) if grants else 0.0,
            grantable=shared(("grantable", scopes), lambda: effective_scopes & ALL_SCOPES),
            answer=answer_of(principal) if answer_of is not None and grants else None,
        )


@dataclass(frozen=True, slots=True)
class KnownRecord:
    """What the store said of a key id, enough to check any credential naming it without the store:
    its kind, the pepper its digest is under (``None``: the primary pepper, and ``digest`` is the
    digest of the credential that verified), the digest, and the entry a match is granted from."""

    kind: KeyKind
    pepper_id: str | None
    digest: bytes
    entry: CachedKey


# Many keys share a workspace, a scope set, an origin list: keep one copy of
# each immutable value instead of one per cached key (a third of the memory of
# a large cache). Bounded: when full it starts again (values are immutable, so
# a forgotten one merely stops being shared).
_SHARED_MAX = 50_000


_shared_values: dict = {}


def shared(key, make=None):
    """``key`` itself (or ``make()``) the first time, the same object every later time: one copy of
    each immutable value many records share (workspaces, scope sets, callers)."""
    value = _shared_values.get(key)
    if value is None:
        value = key if make is None else make()
        if len(_shared_values) >= _SHARED_MAX:
            _shared_values.clear()
        _shared_values[key] = value
    return value
