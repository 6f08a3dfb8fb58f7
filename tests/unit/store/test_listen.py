"""The change feed on PostgreSQL: LISTEN/NOTIFY wakes followers at once; polling remains the safety net."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from auth_service.app.services import credential_manager
from auth_service.store import SqlStore
from auth_service.sync.feed import ChangeFeedFollower
from tests.support.cluster import TcpProxy, wait_for, with_port


class Seen:
    def __init__(self):
        self.lock = threading.Lock()
        self.when: dict[str, float] = {}

    def __call__(self, key_id: str, _change: str) -> None:
        with self.lock:
            self.when.setdefault(key_id, time.monotonic())


def _follower(url: str, interval: float) -> tuple[SqlStore, ChangeFeedFollower, Seen]:
    store = SqlStore(url, create_schema=False)
    seen = Seen()
    return store, ChangeFeedFollower(store, seen, interval=interval), seen


def test_a_notification_wakes_the_follower_long_before_its_poll(postgres_url, pepper):
    writer = SqlStore(postgres_url)
    store, follower, seen = _follower(postgres_url, interval=60.0)  # polling alone would take a minute
    assert follower.listener is not None
    follower.start()
    try:
        wait_for(follower.listener.connected.is_set, 10, what="the listener to connect")
        delays = []
        for _ in range(5):
            started = time.monotonic()
            key_id = credential_manager(writer, pepper).bootstrap_admin("feed test").key.key_id
            wait_for(lambda k=key_id: k in seen.when, 10, what="the change to reach the follower")
            delays.append(seen.when[key_id] - started)
        assert max(delays) < 5.0, delays  # generous: a 60 s poll cannot explain any of these
        assert follower.listener.notifications >= 5
    finally:
        follower.stop()
        store.close()
        writer.close()


def test_the_listener_reconnects_after_the_connection_drops(postgres_url, pepper):
    writer = SqlStore(postgres_url)
    proxy = TcpProxy("127.0.0.1", make_url(postgres_url).port)
    store, follower, seen = _follower(with_port(postgres_url, proxy.port), interval=60.0)
    follower.start()
    try:
        wait_for(follower.listener.connected.is_set, 10, what="the listener to connect")
        proxy.cut()
        wait_for(lambda: not follower.listener.connected.is_set(), 10, what="the listener to notice the cut")
        key_during = credential_manager(writer, pepper).bootstrap_admin("made while cut").key.key_id
        proxy.restore()
        wait_for(lambda: follower.listener.connections >= 2, 15, what="the listener to reconnect")
        # On reconnection the follower reads what it missed...
        wait_for(lambda: key_during in seen.when, 10, what="the change made while disconnected")
        # ...and notifications flow again.
        key_after = credential_manager(writer, pepper).bootstrap_admin("made after").key.key_id
        wait_for(lambda: key_after in seen.when, 10, what="a change after reconnection")
    finally:
        follower.stop()
        store.close()
        writer.close()
        proxy.close()


def test_polling_alone_still_delivers_every_change(postgres_url, pepper):
    writer = SqlStore(postgres_url)
    store, follower, seen = _follower(postgres_url, interval=0.1)
    follower.listener = None  # as on a store without notifications
    follower.start()
    try:
        ids = [credential_manager(writer, pepper).bootstrap_admin(f"poll {n}").key.key_id for n in range(5)]
        wait_for(lambda: all(k in seen.when for k in ids), 10, what="polling to deliver the changes")
    finally:
        follower.stop()
        store.close()
        writer.close()


def test_a_rolled_back_change_notifies_nobody(postgres_url, pepper):
    """NOTIFY is part of the transaction: one that fails after it (here at its audit row) sends nothing."""
    from auth_service.domain.audit import AuditEvent
    from auth_service.domain.clock import utcnow
    from auth_service.domain.keys.rules import IssueSpec
    from auth_service.domain.tokens import KeyKind

    writer = SqlStore(postgres_url)
    store, follower, seen = _follower(postgres_url, interval=60.0)
    follower.start()
    try:
        wait_for(follower.listener.connected.is_set, 10, what="the listener to connect")
        manager = credential_manager(writer, pepper)
        first = manager.issue_key("admin:test", IssueSpec("ws", KeyKind.SERVER, scopes=("conversations:read",)))
        wait_for(lambda: first.key.key_id in seen.when, 10, what="the first issue")
        count = follower.listener.notifications
        spec = IssueSpec("ws", KeyKind.SERVER, scopes=("conversations:read",))
        record, _secret = manager.new_record(spec, utcnow(), "admin:test")
        too_long = AuditEvent(action="x" * 40, actor="admin:test", outcome="ok", key_id=record.key_id, time=utcnow())
        with pytest.raises(sa_exc.DataError):
            writer.insert_key(record, too_long)
        time.sleep(1.0)
        assert follower.listener.notifications == count
        assert writer.get_key(record.key_id) is None
        assert record.key_id not in seen.when
    finally:
        follower.stop()
        store.close()
        writer.close()


def _open_write_transaction(url: str):
    """A connection holding a write transaction (it has its id) open until closed."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    conn = engine.connect()
    conn.execute(text("SELECT pg_current_xact_id()"))
    return engine, conn


