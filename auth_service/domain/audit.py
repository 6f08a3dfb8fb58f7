"""The audit trail: listing it, and counting failed authentications.

Every state change writes its audit event in the same transaction as the
change (see the stores). Failed authentications are different: an attacker
controls how many there are, so they are never written one row each. The
:class:`FailureCounter` counts them in memory per (RPC, key id, reason) and a
background thread writes one aggregated ``auth.failures`` audit row per
combination and flush interval. Failures that name no existing key (malformed
or unknown credentials) all share the key id ``""``, and at most
``max_keys`` distinct combinations are kept per interval (the rest are added
to one overflow row), so a flood of made-up credentials costs a bounded
number of rows per interval, whatever its rate.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime

from auth_service.domain import tokens
from auth_service.domain.errors import Violations
from auth_service.domain.keys.manager import WORKSPACE_ID_RE
from auth_service.domain.keys.records import AuditEvent
from auth_service.domain.records import StoredAuditEvent
from auth_service.store.model_tables import ModelStore
from auth_service.sync.usage import PeriodicFlush

log = logging.getLogger(__name__)

ACTION_RE = re.compile(r"[a-z_.]{1,32}")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class AuditLog:
    def __init__(self, store: ModelStore):
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


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


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


class FailureCounter(PeriodicFlush):
    """Failed authentications counted in memory, written as aggregated audit rows."""

    what = "failed-authentication counts"
    thread_name = "woes-auth-failures"

    def __init__(self, store: ModelStore, interval: float = 60.0, max_keys: int = 1000):
        super().__init__(interval)
        self.store = store
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], list] = {}

    def record(self, method: str, reason: str, key_id: str = "", workspace_id: str = "") -> None:
        # Epoch seconds here (a flood records one failure per call), datetimes when written.
        now = time.time()
        if key_id and not tokens.is_key_id(key_id):
            key_id = ""
        with self._lock:
            k = (method, key_id, reason)
            entry = self._counts.get(k)
            if entry is None:
                if len(self._counts) >= self.max_keys:
                    k = (method, "", "OVERFLOW")
                    entry = self._counts.get(k)
                if entry is None:
                    self._counts[k] = [1, now, now, workspace_id]
                    return
            entry[0] += 1
            entry[2] = now

    def pending(self) -> int:
        return len(self._counts)

    def flush(self) -> int:
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return 0
        events = [
            AuditEvent(
                action="auth.failures",
                actor=f"caller:{method}",
                outcome=reason,
                key_id=key_id,
                workspace_id=workspace_id,
                detail=f"count={n} first={_iso(first)} last={_iso(last)}",
                time=datetime.fromtimestamp(last, UTC),
            )
            for (method, key_id, reason), (n, first, last, workspace_id) in counts.items()
        ]
        try:
            self.store.write_audit_many(events)
        except Exception:
            with self._lock:
                for k, (n, first, last, ws) in counts.items():
                    entry = self._counts.get(k)
                    if entry is None:
                        self._counts[k] = [n, first, last, ws]
                    else:
                        entry[0] += n
                        entry[1] = min(entry[1], first)
            raise
        return len(events)
