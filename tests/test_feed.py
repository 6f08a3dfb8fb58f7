"""ChangeFeedFollower: applying changes, tracking sequence gaps, staleness, outages."""

from __future__ import annotations

import time

import pytest

from auth_service import feed as feed_mod
from auth_service.errors import StoreUnavailable
from auth_service.feed import ChangeFeedFollower
from auth_service.store import Change


class FeedStore:
    """Just the change-feed methods of a store, over a list whose commits the test controls.

    ``visible`` holds the committed changes; a sequence number can be allocated
    (by a transaction still running) long before it becomes visible.
    """

    def __init__(self):
        self.visible: dict[int, Change] = {}
        self.calls: list[tuple[int, tuple[int, ...]]] = []
        self.down = False
        self.limit = 1000

    def commit(self, seq: int, key_id: str, change: str = "revoked") -> None:
        self.visible[seq] = Change(seq, key_id, change)

    def latest_change(self) -> int:
        if self.down:
            raise StoreUnavailable()
        return max(self.visible, default=0)

    def changes_since(self, seq: int, also: tuple[int, ...] = (), limit: int = 1000) -> list[Change]:
        if self.down:
            raise StoreUnavailable()
        self.calls.append((seq, tuple(also)))
        wanted = sorted(s for s in self.visible if s > seq or s in also)
        return [self.visible[s] for s in wanted[: min(limit, self.limit)]]


class Clock:
    def __init__(self):
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(feed_mod, "time", c)
    return c


def follower(store, applied, **kw) -> ChangeFeedFollower:
    return ChangeFeedFollower(store, lambda key_id, change: applied.append((key_id, change)), **kw)


def test_applies_changes_in_order_and_advances(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.commit(1, "a", "issued")
    store.commit(2, "b", "revoked")
    assert f.poll_once() == 2
    assert applied == [("a", "issued"), ("b", "revoked")]
    assert f.last_seq == 2
    assert f.poll_once() == 0
    assert store.calls[-1] == (2, ())
    store.commit(3, "a", "rotated")
    assert f.poll_once() == 1
    assert applied[-1] == ("a", "rotated")
    assert f.last_seq == 3


def test_a_late_commit_below_the_high_water_mark_is_not_missed(clock):
    """Sequence 2 is allocated before 3 but commits after it: it must still be applied."""
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()
    assert applied == [("a", "revoked"), ("c", "revoked")]
    assert f.last_seq == 3
    assert store.calls[-1] == (0, ())
    f.poll_once()
    assert store.calls[-1] == (3, (2,))  # the gap is asked for again
    store.commit(2, "b")
    assert f.poll_once() == 1
    assert applied[-1] == ("b", "revoked")
    f.poll_once()
    assert store.calls[-1] == (3, ())  # gap filled: no longer asked for


def test_several_gaps(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.commit(2, "b")
    store.commit(6, "f")
    f.poll_once()
    f.poll_once()
    assert store.calls[-1] == (6, (1, 3, 4, 5))
    store.commit(4, "d")
    store.commit(7, "g")
    f.poll_once()
    assert applied[-2:] == [("d", "revoked"), ("g", "revoked")]
    f.poll_once()
    assert store.calls[-1] == (7, (1, 3, 5))


def test_gaps_are_given_up_after_the_timeout(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied, gap_timeout=10)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()  # gap 2 first seen now
    clock.now += 9
    f.poll_once()
    assert store.calls[-1] == (3, (2,))
    clock.now += 2  # a rolled-back transaction: 2 will never appear
    f.poll_once()
    assert store.calls[-1] == (3, ())


def test_start_begins_at_the_current_end(clock):
    store, applied = FeedStore(), []
    store.commit(1, "old")
    store.commit(2, "older")
    f = follower(store, applied, interval=3600)
    f.start()
    try:
        assert f.last_seq == 2
        store.commit(3, "new")
        f.poll_once()
        assert applied == [("new", "revoked")]
    finally:
        f.stop()


def test_a_full_batch_is_followed_by_another_read(clock):
    store, applied = FeedStore(), []
    store.limit = 1000
    f = follower(store, applied)
    for seq in range(1, 2501):
        store.commit(seq, f"k{seq}")
    assert f.poll_once() == 2500
    assert f.last_seq == 2500
    assert [c[0] for c in store.calls] == [0, 1000, 2000]
    assert len(applied) == 2500


def test_staleness_grows_while_the_store_is_down(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied)
    f.poll_once()
    assert f.staleness() == 0
    store.down = True
    clock.now += 30
    with pytest.raises(StoreUnavailable):
        f.poll_once()
    assert f.staleness() == 30
    clock.now += 45
    with pytest.raises(StoreUnavailable):
        f.poll_once()
    assert f.staleness() == 75
    store.down = False
    store.commit(1, "a")
    f.poll_once()
    assert f.staleness() == 0
    assert applied == [("a", "revoked")]


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_background_thread_marks_unhealthy_and_recovers():
    store, applied = FeedStore(), []
    f = follower(store, applied, interval=0.01)
    f.start()
    try:
        store.down = True
        assert _wait_for(lambda: not f.healthy)
        store.down = False
        store.commit(1, "x")
        assert _wait_for(lambda: f.healthy and applied)
        assert applied == [("x", "revoked")]
    finally:
        f.stop()


def test_feed_against_a_real_store(database_url):
    from datetime import timedelta

    from auth_service.models import AuditEvent, utcnow
    from auth_service.store import SqlStore
    from tests.test_store_sql import make_record

    store = SqlStore(database_url)
    try:
        applied = []
        f = follower(store, applied)
        f.start()
        f.stop()
        a = make_record()
        store.insert_key(a, AuditEvent("key.issue", "t", "ok"))
        store.rotate(a.key_id, make_record(), utcnow() + timedelta(hours=1), AuditEvent("key.rotate", "t", "ok"))
        store.revoke(a.key_id, "", utcnow(), AuditEvent("key.revoke", "t", "ok"))
        f.poll_once()
        assert [c for k, c in applied if k == a.key_id] == ["issued", "rotated", "revoked"]
        assert f.last_seq == store.latest_change()
    finally:
        store.close()
