"""The storage driver interface. Storage knows nothing of protos or gRPC.

Every method raises :class:`auth_service.errors.StoreUnavailable` when the
database cannot be reached, and never anything that looks like an
authentication failure.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain.keys.records import AuditEvent, KeyRecord, UsageDelta
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


class CredentialStore(abc.ABC):
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
