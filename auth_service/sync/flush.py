"""A tally kept in memory and written to the store by a background thread."""

from __future__ import annotations

import logging
import threading

from auth_service.domain.errors import StoreUnavailable

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
