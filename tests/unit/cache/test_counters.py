"""auth_service.cache.counters: per-thread counters lose no count and read as totals."""

from __future__ import annotations

import threading

from auth_service.cache.counters import ThreadCounters
from auth_service.ops.stats import Outcomes


def test_counts_from_many_threads_add_up_exactly():
    counters = ThreadCounters("ok")
    start = threading.Barrier(8)

    def work(i: int) -> None:
        start.wait()
        for _ in range(20_000):
            counters.add("ok")
        counters.add(f"reason{i % 2}", 3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.total("ok") == 8 * 20_000
    assert counters.snapshot() == {"ok": 160_000, "reason0": 12, "reason1": 12}


def test_declared_names_read_as_zero_before_any_count():
    counters = ThreadCounters("hits", "misses")
    assert counters.snapshot() == {"hits": 0, "misses": 0}
    assert counters.total("hits") == 0
    assert counters.total("never") == 0


def test_counts_of_a_finished_thread_stay_counted():
    counters = ThreadCounters()
    t = threading.Thread(target=lambda: counters.add("x", 5))
    t.start()
    t.join()
    counters.add("x")
    assert counters.total("x") == 6


def test_a_read_while_threads_count_never_fails_and_never_goes_back():
    counters = ThreadCounters("ok")
    stop = threading.Event()

    def work(i: int) -> None:
        n = 0
        while not stop.is_set():
            counters.add("ok")
            counters.add(f"r{i}-{n % 50}")  # new names while the reader copies
            n += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        last = 0
        for _ in range(500):
            now = counters.snapshot()["ok"]
            assert now >= last
            last = now
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_outcomes_show_ok_always_and_reasons_once_seen():
    outcomes = Outcomes()
    assert outcomes.snapshot() == {"ok": 0}
    outcomes.ok()
    outcomes.refused("CREDENTIAL_UNKNOWN")
    outcomes.refused("CREDENTIAL_UNKNOWN")
    assert outcomes.snapshot() == {"ok": 1, "CREDENTIAL_UNKNOWN": 2}
