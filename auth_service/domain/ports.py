"""The ports of the domain: one storage interface per aggregate, and what the rules need of the caches.

Storage knows nothing of protos or gRPC, and the domain knows nothing of SQL: the drivers in
:mod:`auth_service.store` implement these interfaces. Every storage method raises
:class:`auth_service.domain.errors.StoreUnavailable` when the database cannot be reached, and never
anything that looks like an authentication failure. A method that changes state writes its audit
event in the same transaction as the change.

* :class:`KeyStore`: keys, their change feed, their usage counters and their audit rows.
* :class:`AuditStore`: the audit trail as listed, and batches of audit rows.
* :class:`ConversationStore`: conversation-history signing keys and per-conversation revocations.
* :class:`TestCredentialStore`: sealed API test credentials.
* :class:`KekStore`: the primary key-encryption key the deployment agreed on, and passphrase salts.
* :class:`ExposureStore`: exposed server keys and the workspace settings that act on them.
* :class:`KeyCache`, :class:`GrantMemo`, :class:`UsageSink`, :class:`FeedClock`: the in-process
  state the verification rules read and feed (implemented in :mod:`auth_service.cache` and
  :mod:`auth_service.sync`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections import deque

    from auth_service.domain.audit import AuditEvent, StoredAuditEvent
    from auth_service.domain.conversations import SigningKey
    from auth_service.domain.envelope import Sealed
    from auth_service.domain.exposure import Exposure, WorkspaceSettings
    from auth_service.domain.keys.records import CachedKey, KeyRecord, KnownRecord, UsageDelta
    from auth_service.domain.test_credentials import TestCredentialRecord
    from auth_service.domain.tokens import KeyKind


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: something about ``key_id`` changed."""

    seq: int
    key_id: str
    change: str


class RequestIdTaken(Exception):
    """``insert_key`` found a key created earlier under the same ``request_id``."""

    def __init__(self, existing: KeyRecord):
        super().__init__("request id already used")
        self.existing = existing


class RotateConflict(Exception):
    """The key was not active when ``rotate`` tried to replace it."""

    def __init__(self, current: KeyRecord):
        super().__init__("key not active")
        self.current = current


