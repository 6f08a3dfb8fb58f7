"""The audit trail: what an audit row is, and listing it.

Every state change writes its audit event in the same transaction as the change (see the
ports, :mod:`auth_service.domain.ports`). Failed authentications are counted in memory and
written as aggregated rows instead (:mod:`auth_service.sync.failures`). An audit row never holds
a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from auth_service.domain import tokens
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import Violations
from auth_service.domain.validation import WORKSPACE_ID_RE

if TYPE_CHECKING:
    from auth_service.domain.ports import AuditStore


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


log = logging.getLogger(__name__)

ACTION_RE = re.compile(r"[a-z_.]{1,32}")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class AuditLog:
    def __init__(self, store: AuditStore):
        self.store = store

    def list(
        self,
        *,
        workspace_id: str = "",
        key_id: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[StoredAuditEvent], str]:
        """Events newest first, filtered; ``page_token`` continues a listing with the same filter."""
        v = Violations()
        if workspace_id and not WORKSPACE_ID_RE.fullmatch(workspace_id):
            v.add("workspace_id", "1 to 64 characters of A-Z a-z 0-9 _ -")
        if key_id and not tokens.is_key_id(key_id):
            v.add("key_id", f"{tokens.KEY_ID_LEN} characters of A-Z a-z 0-9")
        if action and not ACTION_RE.fullmatch(action):
            v.add("action", "an action name such as key.revoke")
        if start is not None and end is not None and end <= start:
            v.add("end_time", "must be after start_time")
        if page_size < 0:
            v.add("page_size", "must not be negative")
        filt = [workspace_id, key_id, action, start.isoformat() if start else "", end.isoformat() if end else ""]
        before = None
        if page_token:
            before = _decode(page_token, filt)
            if before is None:
                v.add("page_token", "not a page token of this listing")
        v.raise_if_any()
        size = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
        rows = self.store.list_audit_events(
            workspace_id=workspace_id,
            key_id=key_id,
            action=action,
            start=start,
            end=end,
            before_id=before,
            limit=size + 1,
        )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode(rows[-1].id, filt)
        return rows, token


def _encode(last_id: int, filt: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"f": filt, "i": last_id}).encode()).decode().rstrip("=")


def _decode(token: str, filt: list[str]) -> int | None:
    if len(token) > 1024:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if body["f"] != filt or not isinstance(body["i"], int):
            return None
        return body["i"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
