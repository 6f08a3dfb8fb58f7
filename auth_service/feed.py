"""Following the store's change feed so that every process forgets changed keys.

Each process polls ``key_changes`` for sequence numbers above the last one it
saw, every ``interval`` seconds, and drops those keys from its cache. A
revocation made through any process is therefore refused by every process
within ``interval`` plus one query's time.

Sequence numbers are allocated when a transaction inserts and become visible
when it commits, so on a database with concurrent writers a higher number can
be seen before a lower one. Numbers skipped over are kept as *gaps* and asked
for again on every poll for ``gap_timeout`` seconds (a rolled-back
transaction leaves a gap that never fills).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import StoreUnavailable
from .store import CredentialStore

log = logging.getLogger(__name__)


class ChangeFeedFollower:
    def __init__(
        self,
        store: CredentialStore,
        on_change: Callable[[str, str], None],
        interval: float = 0.25,
        gap_timeout: float = 10.0,
    ):
        self._store = store
        self._on_change = on_change
        self.interval = interval
        self.gap_timeout = gap_timeout
        self._last_seq = 0
        self._gaps: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_success = time.monotonic()
        self.healthy = True
        self.polls = 0

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def start(self) -> None:
        """Start from the feed's current end (the cache is empty, so history is not needed)."""
        self._last_seq = self._store.latest_change()
        self.last_success = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="woes-auth-change-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def staleness(self) -> float:
        """Seconds since the feed was last read successfully."""
        return time.monotonic() - self.last_success

    def poll_once(self) -> int:
        """Read and apply new changes; returns how many were applied."""
        now = time.monotonic()
        for seq, first_seen in list(self._gaps.items()):
            if now - first_seen > self.gap_timeout:
                del self._gaps[seq]
        applied = 0
        while True:
            batch = self._store.changes_since(self._last_seq, tuple(sorted(self._gaps)))
            for change in batch:
                self._on_change(change.key_id, change.change)
                applied += 1
                if change.seq in self._gaps:
                    del self._gaps[change.seq]
                elif change.seq > self._last_seq:
                    for missing in range(self._last_seq + 1, change.seq):
                        self._gaps.setdefault(missing, now)
                    self._last_seq = change.seq
            if len(batch) < 1000:
                break
        self.last_success = time.monotonic()
        self.polls += 1
        return applied

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
                if not self.healthy:
                    log.warning("change feed readable again")
                    self.healthy = True
            except StoreUnavailable:
                if self.healthy:
                    log.warning("change feed unreadable: the credential store is unavailable")
                    self.healthy = False
            except Exception:
                log.exception("change feed poll failed")
                self.healthy = False
