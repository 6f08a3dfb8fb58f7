"""Failed authentications, counted in memory and written as aggregated audit rows.

An attacker controls how many failed authentications there are, so they are never written one
row each. :class:`FailureCounter` counts them in memory per (RPC, key id, reason) and a background
thread writes one aggregated ``auth.failures`` audit row per combination and flush interval.
Failures that name no existing key (malformed or unknown credentials) all share the key id ``""``,
and at most ``max_keys`` distinct combinations are kept per interval (the rest are added to one
overflow row), so a flood of made-up credentials costs a bounded number of rows per interval,
whatever its rate.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.ports import AuditStore
from auth_service.sync.flush import PeriodicFlush


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class FailureCounter(PeriodicFlush):
    """Failed authentications counted in memory, written as aggregated audit rows."""

    what = "failed-authentication counts"
    thread_name = "woes-auth-failures"

    def __init__(self, store: AuditStore, interval: float = 60.0, max_keys: int = 1000):
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