class KeyStore(abc.ABC):
    """Keys, their change feed, their usage counters and their audit rows."""

    @abc.abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abc.abstractmethod
    def key_by_request_id(self, request_id: str) -> KeyRecord | None:
        """The key an ``IssueKey`` with this ``request_id`` created, if any."""

    @abc.abstractmethod
    def insert_key(self, record: KeyRecord, audit: AuditEvent) -> KeyRecord:
        """Insert a new key with its audit event and a change-feed entry, in one transaction.

        Raises :class:`RequestIdTaken` if ``record.request_id`` was used before.
        """

    @abc.abstractmethod
    def rotate(
        self, key_id: str, new: KeyRecord, grace_expire_time: datetime, audit: AuditEvent
    ) -> tuple[KeyRecord, KeyRecord]:
        """Mark ``key_id`` rotated to ``new`` and insert ``new``, in one transaction.

        Of concurrent rotations of one key exactly one wins; the others raise
        :class:`RotateConflict`. Returns ``(old, new)`` as stored. ``None`` for
        a missing key is reported as ``LookupError``.
        """

    @abc.abstractmethod
    def revoke(self, key_id: str, reason: str, now: datetime, audit: AuditEvent) -> tuple[KeyRecord, bool]:
        """Revoke ``key_id`` (idempotent). Returns the record and whether this call changed it.

        Raises ``LookupError`` if there is no such key.
        """

    @abc.abstractmethod
    def list_keys(
        self,
        workspace_id: str,
        limit: int,
        after: tuple[datetime, str] | None,
        kinds: tuple[KeyKind, ...] | None = None,
    ) -> list[KeyRecord]:
        """Keys newest first (create_time, key_id descending), strictly after the cursor; of
        ``workspace_id`` unless it is empty, and of ``kinds`` only unless it is ``None``."""

    @abc.abstractmethod
    def latest_change(self) -> int:
        """The highest sequence number of the change feed (0 if empty)."""

    @abc.abstractmethod
    def changes_since(self, seq: int, also: tuple[tuple[int, int], ...] = (), limit: int = 1000) -> list[Change]:
        """Changes with a sequence number above ``seq`` or within one of the inclusive ranges
        ``also``, in sequence order, at most ``limit``."""

    @abc.abstractmethod
    def missing_changes(self, seq: int) -> list[tuple[int, int]]:
        """Inclusive ranges of sequence numbers up to ``seq`` that no visible change has, where a
        transaction still running may yet commit one (none where changes become visible in the
        order of their numbers)."""

    @abc.abstractmethod
    def change_horizon(self, mark: bool = False) -> tuple[int, int | None] | None:
        """Where the writers of the change feed stand, on one monotonic counter of write
        transactions: ``(oldest, upcoming)``. ``oldest``: no write transaction below it is still
        running. ``upcoming`` (only with ``mark``, else ``None``): every transaction that had drawn
        a sequence number by now is below it. So the numbers missing when a read was made are
        settled once a later ``oldest`` reaches an ``upcoming`` taken after that read: a read made
        after that shows each of them that was committed. ``None`` where changes become visible in
        the order of their numbers (serialised writers): a number missing below a visible one
        never appears."""

    @abc.abstractmethod
    def record_usage(self, deltas: list[UsageDelta]) -> None:
        """Add a batch of usage to the keys' counters in one transaction."""

    @abc.abstractmethod
    def prune_changes(self, older_than: datetime) -> int: ...

    @abc.abstractmethod
    def write_audit(self, event: AuditEvent) -> None: ...

    @abc.abstractmethod
    def list_audit(self, key_id: str = "", limit: int = 100) -> list[AuditEvent]: ...

    def change_listener(self):
        """An object whose ``run(wake, stop)`` calls ``wake()`` soon after any change is committed
        (PostgreSQL LISTEN/NOTIFY), or ``None`` where the store cannot push changes: followers
        then rely on polling alone."""
        return None

    @property
    @abc.abstractmethod
    def query_count(self) -> int:
        """Statements sent to the database by this process (for the benchmark and tests)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class NameTaken(Exception):
    """A concurrent put created a test credential with the same name first."""


class PrimaryKekMoved(Exception):
    """A wrapped key was about to be written under a key that is not the agreed primary."""

    def __init__(self, primary: str):
        super().__init__(f"the primary key-encryption key is now {primary!r}")
        self.primary = primary


class AuditStore(abc.ABC):
    """The audit trail as listed (``ListAuditEvents``) and batches of audit rows."""

    @abc.abstractmethod
    def write_audit_many(self, events: list[AuditEvent]) -> None:
        """Write ``events`` in one transaction (nothing for an empty list)."""

    @abc.abstractmethod
    def list_audit_events(
        self,
        *,
        workspace_id: str = "",
        key_id: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredAuditEvent]:
        """Events newest first (id descending), filtered by every non-empty argument, with an id below
        ``before_id`` (the paging cursor), at most ``limit``; ``end`` is exclusive."""


class ConversationStore(abc.ABC):
    """Conversation-history signing keys (one current per workspace) and per-conversation revocations."""

    @abc.abstractmethod
    def current_signing_key(self, workspace_id: str) -> SigningKey | None:
        """The workspace's current (not retired) signing key, the newest if several."""

    @abc.abstractmethod
    def create_signing_key(self, key: SigningKey, audit: AuditEvent) -> SigningKey:
        """Insert the first signing key of a workspace with ``audit``, in one transaction, unless a
        current one appeared meanwhile: then return that one and write nothing."""

    @abc.abstractmethod
    def rotate_signing_keys(self, new: SigningKey, retire_time: datetime, audit: AuditEvent) -> int:
        """Retire every signing key of ``new``'s workspace at ``retire_time`` (never later than an
        earlier retirement) and make ``new`` current, in one transaction. Returns the keys retired."""

    @abc.abstractmethod
    def verification_lookup(
        self, key_id: str, workspace_id: str, conversation_id: str
    ) -> tuple[SigningKey | None, int]:
        """The signing key ``key_id`` (``None`` if unknown) and the conversation's revocation epoch
        (0 if never revoked): two primary-key reads."""

    @abc.abstractmethod
    def revoke_conversation(self, workspace_id: str, conversation_id: str, now: datetime, audit: AuditEvent) -> int:
        """Advance the conversation's epoch (invalidating every secret issued for it) with ``audit``, in
        one transaction; concurrent first revocations both count. Returns the new epoch."""


