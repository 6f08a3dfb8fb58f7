"""Following the store's change feed so that every process forgets changed keys.

Each process polls ``key_changes`` for sequence numbers above the last one it
saw, every ``interval`` seconds, and drops those keys from its cache. A
change made through any process is therefore applied by every process within
``interval`` plus one query's time of its commit.

Where the store can push changes (PostgreSQL LISTEN/NOTIFY, see
:mod:`auth_service.store.listen`), a listener thread wakes the follower as
soon as a change commits, so the delay is one notification plus one query
(milliseconds); the polling goes on underneath as the fallback and safety net.

Sequence numbers are allocated when a transaction inserts and become visible
when it commits, so on a database with concurrent writers (PostgreSQL) a
higher number can be seen before a lower one. Numbers skipped over are kept
as *gaps* and asked for again on every poll until the store shows that no
transaction can still commit them (:meth:`KeyStore.change_horizon`):
a gap is given up only once every write transaction that had begun when it
was first seen has ended and one more read still does not find it (a
rolled-back transaction leaves a gap that never fills). An unresolved gap is
therefore never a skipped change, however long its transaction stays open; a
gap open longer than ``gap_timeout`` seconds is reported once in the log. On
SQLite writers are serialised, numbers become visible in order, and a gap
(only ever left by deleted rows) is given up at once.

A follower starts at the feed's end (its cache is empty, so history is not
needed), keeping as gaps the numbers missing below it, which a transaction
still running may yet commit. Every ``prune_every`` seconds a follower deletes
entries older than ``keep``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from auth_service.domain.clock import utcnow
from auth_service.domain.errors import StoreUnavailable
from auth_service.domain.ports import KeyStore

log = logging.getLogger(__name__)

BATCH = 1000
"""Changes read per query; a full batch is followed by another read at once."""


@dataclass(slots=True)
class _Gap:
    """Sequence numbers ``lo`` to ``hi`` (inclusive), not seen although a higher one was."""

    lo: int
    hi: int
    first_seen: float  # monotonic
    # The store's horizon ``upcoming`` read after the gap was first seen: every transaction that
    # may hold one of its numbers is older. None until read.
    barrier: int | None = None
    # Every such transaction had ended when the horizon was read: a read after that settles it.
    ended: bool = False
    reported: bool = False


class ChangeFeedFollower:
    def __init__(
        self,
        store: KeyStore,
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
        self._gaps: list[_Gap] = []
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

    def pending_gaps(self) -> tuple[tuple[int, int], ...]:
        """The sequence numbers still asked for (a transaction may yet commit them), as inclusive ranges."""
        return tuple(sorted((gap.lo, gap.hi) for gap in self._gaps))

    def start(self) -> None:
        """Start from the feed's current end, the missing numbers below it kept as gaps."""
        self._last_seq = self._store.latest_change()
        now = time.monotonic()
        self._gaps = [_Gap(lo, hi, now) for lo, hi in self._store.missing_changes(self._last_seq)]
        if self._gaps:
            self._settle_gaps(now)
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
        applied = 0
        while True:
            also = tuple((gap.lo, gap.hi) for gap in self._gaps)
            batch = self._store.changes_since(self._last_seq, also, BATCH)
            for change in batch:
                self._on_change(change.key_id, change.change)
                applied += 1
                if change.seq > self._last_seq:
                    if change.seq > self._last_seq + 1:
                        self._gaps.append(_Gap(self._last_seq + 1, change.seq - 1, now))
                    self._last_seq = change.seq
                else:
                    self._fill(change.seq)
            if len(batch) < BATCH:
                break
        # A gap marked ended was so before this read (marks are made after reads): every
        # transaction that could fill it had ended, so what this read did not find never committed.
        self._gaps = [gap for gap in self._gaps if not gap.ended]
        if self._gaps:
            self._settle_gaps(now)
        self.last_success = time.monotonic()
        self.polls += 1
        return applied

    def _fill(self, seq: int) -> None:
        """``seq`` was seen: take it out of the gap that holds it."""
        for i, gap in enumerate(self._gaps):
            if gap.lo <= seq <= gap.hi:
                parts = []
                if gap.lo < seq:
                    parts.append(_Gap(gap.lo, seq - 1, gap.first_seen, gap.barrier, gap.ended, gap.reported))
                if seq < gap.hi:
                    parts.append(_Gap(seq + 1, gap.hi, gap.first_seen, gap.barrier, gap.ended, gap.reported))
                self._gaps[i : i + 1] = parts
                return

    def _settle_gaps(self, now: float) -> None:
        """Ask the store which gaps no running transaction can fill any more (after a read)."""
        horizon = self._store.change_horizon(mark=any(gap.barrier is None for gap in self._gaps))
        if horizon is None:
            # Numbers become visible in order: one missing below a visible one never appears.
            self._gaps = []
            return
        oldest, upcoming = horizon
        for gap in self._gaps:
            if gap.barrier is None:
                gap.barrier = upcoming
            if gap.barrier is not None and oldest >= gap.barrier:
                gap.ended = True
            elif not gap.reported and now - gap.first_seen > self.gap_timeout:
                gap.reported = True
                log.warning(
                    "change feed: sequence numbers %d to %d not committed after %.0f s (a write transaction "
                    "is open on the database); still asked for on every poll",
                    gap.lo,
                    gap.hi,
                    now - gap.first_seen,
                )

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
