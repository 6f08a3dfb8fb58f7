"""Counters that the serving threads bump without taking a lock.

Every call of ``Authenticate`` counts something (its outcome, a cache hit). A shared counter
needs a lock, and a lock taken on every call by every serving thread is a point where they
queue. Here each thread counts in a dict of its own, made on its first count and registered
once; a read sums the dicts of all threads. Only its owner writes a dict, so no count is
lost; a read that races a write sees the count just before or just after it. A thread's dict
outlives the thread (its counts stay counted): there is one per thread that ever counted, in a
serving process the gRPC pool's threads, which live as long as the process.
"""

from __future__ import annotations

import threading


class ThreadCounters:
    """Named integer counters, counted per thread, read as totals."""

    def __init__(self, *names: str):
        self._names = names
        self._local = threading.local()
        self._lock = threading.Lock()  # taken once per thread, to register its dict
        self._dicts: list[dict[str, int]] = []

    def _register(self) -> dict[str, int]:
        counts = dict.fromkeys(self._names, 0)
        with self._lock:
            self._dicts.append(counts)
        self._local.counts = counts
        return counts

    def add(self, name: str, n: int = 1) -> None:
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._register()
        counts[name] = counts.get(name, 0) + n

    def total(self, name: str) -> int:
        with self._lock:
            dicts = list(self._dicts)
        return sum(d.get(name, 0) for d in dicts)

    def snapshot(self) -> dict[str, int]:
        """Totals of every counter counted so far (the declared names always present)."""
        with self._lock:
            dicts = list(self._dicts)
        out = dict.fromkeys(self._names, 0)
        for counts in dicts:
            for name, value in dict(counts).items():  # a copy: its owner may add a name meanwhile
                out[name] = out.get(name, 0) + value
        return out
