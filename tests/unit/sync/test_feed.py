"""ChangeFeedFollower: applying changes, tracking sequence gaps until the store settles them, staleness, outages."""

from __future__ import annotations

import time

import pytest

from auth_service.domain.errors import StoreUnavailable
from auth_service.domain.ports import Change
from auth_service.sync import feed as feed_mod
from auth_service.sync.feed import ChangeFeedFollower


class FeedStore:
    """Just the change-feed methods of a store, over changes and transactions the test controls.

    ``visible`` holds the committed changes; a sequence number can be drawn by a transaction
    (``begin``) long before it becomes visible (``commit``), or never (``rollback``). Transactions
    get increasing ids, as PostgreSQL's do; ``ordered`` makes a store whose changes become
    visible in the order of their numbers (SQLite).
    """

    def __init__(self, ordered: bool = False):
        self.visible: dict[int, Change] = {}
        self.calls: list[tuple[int, tuple[tuple[int, int], ...]]] = []
        self.down = False
        self.limit = 1000
        self.ordered = ordered
        self.running: dict[object, int] = {}  # sequence number (or any name) -> transaction id
        self.next_id = 1
        self.after_read = None

    def begin(self, name) -> None:
        self.running[name] = self.next_id
        self.next_id += 1

    def commit(self, seq: int, key_id: str, change: str = "revoked") -> None:
        self.running.pop(seq, None)
        self.visible[seq] = Change(seq, key_id, change)

    def end(self, name) -> None:
        del self.running[name]

    def latest_change(self) -> int:
        if self.down:
            raise StoreUnavailable()
        return max(self.visible, default=0)

    def changes_since(self, seq: int, also=(), limit: int = 1000) -> list[Change]:
        if self.down:
            raise StoreUnavailable()
        self.calls.append((seq, tuple(also)))
        wanted = sorted(s for s in self.visible if s > seq or any(lo <= s <= hi for lo, hi in also))
        got = [self.visible[s] for s in wanted[: min(limit, self.limit)]]
        if self.after_read is not None:
            self.after_read()
        return got

    def missing_changes(self, seq: int) -> list[tuple[int, int]]:
        if self.ordered:
            return []
        ranges: list[tuple[int, int]] = []
        for n in range(1, seq + 1):
            if n not in self.visible:
                if ranges and ranges[-1][1] == n - 1:
                    ranges[-1] = (ranges[-1][0], n)
                else:
                    ranges.append((n, n))
        return ranges

    def change_horizon(self, mark: bool = False) -> tuple[int, int | None] | None:
        if self.ordered:
            return None
        oldest = min(self.running.values(), default=self.next_id)
        if not mark:
            return oldest, None
        self.next_id += 1  # the mark is a transaction id of its own, ended at once
        return oldest, self.next_id - 1


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
    """Sequence 2 is drawn before 3 but commits after it: it must still be applied."""
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.begin(2)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()
    assert applied == [("a", "revoked"), ("c", "revoked")]
    assert f.last_seq == 3
    assert store.calls[-1] == (0, ())
    f.poll_once()
    assert store.calls[-1] == (3, ((2, 2),))  # the gap is asked for again
    store.commit(2, "b")
    assert f.poll_once() == 1
    assert applied[-1] == ("b", "revoked")
    f.poll_once()
    assert store.calls[-1] == (3, ())  # gap filled: no longer asked for


def test_several_gaps(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied)
    for seq in (1, 3, 4, 5):
        store.begin(seq)
    store.commit(2, "b")
    store.commit(6, "f")
    f.poll_once()
    f.poll_once()
    assert store.calls[-1] == (6, ((1, 1), (3, 5)))
    store.commit(4, "d")
    store.commit(7, "g")
    f.poll_once()
    assert applied[-2:] == [("d", "revoked"), ("g", "revoked")]
    f.poll_once()
    assert store.calls[-1] == (7, ((1, 1), (3, 3), (5, 5)))
    assert f.pending_gaps() == ((1, 1), (3, 3), (5, 5))


