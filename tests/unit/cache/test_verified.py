"""The verified-credential cache: LRU bound, TTL, negative caches, invalidation and its generation guard."""

from __future__ import annotations

import random
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from auth_service.cache import memo as memo_mod
from auth_service.cache import verified as cache_mod
from auth_service.cache.verified import VerifiedCache
from auth_service.domain import tokens
from auth_service.domain.keys.records import CachedKey, KeyRecord, StoredState
from auth_service.domain.tokens import KeyKind


class FakeClock:
    """Stands in for the ``time`` module inside auth_service.cache."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(cache_mod, "time", fake)
    return fake


def record(key_id: str | None = None, **kw) -> KeyRecord:
    fields = dict(
        key_id=key_id or tokens.new_key_id(),
        workspace_id="ws",
        kind=KeyKind.SERVER,
        display_name="",
        scopes=("messages:write",),
        allowed_origins=(),
        digest=b"\x01" * 32,
        pepper_id="p1",
        hint="h",
        create_time=datetime.now(UTC),
    )
    fields.update(kw)
    return KeyRecord(**fields)


def entry(clock: FakeClock, key_id: str | None = None, **kw) -> CachedKey:
    return CachedKey.from_record(record(key_id, **kw), clock.now)


def digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


# -- CachedKey --------------------------------------------------------------------


def test_cached_key_from_record(clock):
    expire = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    e = CachedKey.from_record(record("AAAAAAAAAAAA", expire_time=expire, scopes=("a:write",)), 5.0)
    assert e.valid_until == expire.timestamp()
    assert e.effective_scopes == {"a:write", "a:read"}
    assert e.principal.key_id == "AAAAAAAAAAAA"
    assert e.principal.expire_time == expire
    assert e.cached_at == 5.0
    assert not hasattr(e, "digest")


def test_cached_key_of_rotated_record_is_valid_until_grace_end(clock):
    grace = datetime.now(UTC) + timedelta(hours=1)
    e = CachedKey.from_record(record(stored_state=StoredState.ROTATED, grace_expire_time=grace), 0.0)
    assert e.valid_until == grace.timestamp()
    assert e.principal.expire_time == grace


# -- positive entries ----------------------------------------------------------------


def test_put_then_get(clock):
    c = VerifiedCache(max_entries=10)
    e = entry(clock)
    assert c.get(digest(1)) is None
    assert c.put(digest(1), e, c.generation())
    assert c.get(digest(1)) is e
    assert (c.hits, c.misses) == (1, 1)
    assert len(c) == 1


def test_lru_bound_holds(clock):
    c = VerifiedCache(max_entries=5)
    for n in range(50):
        c.put(digest(n), entry(clock), c.generation())
        assert len(c) <= 5
    assert len(c) == 5
    # The five most recent survive.
    assert all(c.get(digest(n)) is not None for n in range(45, 50))
    assert all(c.get(digest(n)) is None for n in range(45))


def test_lru_evicts_the_least_recently_used_not_the_oldest(clock):
    c = VerifiedCache(max_entries=3)
    for n in range(3):
        c.put(digest(n), entry(clock), c.generation())
    assert c.get(digest(0)) is not None  # 0 becomes the most recent
    c.put(digest(3), entry(clock), c.generation())
    assert c.get(digest(1)) is None
    assert c.get(digest(0)) is not None
    assert c.get(digest(2)) is not None
    assert c.get(digest(3)) is not None


def test_a_key_has_one_entry_its_latest_digest(clock):
    c = VerifiedCache(max_entries=10)
    e = entry(clock, "KKKKKKKKKKKK")
    c.put(digest(1), e, c.generation())
    c.put(digest(2), e, c.generation())  # e.g. the same key seen under a new primary pepper
    assert len(c) == 1
    assert c.get(digest(1)) is None
    assert c.get(digest(2)) is e


def test_ttl(clock):
    c = VerifiedCache(max_entries=10, ttl=30)
    c.put(digest(1), entry(clock), c.generation())
    clock.now += 29.9
    assert c.get(digest(1)) is not None
    clock.now += 0.2
    assert c.get(digest(1)) is None
    assert len(c) == 0


def test_ttl_counts_from_when_the_store_was_read_not_last_use(clock):
    c = VerifiedCache(max_entries=10, ttl=10)
    c.put(digest(1), entry(clock), c.generation())
    for _ in range(4):
        clock.now += 3
        c.get(digest(1))
    assert c.get(digest(1)) is None


def test_entries_made_together_expire_spread_over_the_last_fifth_of_the_ttl(clock):
    c = VerifiedCache(ttl=100)
    stamps = [c.stamp() for _ in range(2000)]
    ages = [clock.now - s for s in stamps]
    assert all(0.0 <= age <= 20.0 for age in ages)  # never cached later than now: never past the TTL
    assert max(ages) > 15.0 and min(ages) < 5.0  # spread, not one moment
    buckets = {int(age // 5) for age in ages}
    assert buckets == {0, 1, 2, 3}


def test_sizes_below_one_are_refused():
    with pytest.raises(ValueError):
        VerifiedCache(max_entries=0)
    with pytest.raises(ValueError):
        VerifiedCache(negative_max_entries=0)


# -- negative entries -------------------------------------------------------------------


def test_unknown_key_id_is_remembered_for_the_negative_ttl(clock):
    c = VerifiedCache(negative_ttl=60)
    kid = tokens.new_key_id()
    assert not c.is_known_unknown(kid, digest(1))
    c.remember_unknown_key_id(kid, c.generation())
    # Any secret under that key id is known unknown.
    assert c.is_known_unknown(kid, digest(1))
    assert c.is_known_unknown(kid, digest(2))
    assert not c.is_known_unknown(tokens.new_key_id(), digest(1))
    clock.now += 60.5
    assert not c.is_known_unknown(kid, digest(1))
    assert c.negative_size() == 0


def test_wrong_secret_is_remembered_by_digest_only(clock):
    c = VerifiedCache(negative_ttl=60)
    kid = tokens.new_key_id()
    c.remember_wrong_secret(kid, digest(7), c.generation())
    assert c.is_known_unknown(kid, digest(7))
    # The right secret of that key is not shadowed.
    assert not c.is_known_unknown(kid, digest(8))
    clock.now += 61
    assert not c.is_known_unknown(kid, digest(7))


def test_negative_bound_holds(clock):
    c = VerifiedCache(negative_max_entries=4)
    for n in range(40):
        c.remember_unknown_key_id(f"{n:012d}", c.generation())
        c.remember_wrong_secret(f"{n:012d}", digest(n), c.generation())
        assert c.negative_size() <= 8  # at most 4 by key id and 4 by digest
    assert c.is_known_unknown(f"{39:012d}", digest(999))
    assert not c.is_known_unknown(f"{0:012d}", digest(0))


@pytest.mark.parametrize("seed", range(5))
def test_negative_entries_live_at_least_half_and_at_most_the_whole_ttl(clock, seed):
    """Whenever lookups happen, an entry is remembered for half the negative TTL at least and is
    never answered from once the whole TTL has passed (its two generations)."""
    rng = random.Random(seed)
    c = VerifiedCache(negative_ttl=60, negative_max_entries=100_000)
    made: dict[str, float] = {}
    for n in range(400):
        clock.now += rng.choice((0.0, 0.5, 3.0, 11.0, 29.0, 45.0))
        if rng.random() < 0.5:
            kid = f"{n:012d}"
            c.remember_unknown_key_id(kid, c.generation(), digest(n))
            made[kid] = clock.now
        for kid, at in rng.sample(sorted(made.items()), min(5, len(made))):
            age = clock.now - at
            by_digest = c.is_unknown_digest(digest(int(kid)))
            by_key_id = c.is_known_unknown(kid, digest(10**6))
            if age < 30:
                assert by_digest and by_key_id, (kid, age)
            elif age >= 60:
                assert not by_digest and not by_key_id, (kid, age)


def test_a_digest_refused_for_a_wrong_secret_outlives_no_key_id(clock):
    c = VerifiedCache(negative_ttl=60)
    kid = tokens.new_key_id()
    c.remember_wrong_secret(kid, digest(5), c.generation())
    assert c.is_unknown_digest(digest(5))
    c.forget_unknown(kid)  # its key id exists (it always did): the wrong secret stays wrong
    assert c.is_unknown_digest(digest(5))
    assert not c.is_unknown_digest(digest(6))


def test_no_negative_caching_with_a_zero_ttl(clock):
    c = VerifiedCache(negative_ttl=0)
    c.remember_unknown_key_id("k" * 12, c.generation(), digest(1))
    c.remember_wrong_secret("w" * 12, digest(2), c.generation())
    assert c.negative_size() == 0
    assert not c.is_unknown_digest(digest(1)) and not c.is_known_unknown("k" * 12, digest(1))


def test_negative_entries_are_small():
    """A flood's unknown credentials are remembered in compact maps. Measured with tracemalloc,
    beyond the digest and key id themselves: about 115 bytes per credential at this size (a set
    entry and a dict entry), against about 200 with ordered maps and an expiry time per entry."""
    c = VerifiedCache(negative_max_entries=100_000)
    key_ids = [tokens.new_key_id() for _ in range(30_000)]
    digests = [digest(n) for n in range(30_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key_id, d in zip(key_ids, digests):
            c.remember_unknown_key_id(key_id, c.generation(), d)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 30_000
    finally:
        tracemalloc.stop()
    assert c.negative_size() == 60_000  # each one by key id and by digest
    assert per_entry < 150, per_entry


# -- invalidation -------------------------------------------------------------------------


def test_invalidate_drops_the_positive_entry(clock):
    c = VerifiedCache()
    e = entry(clock)
    c.put(digest(1), e, c.generation())
    other = entry(clock)
    c.put(digest(2), other, c.generation())
    c.invalidate(e.key_id)
    assert c.get(digest(1)) is None
    assert c.get(digest(2)) is other


def test_invalidate_drops_the_negative_entry_of_the_key_id(clock):
    c = VerifiedCache()
    kid = tokens.new_key_id()
    c.remember_unknown_key_id(kid, c.generation())
    assert c.is_known_unknown(kid, digest(1))
    c.invalidate(kid)  # e.g. the key id was just issued
    assert not c.is_known_unknown(kid, digest(1))


def test_invalidate_of_unknown_key_is_harmless(clock):
    c = VerifiedCache()
    c.invalidate("nothing-here")
    c.put(digest(1), entry(clock), c.generation())
    assert len(c) == 1


def test_generation_guard_refuses_a_stale_put(clock):
    """A lookup that read the store before an invalidation must not cache its answer after it."""
    c = VerifiedCache()
    e = entry(clock)
    generation = c.generation()  # the lookup starts and reads the store (key active)
    c.invalidate(e.key_id)  # meanwhile the key is revoked
    assert c.put(digest(1), e, generation) is False
    assert c.get(digest(1)) is None
    # A lookup started after the invalidation caches normally.
    assert c.put(digest(1), e, c.generation()) is True
    assert c.get(digest(1)) is e


def test_generation_guard_for_negative_entries(clock):
    c = VerifiedCache()
    kid = tokens.new_key_id()
    generation = c.generation()  # lookup reads the store: no such key
    c.invalidate(kid)  # meanwhile the key is issued
    c.remember_unknown_key_id(kid, generation)
    c.remember_wrong_secret(kid, digest(3), generation)
    assert not c.is_known_unknown(kid, digest(3))


def test_generation_guard_is_per_key(clock):
    c = VerifiedCache()
    e = entry(clock)
    generation = c.generation()
    c.invalidate(tokens.new_key_id())  # another key
    assert c.put(digest(1), e, generation) is True


def test_generation_guard_stays_correct_after_its_table_is_trimmed(clock):
    c = VerifiedCache()
    e = entry(clock)
    generation = c.generation()
    c.invalidate(e.key_id)
    for n in range(10_050):  # overflow the bounded per-key table
        c.invalidate(f"{n:012d}")
    assert c.put(digest(1), e, generation) is False
    assert c.put(digest(1), e, c.generation()) is True


def test_clear(clock):
    c = VerifiedCache()
    e = entry(clock)
    c.put(digest(1), e, c.generation())
    c.remember_unknown_key_id("x" * 12, c.generation())
    c.remember_wrong_secret("y" * 12, digest(9), c.generation())
    generation = c.generation()
    c.clear()
    assert len(c) == 0
    assert c.negative_size() == 0
    assert c.get(digest(1)) is None
    # Lookups that began before the clear do not repopulate it.
    assert c.put(digest(1), e, generation) is False
    assert c.put(digest(1), e, c.generation()) is True


def test_concurrent_puts_and_invalidations_keep_the_bound(clock):
    c = VerifiedCache(max_entries=50)
    entries = [entry(clock) for _ in range(200)]
    errors = []

    def worker(offset):
        try:
            for n in range(2000):
                e = entries[(n + offset) % 200]
                c.put(digest((n + offset) % 200), e, c.generation())
                if n % 7 == 0:
                    c.invalidate(e.key_id)
                c.get(digest(n % 200))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 37,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(c) <= 50
    # Every surviving entry is still reachable under its digest and can be invalidated.
    live = [(n, c.get(digest(n))) for n in range(200)]
    live = [(n, e) for n, e in live if e is not None]
    assert 0 < len(live) <= 50
    for n, e in live:
        c.invalidate(e.key_id)
        assert c.get(digest(n)) is None
    assert len(c) == 0


# -- the grant memo ----------------------------------------------------------------------


def test_the_grant_memo_fingerprint_is_keyed_per_process():
    """A keyed hash: the same bytes give the same fingerprint in one memo and another in the next
    (each draws its key), and neither is the plain hash of the bytes nor holds them."""
    wire = b"\x0a\x20" + b"woes_sk_" + b"a" * 30
    one, two = memo_mod.GrantMemo(), memo_mod.GrantMemo()
    assert one.fingerprint(wire) == one.fingerprint(wire)
    assert len(one.fingerprint(wire)) == 32
    assert one.fingerprint(wire) != two.fingerprint(wire)
    assert one.fingerprint(wire) != memo_mod.hashlib.blake2b(wire, digest_size=32).digest()
    assert one.fingerprint(wire + b"\x00") != one.fingerprint(wire)
    new_hasher, lookup, lookup_refusal = one.hot_path()
    hasher = new_hasher()
    hasher.update(wire)
    assert hasher.digest() == one.fingerprint(wire)  # the bound steps are the same hash
    assert lookup(one.fingerprint(wire)) is None
    assert lookup_refusal(one.fingerprint(wire)) is None


def test_the_grant_memo_bound_holds_and_the_oldest_record_goes(clock):
    memo = memo_mod.GrantMemo(max_entries=3)
    e = entry(clock)
    for n in range(10):
        memo.remember(digest(n), digest(100 + n), e, f"svc-{n}")
        assert len(memo) <= 3
        if n == 5:
            memo.remember(digest(3), digest(103), e, "again")  # remembered anew: the newest now
    _new_hasher, lookup, _lookup_refusal = memo.hot_path()
    assert [n for n in range(10) if lookup(digest(n)) is not None] == [7, 8, 9]
    assert lookup(digest(9)) == (digest(109), e, "svc-9")
    with pytest.raises(ValueError):
        memo_mod.GrantMemo(max_entries=0)
    with pytest.raises(ValueError):
        memo_mod.GrantMemo(max_entries=5, max_refusals=0)


def test_the_memo_bounds_refusals_apart_so_a_flood_pushes_no_grant_out(clock):
    memo = memo_mod.GrantMemo(max_entries=3, max_refusals=2)
    e = entry(clock)
    for n in range(3):
        memo.remember(digest(n), digest(100 + n), e, "svc")
    for n in range(10, 20):
        memo.remember_refusal(digest(n), digest(100 + n), f"key{n:09d}")
        assert memo.refusals() <= 2
    _new_hasher, lookup, lookup_refusal = memo.hot_path()
    assert len(memo) == 3 and all(lookup(digest(n)) is not None for n in range(3))
    assert [n for n in range(10, 20) if lookup_refusal(digest(n)) is not None] == [18, 19]
    assert lookup_refusal(digest(19)) == (digest(119), "key000000019")
    assert lookup(digest(19)) is None and lookup_refusal(digest(0)) is None  # two maps, never mixed
    memo.clear()
    assert len(memo) == 0 and memo.refusals() == 0


def test_the_verified_cache_bounds_and_clears_its_memo(clock):
    c = VerifiedCache(max_entries=4, negative_max_entries=6)
    assert c.memo.max_entries == 4 and c.memo.max_refusals == 6  # never more than the negative digests
    assert VerifiedCache(negative_max_entries=100, memo_refusals=7).memo.max_refusals == 7
    c.memo.remember(digest(1), digest(2), entry(clock), "svc")
    c.memo.remember_refusal(digest(3), digest(4), "key000000004")
    c.invalidate("any")  # an invalidation leaves the records: they count only with their own entries
    assert len(c.memo) == 1 and c.memo.refusals() == 1
    c.clear()
    assert len(c.memo) == 0 and c.memo.refusals() == 0


def test_grant_memo_records_of_one_caller_share_its_name(clock):
    memo = memo_mod.GrantMemo()
    e = entry(clock)
    one, two = "".join(["svc-", "a"]), "".join(["svc", "-a"])  # equal, two objects
    assert one == two and one is not two
    memo.remember(digest(1), digest(101), e, one)
    memo.remember(digest(2), digest(102), e, two)
    _new_hasher, lookup, _lookup_refusal = memo.hot_path()
    assert lookup(digest(1))[2] is lookup(digest(2))[2]


def test_the_memo_drops_its_oldest_records_in_batches_and_never_exceeds_its_bound():
    memo = memo_mod.GrantMemo(max_entries=64, max_refusals=32)
    for n in range(1000):
        memo.remember_refusal(n.to_bytes(32, "big"), b"d" * 32, "k" * 12)
        assert memo.refusals() <= 32
    held = [n for n in range(1000) if memo._refusals.get(n.to_bytes(32, "big")) is not None]
    assert held == list(range(1000 - len(held), 1000)) and len(held) >= 30  # the newest, in order
