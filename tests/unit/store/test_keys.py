"""SqlStore on SQLite and PostgreSQL: records, times, transactions, change feed, usage, outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import exc as sa_exc

from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import StoreUnavailable
from auth_service.domain.keys.records import KeyRecord, StoredState, UsageDelta
from auth_service.domain.ports import RequestIdTaken, RotateConflict
from auth_service.domain.tokens import KeyKind
from auth_service.store import SqlStore
from tests.conftest import free_port
from tests.support.keys import audit, make_record


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


# -- records ------------------------------------------------------------------------------


def test_roundtrip_of_every_field(store):
    record = KeyRecord(
        key_id=tokens.new_key_id(),
        workspace_id="ws_Every-field",
        kind=KeyKind.WIDGET,
        display_name="Zürich – 東京 ✓ 'quoted' \"double\"",
        scopes=("conversations:read", "messages:write"),
        allowed_origins=("http://localhost:3000", "https://app.example.com"),
        digest=bytes([0, 255, 1, 254]) * 8,
        pepper_id="pepper.v-2_a",
        hint="woes_pk_AAAAAAAAAAAA_...wxyz",
        create_time=T0,
        stored_state=StoredState.REVOKED,
        expire_time=T0 + timedelta(days=30, microseconds=1),
        revoke_time=T0 + timedelta(seconds=5, microseconds=999_999),
        revoke_reason="leaked in a 'ticket'",
        rotated_to=tokens.new_key_id(),
        rotated_from=tokens.new_key_id(),
        grace_expire_time=T0 + timedelta(hours=24, microseconds=7),
        request_id="req:1.a-b_c",
        request_fingerprint="f" * 64,
        created_by="admin:AAAAAAAAAAAA",
        last_used_time=T0 + timedelta(minutes=1, microseconds=3),
        use_count=2**40,
        last_caller="svc-billing",
    )
    assert store.insert_key(record, audit(key_id=record.key_id)) == record
    got = store.get_key(record.key_id)
    assert got == record
    assert got.digest == record.digest  # not part of repr, but compared and kept exactly
    assert isinstance(got.digest, bytes)
    assert got.kind is KeyKind.WIDGET and got.stored_state is StoredState.REVOKED


def test_roundtrip_of_a_minimal_record(store):
    record = make_record(scopes=(), display_name="", hint="h")
    store.insert_key(record, audit())
    got = store.get_key(record.key_id)
    assert got == record
    assert got.expire_time is None and got.revoke_time is None and got.grace_expire_time is None
    assert got.last_used_time is None and got.use_count == 0 and got.request_id == ""


def test_get_missing_key(store):
    assert store.get_key(tokens.new_key_id()) is None
    assert store.get_key("") is None
    assert store.get_key("' OR '1'='1") is None


@pytest.mark.parametrize(
    "when",
    [
        datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2025, 6, 1, 12, 0, 0, 654_321, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_times_keep_microseconds(store, when):
    record = make_record(create_time=when, expire_time=when, last_used_time=when)
    store.insert_key(record, audit())
    got = store.get_key(record.key_id)
    for value in (got.create_time, got.expire_time, got.last_used_time):
        assert value == when
        assert value.utcoffset() == timedelta(0)
        assert value.microsecond == when.astimezone(UTC).microsecond


def test_adjacent_microseconds_stay_distinct_and_ordered(store):
    a = make_record(create_time=T0)
    b = make_record(create_time=T0 + timedelta(microseconds=1))
    store.insert_key(a, audit())
    store.insert_key(b, audit())
    assert [r.key_id for r in store.list_keys("ws-1", 10, None)] == [b.key_id, a.key_id]
    assert [r.key_id for r in store.list_keys("ws-1", 10, (b.create_time, b.key_id))] == [a.key_id]


def test_request_id_taken(store):
    first = make_record(request_id="req-1", request_fingerprint="a" * 64)
    store.insert_key(first, audit())
    second = make_record(request_id="req-1", request_fingerprint="b" * 64)
    with pytest.raises(RequestIdTaken) as info:
        store.insert_key(second, audit())
    assert info.value.existing == first
    assert store.get_key(second.key_id) is None
    # Empty request ids never collide.
    store.insert_key(make_record(), audit())
    store.insert_key(make_record(), audit())


def test_duplicate_key_id_is_refused_and_writes_nothing(store):
    record = make_record()
    store.insert_key(record, audit())
    latest = store.latest_change()
    audits = len(store.list_audit())
    with pytest.raises(sa_exc.IntegrityError):
        store.insert_key(make_record(record.key_id, workspace_id="other"), audit())
    assert store.get_key(record.key_id) == record
    assert store.latest_change() == latest
    assert len(store.list_audit()) == audits


# -- rotate -------------------------------------------------------------------------------


def test_rotate(store):
    old = make_record(create_time=T0)
    store.insert_key(old, audit())
    new = make_record(rotated_from=old.key_id)
    grace_end = utcnow() + timedelta(hours=1)
    got_old, got_new = store.rotate(old.key_id, new, grace_end, audit("key.rotate", old.key_id))
    assert got_new == new
    assert got_old.stored_state is StoredState.ROTATED
    assert got_old.rotated_to == new.key_id
    assert got_old.grace_expire_time == grace_end
    assert store.get_key(old.key_id) == got_old
    assert store.get_key(new.key_id) == new


def test_rotate_caps_grace_at_the_keys_expiry(store):
    expire = utcnow() + timedelta(minutes=30)
    old = make_record(expire_time=expire)
    store.insert_key(old, audit())
    got_old, _ = store.rotate(old.key_id, make_record(), utcnow() + timedelta(days=7), audit())
    assert got_old.grace_expire_time == expire
    assert got_old.valid_until() == expire


def test_rotate_is_atomic_when_the_new_key_cannot_be_inserted(store):
    old = make_record()
    taken = make_record()
    store.insert_key(old, audit())
    store.insert_key(taken, audit())
    latest = store.latest_change()
    audits = len(store.list_audit())
    clash = make_record(taken.key_id, rotated_from=old.key_id)  # the insert of the new key fails
    with pytest.raises(sa_exc.IntegrityError):
        store.rotate(old.key_id, clash, utcnow() + timedelta(hours=1), audit())
    after = store.get_key(old.key_id)
    assert after == old
    assert after.stored_state is StoredState.ACTIVE
    assert after.rotated_to == "" and after.grace_expire_time is None
    assert store.get_key(taken.key_id) == taken
    assert store.latest_change() == latest
    assert len(store.list_audit()) == audits
    # And the key can still be rotated properly afterwards.
    store.rotate(old.key_id, make_record(), utcnow() + timedelta(hours=1), audit())


def test_rotate_conflict_for_a_key_that_is_not_active(store):
    old = make_record()
    store.insert_key(old, audit())
    store.rotate(old.key_id, make_record(), utcnow(), audit())
    loser = make_record()
    with pytest.raises(RotateConflict) as info:
        store.rotate(old.key_id, loser, utcnow(), audit())
    assert info.value.current.stored_state is StoredState.ROTATED
    assert store.get_key(loser.key_id) is None
    revoked = make_record()
    store.insert_key(revoked, audit())
    store.revoke(revoked.key_id, "", utcnow(), audit())
    with pytest.raises(RotateConflict):
        store.rotate(revoked.key_id, make_record(), utcnow(), audit())


def test_rotate_missing_key_inserts_nothing(store):
    new = make_record()
    with pytest.raises(LookupError):
        store.rotate(tokens.new_key_id(), new, utcnow(), audit())
    assert store.get_key(new.key_id) is None
    assert store.latest_change() == 0


# -- revoke -------------------------------------------------------------------------------


def test_revoke_is_idempotent(store):
    record = make_record()
    store.insert_key(record, audit())
    first_time = T0 + timedelta(microseconds=17)
    revoked, changed = store.revoke(record.key_id, "leaked", first_time, audit("key.revoke", record.key_id))
    assert changed is True
    assert revoked.stored_state is StoredState.REVOKED
    assert revoked.revoke_time == first_time and revoked.revoke_reason == "leaked"
    again, changed = store.revoke(record.key_id, "other", first_time + timedelta(hours=1), audit("key.revoke"))
    assert changed is False
    assert again == revoked
    revocations = [c for c in store.changes_since(0) if c.change == "revoked"]
    assert len(revocations) == 1


def test_revoke_missing_key(store):
    with pytest.raises(LookupError):
        store.revoke(tokens.new_key_id(), "", utcnow(), audit())
    assert store.latest_change() == 0


def test_revoke_a_rotated_key(store):
    old = make_record()
    store.insert_key(old, audit())
    store.rotate(old.key_id, make_record(), utcnow() + timedelta(days=1), audit())
    revoked, changed = store.revoke(old.key_id, "", utcnow(), audit())
    assert changed and revoked.stored_state is StoredState.REVOKED


# -- change feed ----------------------------------------------------------------------------


def test_change_feed_is_ordered(store):
    assert store.latest_change() == 0
    assert store.changes_since(0) == []
    a, b = make_record(), make_record()
    store.insert_key(a, audit())
    store.insert_key(b, audit())
    new = make_record()
    store.rotate(a.key_id, new, utcnow(), audit())
    store.revoke(b.key_id, "", utcnow(), audit())
    feed = store.changes_since(0)
    assert [(c.key_id, c.change) for c in feed] == [
        (a.key_id, "issued"),
        (b.key_id, "issued"),
        (a.key_id, "rotated"),
        (new.key_id, "issued"),
        (b.key_id, "revoked"),
    ]
    seqs = [c.seq for c in feed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert store.latest_change() == seqs[-1]
    assert store.changes_since(seqs[-1]) == []
    assert store.changes_since(seqs[2]) == feed[3:]


def test_changes_since_with_gaps_and_limit(store):
    records = [make_record() for _ in range(6)]
    for r in records:
        store.insert_key(r, audit())
    feed = store.changes_since(0)
    seqs = [c.seq for c in feed]
    # Ask again for earlier sequence numbers (gaps, inclusive ranges) beside everything after the fourth.
    got = store.changes_since(seqs[3], also=((seqs[0], seqs[0]), (seqs[2], seqs[2])))
    assert [c.seq for c in got] == [seqs[0], seqs[2], seqs[4], seqs[5]]
    got = store.changes_since(seqs[4], also=((seqs[1], seqs[3]),))
    assert [c.seq for c in got] == [seqs[1], seqs[2], seqs[3], seqs[5]]
    # Gap numbers that do not exist are simply not returned.
    got = store.changes_since(seqs[5], also=((seqs[5] + 100, seqs[5] + 200), (10**12, 10**12)))
    assert got == []
    assert [c.seq for c in store.changes_since(0, limit=2)] == seqs[:2]
    assert [c.seq for c in store.changes_since(seqs[1], also=((seqs[0], seqs[0]),), limit=2)] == [seqs[0], seqs[2]]


def test_prune_changes(store):
    old, new = make_record(create_time=T0), make_record(create_time=T0 + timedelta(days=2))
    store.insert_key(old, audit())
    store.insert_key(new, audit())
    assert store.prune_changes(T0 + timedelta(days=1)) == 1
    assert [c.key_id for c in store.changes_since(0)] == [new.key_id]


# -- usage ------------------------------------------------------------------------------------


def test_record_usage_adds_and_keeps_the_latest_use(store):
    a, b = make_record(), make_record()
    store.insert_key(a, audit())
    store.insert_key(b, audit())
    t1 = T0 + timedelta(minutes=10, microseconds=5)
    store.record_usage([UsageDelta(a.key_id, 3, t1, "svc-a"), UsageDelta(b.key_id, 1, T0, "")])
    store.record_usage([UsageDelta(a.key_id, 4, T0, "")])  # an older batch arrives late
    got_a, got_b = store.get_key(a.key_id), store.get_key(b.key_id)
    assert got_a.use_count == 7
    assert got_a.last_used_time == t1  # never moves backwards
    assert got_a.last_caller == "svc-a"  # an empty caller keeps the last known one
    assert (got_b.use_count, got_b.last_used_time, got_b.last_caller) == (1, T0, "")
    t2 = t1 + timedelta(seconds=1)
    store.record_usage([UsageDelta(a.key_id, 1, t2, "svc-b")])
    got_a = store.get_key(a.key_id)
    assert (got_a.use_count, got_a.last_used_time, got_a.last_caller) == (8, t2, "svc-b")


def test_record_usage_ignores_unknown_keys_and_empty_batches(store):
    a = make_record()
    store.insert_key(a, audit())
    store.record_usage([])
    store.record_usage([UsageDelta(tokens.new_key_id(), 5, T0, "x"), UsageDelta(a.key_id, 1, T0, "")])
    assert store.get_key(a.key_id).use_count == 1


def test_record_usage_does_not_touch_the_change_feed(store):
    a = make_record()
    store.insert_key(a, audit())
    latest = store.latest_change()
    store.record_usage([UsageDelta(a.key_id, 1, T0, "")])
    assert store.latest_change() == latest


# -- listing and audit ---------------------------------------------------------------------------


def test_list_keys_newest_first_with_ties_broken_by_key_id(store):
    same = [make_record(f"{c}" * 12, create_time=T0) for c in "ABCD"]
    older = make_record(create_time=T0 - timedelta(seconds=1))
    other_ws = make_record(workspace_id="ws-2", create_time=T0 + timedelta(seconds=1))
    for r in [*same, older, other_ws]:
        store.insert_key(r, audit())
    ids = [r.key_id for r in store.list_keys("ws-1", 100, None)]
    assert ids == ["D" * 12, "C" * 12, "B" * 12, "A" * 12, older.key_id]
    # A cursor in the middle of a tie continues exactly after it.
    assert [r.key_id for r in store.list_keys("ws-1", 2, (T0, "C" * 12))] == ["B" * 12, "A" * 12]
    assert [r.key_id for r in store.list_keys("", 1, None)] == [other_ws.key_id]
    assert len(store.list_keys("", 100, None)) == 6


def test_audit_roundtrip_and_bounds(store):
    store.write_audit(
        AuditEvent(
            action="key.revoke",
            actor="a" * 100,
            outcome="ok",
            key_id="K" * 12,
            workspace_id="ws",
            request_id="r" * 100,
            detail="d" * 1000,
            time=T0,
        )
    )
    store.write_audit(AuditEvent(action="key.issue", actor="x", outcome="denied", key_id="J" * 12, time=T0))
    events = store.list_audit()
    assert [e.action for e in events] == ["key.issue", "key.revoke"]  # newest first
    revoke = events[1]
    assert (revoke.actor, revoke.request_id, revoke.detail) == ("a" * 64, "r" * 64, "d" * 500)
    assert revoke.time == T0
    assert [e.action for e in store.list_audit(key_id="K" * 12)] == ["key.revoke"]
    assert len(store.list_audit(limit=1)) == 1


def test_every_change_writes_one_audit_row(store):
    r = make_record()
    store.insert_key(r, audit("key.issue", r.key_id))
    store.rotate(r.key_id, make_record(), utcnow(), audit("key.rotate", r.key_id))
    store.revoke(r.key_id, "", utcnow(), audit("key.revoke", r.key_id))
    assert [e.action for e in store.list_audit(key_id=r.key_id)] == ["key.revoke", "key.rotate", "key.issue"]


def test_query_count_counts_statements(store):
    before = store.query_count
    store.get_key(tokens.new_key_id())
    after_one = store.query_count
    assert after_one > before
    store.get_key(tokens.new_key_id())
    assert store.query_count - after_one == after_one - before


# -- outages ------------------------------------------------------------------------------------


def test_unreachable_postgres_is_store_unavailable():
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(StoreUnavailable) as info:
        SqlStore(url)
    assert info.value.reason == "STORE_UNAVAILABLE"
    store = SqlStore(url, create_schema=False)
    try:
        for call in (
            lambda: store.get_key(tokens.new_key_id()),
            lambda: store.insert_key(make_record(), audit()),
            lambda: store.revoke(tokens.new_key_id(), "", utcnow(), audit()),
            lambda: store.rotate(tokens.new_key_id(), make_record(), utcnow(), audit()),
            lambda: store.changes_since(0),
            lambda: store.latest_change(),
            lambda: store.record_usage([UsageDelta("K" * 12, 1, T0, "")]),
            lambda: store.list_keys("", 10, None),
        ):
            with pytest.raises(StoreUnavailable):
                call()
    finally:
        store.close()


def test_unopenable_sqlite_file_is_store_unavailable(tmp_path):
    (tmp_path / "db").mkdir()
    store = SqlStore(f"sqlite:///{tmp_path / 'db' / 'auth.db'}")
    record = make_record()
    store.insert_key(record, audit())
    store.close()
    (tmp_path / "db" / "auth.db").unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / "db" / f"auth.db{extra}").unlink(missing_ok=True)
    (tmp_path / "db").rmdir()
    try:
        with pytest.raises(StoreUnavailable):
            store.get_key(record.key_id)
    finally:
        store.close()
