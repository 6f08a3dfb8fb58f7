"""UsageRecorder: in-memory tallies written in batches, kept through outages, flushed at stop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from auth_service.domain.errors import StoreUnavailable
from auth_service.sync.usage import UsageRecorder


class UsageStore:
    """Just ``record_usage``: remembers every batch, or fails while ``down``."""

    def __init__(self):
        self.batches: list[list] = []
        self.down = False

    def record_usage(self, deltas):
        if self.down:
            raise StoreUnavailable()
        self.batches.append(list(deltas))


def by_key(batch) -> dict:
    return {d.key_id: d for d in batch}


def test_records_are_merged_per_key_and_written_in_one_batch():
    store = UsageStore()
    usage = UsageRecorder(store)
    usage.record("a", "svc-1", 1000.0)
    usage.record("a", "svc-2", 1001.5)
    usage.record("a", "", 1002.0)
    usage.record("b", "", 1000.0)
    assert usage.pending() == 2
    assert store.batches == []  # nothing is written per request
    assert usage.flush() == 2
    assert len(store.batches) == 1
    got = by_key(store.batches[0])
    assert got["a"].count == 3
    assert got["a"].last_used_time == datetime.fromtimestamp(1002.0, UTC)
    assert got["a"].last_caller == "svc-2"  # an empty caller does not erase the known one
    assert got["b"].count == 1 and got["b"].last_caller == ""
    assert usage.pending() == 0
    assert usage.flush() == 0
    assert len(store.batches) == 1  # an empty tally writes nothing


def test_last_used_never_moves_backwards_within_a_tally():
    store = UsageStore()
    usage = UsageRecorder(store)
    usage.record("a", "", 2000.0)
    usage.record("a", "", 1999.0)  # recorded later by a thread that read the clock earlier
    usage.flush()
    assert store.batches[0][0].last_used_time == datetime.fromtimestamp(2000.0, UTC)


def test_failed_flush_is_merged_back_into_the_next_one():
    store = UsageStore()
    usage = UsageRecorder(store)
    usage.record("a", "svc-1", 1000.0)
    usage.record("b", "", 1000.0)
    store.down = True
    with pytest.raises(StoreUnavailable):
        usage.flush()
    assert usage.pending() == 2
    usage.record("a", "", 1005.0)
    usage.record("c", "svc-3", 1006.0)
    with pytest.raises(StoreUnavailable):
        usage.flush()
    store.down = False
    assert usage.flush() == 3
    got = by_key(store.batches[0])
    assert got["a"].count == 2
    assert got["a"].last_used_time == datetime.fromtimestamp(1005.0, UTC)
    assert got["a"].last_caller == "svc-1"
    assert got["b"].count == 1
    assert got["c"].count == 1 and got["c"].last_caller == "svc-3"
    assert usage.pending() == 0


def test_stop_flushes_what_is_left():
    store = UsageStore()
    usage = UsageRecorder(store, interval=3600)
    usage.start()
    usage.record("a", "", 1.0)
    usage.record("a", "", 2.0)
    usage.stop()
    assert [(d.key_id, d.count) for d in store.batches[-1]] == [("a", 2)]
    assert usage.pending() == 0


def test_stop_with_the_store_down_keeps_the_tally_and_does_not_raise(caplog):
    store = UsageStore()
    usage = UsageRecorder(store, interval=3600)
    usage.start()
    usage.record("a", "", 1.0)
    store.down = True
    usage.stop()
    assert usage.pending() == 1
    assert "could not be written" in caplog.text


def test_background_thread_flushes_periodically():
    store = UsageStore()
    usage = UsageRecorder(store, interval=0.01)
    usage.start()
    try:
        usage.record("a", "", 1.0)
        done = threading.Event()
        for _ in range(500):
            if store.batches:
                done.set()
                break
            threading.Event().wait(0.02)
        assert done.is_set()
        assert store.batches[0][0].count == 1
    finally:
        usage.stop()


def test_concurrent_records_are_all_counted():
    store = UsageStore()
    usage = UsageRecorder(store)
    barrier = threading.Barrier(4)

    def work(n):
        barrier.wait()
        for i in range(2500):
            usage.record(f"k{i % 10}", f"c{n}", 1000.0 + i)
            if i % 500 == 0:
                usage.flush()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage.flush()
    total = sum(d.count for batch in store.batches for d in batch)
    assert total == 4 * 2500


def test_usage_against_a_real_store(database_url):
    from auth_service.store import SqlStore
    from tests.support.keys import audit, make_record

    store = SqlStore(database_url)
    try:
        record = make_record()
        store.insert_key(record, audit())
        usage = UsageRecorder(store)
        for t in (1000.0, 1003.0, 1001.0):
            usage.record(record.key_id, "svc", t)
        usage.flush()
        got = store.get_key(record.key_id)
        assert got.use_count == 3
        assert got.last_used_time == datetime.fromtimestamp(1003.0, UTC)
        assert got.last_caller == "svc"
    finally:
        store.close()


def test_recorded_calls_stay_bounded_between_flushes():
    store = UsageStore()
    usage = UsageRecorder(store, interval=3600)
    usage.fold_at = 1000
    for n in range(5000):
        usage.record(f"k{n % 3}", "svc", 1000.0 + n)
        assert len(usage._calls) < 1000
    assert usage.pending() == 3
    assert usage.flush() == 3
    assert sum(d.count for d in store.batches[0]) == 5000
