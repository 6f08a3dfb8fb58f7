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

from auth_service.domain.errors import StoreUnavailable
from auth_service.domain.keys.records import UsageDelta
from auth_service.store import CredentialStore

log = logging.getLogger(__name__)


class PeriodicFlush:
    """A tally in memory written by a background thread every ``interval`` seconds and once more
    at :meth:`stop`. Subclasses implement :meth:`flush` (which merges its batch back on failure)
    and :meth:`pending`; a store outage postpones the write, it never loses the tally."""

    what = "batch"  # for log lines: what is being written
    thread_name = "woes-auth-flush"

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self) -> int:
        raise NotImplementedError

    def pending(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.flush()
        except StoreUnavailable:
            log.error("%s of %d entries could not be written at shutdown: store unavailable", self.what, self.pending())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except StoreUnavailable:
                log.warning("%s flush postponed: the credential store is unavailable", self.what)
            except Exception:
                log.exception("%s flush failed", self.what)


class UsageRecorder(PeriodicFlush):
    what = "usage"
    thread_name = "woes-auth-usage"

    def __init__(self, store: CredentialStore, interval: float = 5.0):
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