class TestCredentialStore(abc.ABC):
    """Sealed API test credentials, unique by (workspace, name).

    Every write of a wrapped key raises :class:`PrimaryKekMoved` unless it is sealed under the
    primary key-encryption key agreed in the store (:class:`KekStore`), checked in the write's own
    transaction, so that once the primary changed no record is written under another key."""

    __test__ = False  # not a pytest test class

    @abc.abstractmethod
    def get_test_credential(self, credential_id: str) -> TestCredentialRecord | None: ...

    @abc.abstractmethod
    def find_test_credential(self, workspace_id: str, name: str) -> TestCredentialRecord | None: ...

    @abc.abstractmethod
    def insert_test_credential(self, record: TestCredentialRecord, audit: AuditEvent) -> None:
        """Insert ``record`` with ``audit`` in one transaction; :class:`NameTaken` if its name is taken."""

    @abc.abstractmethod
    def replace_test_credential(self, record: TestCredentialRecord, audit: AuditEvent) -> bool:
        """Replace kind, URL and material of an existing record with ``audit``, in one transaction.
        ``False`` if it vanished meanwhile."""

    @abc.abstractmethod
    def list_test_credentials(
        self, workspace_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[TestCredentialRecord]:
        """The workspace's records newest first (create time, id descending), strictly after the cursor."""

    @abc.abstractmethod
    def delete_test_credential(self, credential_id: str, audit: AuditEvent) -> bool:
        """Erase the row (material included) with ``audit``; ``False`` if there was none."""

    @abc.abstractmethod
    def record_reveal(self, credential_id: str, now: datetime, audit: AuditEvent) -> None:
        """Count one reveal at ``now`` with its ``audit`` event, in one transaction."""

    @abc.abstractmethod
    def test_credentials_not_under(self, kek_id: str, limit: int) -> list[TestCredentialRecord]:
        """Records whose data key is wrapped by another key than ``kek_id``, by id, at most ``limit``."""

    @abc.abstractmethod
    def count_test_credentials_by_kek(self) -> dict[str, int]:
        """Records per wrapping key id."""

    @abc.abstractmethod
    def swap_wrapping(self, credential_id: str, old: Sealed, new: Sealed) -> bool:
        """Compare-and-set of one row's wrapped key: only if it still holds ``old``."""


class KekStore(abc.ABC):
    """The primary key-encryption key agreed by the whole deployment, and passphrase-derived keys' salts."""

    @abc.abstractmethod
    def primary_kek_id(self) -> str:
        """The agreed primary key id, or ``""`` when none is agreed yet."""

    @abc.abstractmethod
    def agree_primary_kek(self, kek_id: str) -> str:
        """Make ``kek_id`` the primary if none is agreed yet; returns the agreed primary either way."""

    @abc.abstractmethod
    def set_primary_kek(self, kek_id: str, actor: str) -> str:
        """Make ``kek_id`` the primary (audited); returns the previous one (``""`` if none). Waits for
        writes that checked the previous primary; later writes see ``kek_id``."""

    @abc.abstractmethod
    def kek_derivation(self, kek_id: str, new_salt: bytes, params: dict, now: datetime) -> tuple[bytes, dict]:
        """The stored salt and argon2id parameters of ``kek_id``, storing the given ones if none exist
        (concurrent first calls agree on one)."""


class ExposureStore(abc.ABC):
    """Server keys seen where only browser credentials belong, and the per-workspace settings."""

    @abc.abstractmethod
    def mark_exposed(self, key_id: str, workspace_id: str, where: str, now: datetime, audit: AuditEvent) -> bool:
        """Record an exposure (with ``audit`` when first recorded). ``True`` if this call recorded it first."""

    @abc.abstractmethod
    def set_auto_revoked(self, key_id: str) -> None: ...

    @abc.abstractmethod
    def get_exposure(self, key_id: str) -> Exposure | None: ...

    @abc.abstractmethod
    def get_workspace_settings(self, workspace_id: str) -> WorkspaceSettings:
        """The workspace's settings, the defaults when none were stored."""

    @abc.abstractmethod
    def put_workspace_settings(self, settings: WorkspaceSettings, audit: AuditEvent) -> WorkspaceSettings:
        """Store ``settings`` with ``audit``, in one transaction."""


# -- in-process state the verification rules use ---------------------------------------


class FeedClock(Protocol):
    """A followed change feed, as the rules see it: when it was last read successfully."""

    last_success: float  # time.monotonic()


class UsageSink(Protocol):
    """Where verified calls are tallied (flushed to the :class:`KeyStore` in batches)."""

    fold_at: int

    def record(self, key_id: str, caller: str, now: float) -> None: ...

    @property
    def calls(self) -> deque[tuple[str, str, float]]: ...

    def fold(self) -> None: ...


class GrantMemo(Protocol):
    """Answers of the hot path by a keyed hash of the request's bytes (see :mod:`auth_service.cache.memo`)."""

    def hot_path(
        self,
    ) -> tuple[
        Callable[[], Any],
        Callable[[bytes], tuple[bytes, CachedKey, str] | None],
        Callable[[bytes], tuple[bytes, str] | None],
    ]: ...

    def remember(self, fingerprint: bytes, digest: bytes, entry: CachedKey, caller: str) -> None: ...

    def remember_refusal(self, fingerprint: bytes, digest: bytes, key_id: str) -> None: ...


class KeyCache(Protocol):
    """The verified and negative caches of credentials (see :mod:`auth_service.cache.verified`)."""

    ttl: float
    memo: GrantMemo

    def get(self, digest: bytes) -> CachedKey | None: ...

    def hot_path(self) -> tuple[Callable[[bytes], CachedKey | None], Callable[[bytes], None], Callable[[], None]]: ...

    def generation(self) -> int: ...

    def stamp(self) -> float: ...

    def put(self, digest: bytes, entry: CachedKey, generation: int) -> bool: ...

    def record_of(self, key_id: str, now: float | None = None) -> KnownRecord | None: ...

    def remember_record(self, known: KnownRecord, generation: int) -> bool: ...

    def is_known_unknown(self, key_id: str, digest: bytes) -> bool: ...

    def is_unknown_digest(self, digest: bytes, count_miss: bool = False, now: float | None = None) -> bool: ...

    def refuses_digest(self, digest: bytes) -> bool: ...

    def remember_unknown_key_id(self, key_id: str, generation: int, digest: bytes | None = None) -> None: ...

    def remember_wrong_secret(self, key_id: str, digest: bytes, generation: int) -> None: ...

    def count_miss(self) -> None: ...

    def count_negative_hit(self) -> None: ...

    def probe_refusal_counter(self) -> Callable[[], None]: ...

    def invalidate(self, key_id: str) -> None: ...