def test_a_rolled_back_changes_gap_is_given_up_once_every_older_transaction_ended(postgres_url, pepper):
    """A change rolled back after drawing its number leaves a gap that never fills: the follower
    keeps asking for it while any transaction that may hold it runs, and gives it up after."""
    from auth_service.domain.audit import AuditEvent
    from auth_service.domain.clock import utcnow
    from auth_service.domain.keys.rules import IssueSpec
    from auth_service.domain.tokens import KeyKind

    writer = SqlStore(postgres_url)
    store, follower, seen = _follower(postgres_url, interval=60.0)
    follower.listener = None  # polled by the test
    follower.start()
    engine, unrelated = _open_write_transaction(postgres_url)  # began before the gap is seen
    try:
        manager = credential_manager(writer, pepper)
        spec = IssueSpec("ws", KeyKind.SERVER, scopes=("conversations:read",))
        record, _secret = manager.new_record(spec, utcnow(), "admin:test")
        too_long = AuditEvent(action="x" * 40, actor="admin:test", outcome="ok", key_id=record.key_id, time=utcnow())
        with pytest.raises(sa_exc.DataError):
            writer.insert_key(record, too_long)  # its change drew a number, then rolled back
        after = manager.issue_key("admin:test", spec).key.key_id
        follower.poll_once()
        assert after in seen.when
        gap = follower.pending_gaps()
        assert len(gap) == 1 and gap[0][0] == gap[0][1] == follower.last_seq - 1
        for _ in range(3):
            follower.poll_once()
            assert follower.pending_gaps() == gap  # an older transaction still runs: it may hold it
        unrelated.close()
        follower.poll_once()
        follower.poll_once()
        assert follower.pending_gaps() == ()
        assert record.key_id not in seen.when
    finally:
        unrelated.close()
        engine.dispose()
        follower.stop()
        store.close()
        writer.close()


def test_missing_changes_and_the_horizon_on_postgresql(postgres_url, pepper):
    from sqlalchemy import text

    writer = SqlStore(postgres_url)
    try:
        first = credential_manager(writer, pepper).bootstrap_admin("first")
        assert writer.missing_changes(writer.latest_change()) == []
        engine, held = _open_write_transaction(postgres_url)
        try:
            held.execute(
                text("INSERT INTO key_changes (key_id, change, time_us) VALUES (:k, 'revoked', 0)"),
                {"k": first.key.key_id},
            )
            oldest, upcoming = writer.change_horizon(mark=True)
            assert oldest < upcoming  # the held transaction runs
            assert writer.change_horizon()[0] == oldest  # and holds the horizon back
            credential_manager(writer, pepper).bootstrap_admin("second")
            end = writer.latest_change()
            assert writer.missing_changes(end) == [(end - 1, end - 1)]
            held.commit()
        finally:
            held.close()
            engine.dispose()
        later_oldest, unmarked = writer.change_horizon()
        assert unmarked is None
        assert later_oldest >= upcoming  # every transaction running at the mark ended
        assert writer.missing_changes(writer.latest_change()) == []
    finally:
        writer.close()
