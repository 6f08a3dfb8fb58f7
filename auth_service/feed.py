"""Following the store's change feed so that every process forgets changed keys.

Each process polls ``key_changes`` for sequence numbers above the last one it
saw, every ``interval`` seconds, and drops those keys from its cache. A
revocation made through any process is therefore refused by every process
within ``interval`` plus one query's time.

Where the store can push changes (PostgreSQL LISTEN/NOTIFY, see
:mod:`auth_service.store.pg_listen`), a listener thread wakes the follower as
soon as a change commits, so the delay is one notification plus one query
(milliseconds); the polling goes on underneath as the fallback and safety net.

Sequence numbers are allocated when a transaction inserts and become visible
when it commits, so on a database with concurrent writers a higher number can
be seen before a lower one. Numbers skipped over are kept as *gaps* and asked
for again on every poll for ``gap_timeout`` seconds (a rolled-back
transaction leaves a gap that never fills).

Followers start at the feed's end and never need old entries, so every
``prune_every`` seconds a follower deletes those older than ``keep``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from .errors import StoreUnavailable
from .models import utcnow
from .store import CredentialStore

log = logging.getLogger(__name__)


class ChangeFeedFollower:
    def __init__(
        self,
        store: CredentialStore,
        on_change: Callable[[str, str], None],
        interval: float = 0.25,
        gap_timeout: float = 10.0,
        prune_every: float = 3600.0,
        keep: timedelta = timedelta(days=1),
    ):
        self._store = store
        self._on_change = on_change
        self.interval = interval
        self.gap_timeout = gap_timeout
        self._last_seq = 0
        self._gaps: dict[int, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener_thread: threading.Thread | None = None
        make_listener = getattr(store, "change_listener", None)
        self.listener = make_listener() if make_listener is not None else None
        self.prune_every = prune_every
        self.keep = keep
        self._last_prune = time.monotonic()
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
        if self.listener is not None:
            self._listener_thread = threading.Thread(
                target=self.listener.run, args=(self.wake, self._stop), name="woes-auth-change-listen", daemon=True
            )
            self._listener_thread.start()

    def wake(self) -> None:
        """Read the feed now instead of at the next poll (called on a change notification)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._listener_thread):
            if thread is not None:
                thread.join(timeout=5)

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

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < self.prune_every:
            return
        self._last_prune = time.monotonic()
        removed = self._store.prune_changes(utcnow() - self.keep)
        if removed:
            log.info("change feed: pruned %d entries older than %s", removed, self.keep)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.poll_once()
                self._maybe_prune()
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
