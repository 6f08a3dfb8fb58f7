"""Usage metadata gathered in memory and written to the store in batches.

Authenticate never writes to the store: it adds to an in-memory tally, and a
background thread flushes the tally every ``interval`` seconds in one
transaction (and once more at shutdown). If the store is unavailable the tally
is kept and merged into the next flush, so nothing is lost to an outage.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime

from auth_service.domain.keys.records import UsageDelta
from auth_service.domain.ports import KeyStore
from auth_service.sync.flush import PeriodicFlush

log = logging.getLogger(__name__)


class UsageRecorder(PeriodicFlush):
    what = "usage"
    thread_name = "woes-auth-usage"

    def __init__(self, store: KeyStore, interval: float = 5.0):
        super().__init__(interval)
        self._store = store
        self._lock = threading.Lock()
        self._tally: dict[str, list] = {}
        # Calls land here first: a deque's append is thread-safe without a lock (documented), so a
        # call pays one append; the tally is built from it when the flush (or pending) drains it.
        self._calls: deque[tuple[str, str, float]] = deque()
        self.fold_at = 65_536  # calls recorded before the recording thread folds them itself

    def record(self, key_id: str, caller: str, now: float) -> None:
        calls = self._calls
        calls.append((key_id, caller, now))
        if len(calls) >= self.fold_at:
            self.fold()

    @property
    def calls(self) -> deque[tuple[str, str, float]]:
        """Where :meth:`record` appends ``(key_id, caller, now)``: a hot path may append to it itself
        (no Python call), and then calls :meth:`fold` once it holds :attr:`fold_at` calls or more."""
        return self._calls

    def fold(self) -> None:
        """Fold the recorded calls into the tally now (bounded between flushes however long the
        interval: the tally holds one entry per key)."""
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        """Fold the recorded calls into the tally; the caller holds ``self._lock``."""
        calls, tally = self._calls, self._tally
        popleft = calls.popleft
        for _ in range(len(calls)):
            key_id, caller, now = popleft()
            entry = tally.get(key_id)
            if entry is None:
                tally[key_id] = [1, now, caller]
            else:
                entry[0] += 1
                if now > entry[1]:  # threads may record out of clock order
                    entry[1] = now
                if caller:
                    entry[2] = caller

    def pending(self) -> int:
        with self._lock:
            self._drain()
            return len(self._tally)

    def flush(self) -> int:
        """Write the tally; on failure it is merged back. Returns keys written."""
        with self._lock:
            self._drain()
            tally, self._tally = self._tally, {}
        if not tally:
            return 0
        deltas = [UsageDelta(k, n, datetime.fromtimestamp(t, UTC), c) for k, (n, t, c) in tally.items()]
        try:
            self._store.record_usage(deltas)
        except Exception:
            with self._lock:
                for key_id, (n, t, c) in tally.items():
                    entry = self._tally.get(key_id)
                    if entry is None:
                        self._tally[key_id] = [n, t, c]
                    else:
                        entry[0] += n
                        entry[1] = max(entry[1], t)
                        entry[2] = entry[2] or c
            raise
        return len(deltas)
