"""Domain records of conversation secrets, test credentials, exposure, settings and audit listing.

Plain values, independent of storage and transport. None holds a secret in a
form that could be used: signing keys are derived from the pepper and a stored
salt; test credential material is an AES-GCM envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from auth_service.domain.envelope import Sealed


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


@dataclass(frozen=True)
class TestCredentialRecord:
    """One stored API test credential: metadata plus the sealed material."""

    __test__ = False  # not a pytest test class

    credential_id: str
    workspace_id: str
    name: str
    kind: str
    target_base_url: str
    sealed: Sealed = field(repr=False)
    create_time: datetime
    update_time: datetime
    created_by: str = ""
    updated_by: str = ""
    reveal_count: int = 0
    last_reveal_time: datetime | None = None


@dataclass(frozen=True)
class Exposure:
    """A server key seen where only browser credentials belong."""

    key_id: str
    workspace_id: str
    first_time: datetime
    last_time: datetime
    where: str
    auto_revoked: bool = False


@dataclass(frozen=True)
class WorkspaceSettings:
    workspace_id: str
    auto_revoke_exposed: bool = False
    update_time: datetime | None = None
    updated_by: str = ""


@dataclass(frozen=True)
class StoredAuditEvent:
    """An audit row as listed, with its id (the paging cursor)."""

    id: int
    time: datetime
    actor: str
    action: str
    outcome: str
    key_id: str
    workspace_id: str
    request_id: str
    detail: str