def test_a_gap_is_asked_for_as_long_as_its_transaction_runs(clock, caplog):
    """However long a revoke's transaction stays open, its change is applied when it commits."""
    store, applied = FeedStore(), []
    f = follower(store, applied, gap_timeout=10)
    store.begin(2)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()
    for _ in range(5):
        clock.now += 3600
        f.poll_once()
        assert store.calls[-1] == (3, ((2, 2),))
    reports = [r for r in caplog.records if "not committed after" in r.getMessage()]
    assert len(reports) == 1  # reported once, not on every poll
    store.commit(2, "b")
    assert f.poll_once() == 1
    assert applied[-1] == ("b", "revoked")
    assert f.pending_gaps() == ()


def test_a_rolled_back_gap_is_given_up_after_one_more_read(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.begin(2)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()  # gap 2 seen; its transaction runs
    store.end(2)  # rolled back: 2 never appears
    f.poll_once()  # read (2 still asked for), then the store shows its transaction ended
    assert store.calls[-1] == (3, ((2, 2),))
    f.poll_once()  # one more read after that: still absent, so never committed
    assert store.calls[-1] == (3, ((2, 2),))
    f.poll_once()
    assert store.calls[-1] == (3, ())


def test_a_gap_waits_for_every_transaction_older_than_it(clock):
    """An unrelated transaction that began before the gap was seen may be the one holding it."""
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.begin("long")
    store.begin(2)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()
    store.end(2)
    for _ in range(3):
        f.poll_once()
        assert store.calls[-1] == (3, ((2, 2),))
    store.begin("later")  # a transaction that began after the gap was seen does not hold it
    store.end("long")
    f.poll_once()
    f.poll_once()
    assert f.pending_gaps() == ()


def test_a_commit_between_a_read_and_the_horizon_is_read_next_time(clock):
    """The transaction commits after a read missed its row but before the store's horizon shows it
    ended: the gap is given up only after a read made after that, which finds the row."""
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.begin(2)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()
    store.after_read = lambda: store.commit(2, "b")
    f.poll_once()
    store.after_read = None
    assert ("b", "revoked") not in applied
    f.poll_once()
    assert applied[-1] == ("b", "revoked")
    assert f.pending_gaps() == ()


def test_an_ordered_store_gives_gaps_up_at_once(clock):
    """On SQLite a number missing below a visible one is a deleted row, never a late commit."""
    store, applied = FeedStore(ordered=True), []
    f = follower(store, applied)
    store.commit(1, "a")
    store.commit(3, "c")
    f.poll_once()
    assert f.pending_gaps() == ()
    f.poll_once()
    assert store.calls[-1] == (3, ())


def test_a_jump_in_the_sequence_is_one_gap(clock):
    store, applied = FeedStore(), []
    f = follower(store, applied)
    store.begin(2)
    store.commit(1, "a")
    store.commit(10**9, "far")
    f.poll_once()
    assert f.pending_gaps() == ((2, 10**9 - 1),)
    store.commit(2, "b")
    f.poll_once()
    assert applied[-1] == ("b", "revoked")
    assert f.pending_gaps() == ((3, 10**9 - 1),)


def test_start_keeps_the_missing_numbers_below_the_end_as_gaps(clock):
    """A transaction that drew its number before the start may commit after it."""
    store, applied = FeedStore(), []
    store.begin(2)
    store.commit(1, "old")
    store.commit(3, "newer")
    f = follower(store, applied, interval=3600)
    f.start()
    try:
        assert f.last_seq == 3
        assert f.pending_gaps() == ((2, 2),)
        store.commit(2, "late")
        f.poll_once()
        assert applied == [("late", "revoked")]
        assert f.pending_gaps() == ()
    finally:
        f.stop()


def test_start_begins_at_the_current_end(clock):
    store, applied = FeedStore(), []
    store.commit(1, "old")
    store.commit(2, "older")
    f = follower(store, applied, interval=3600)
    f.start()
    try:
        assert f.last_seq == 2
        assert f.pending_gaps() == ()
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

    from auth_service.domain.audit import AuditEvent
    from auth_service.domain.clock import utcnow
    from auth_service.store import SqlStore
    from tests.support.keys import make_record

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
