"""An "issued" change from the feed only concerns the negative cache (VerifiedCache.forget_unknown)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from auth_service.cache.verified import VerifiedCache
from auth_service.domain.keys.records import CachedKey, KeyRecord
from auth_service.domain.tokens import KeyKind


def _entry(key_id: str) -> CachedKey:
    record = KeyRecord(
        key_id=key_id,
        workspace_id="ws",
        kind=KeyKind.SERVER,
        display_name="",
        scopes=("conversations:read",),
        allowed_origins=(),
        digest=b"d" * 32,
        pepper_id="p1",
        hint="woes_sk_...",
        create_time=datetime.now(UTC),
    )
    return CachedKey.from_record(record, time.monotonic())


def test_a_verified_entry_survives_its_issued_change_and_can_still_be_put():
    cache = VerifiedCache()
    generation = cache.generation()
    cache.forget_unknown("k1")  # the change arrives while the lookup reads the store
    assert cache.put(b"x" * 32, _entry("k1"), generation)
    cache.forget_unknown("k1")  # or after it was cached
    assert cache.get(b"x" * 32) is not None


def test_an_issued_change_drops_and_blocks_stale_unknown_answers():
    cache = VerifiedCache()
    cache.remember_unknown_key_id("k2", cache.generation())
    assert cache.is_known_unknown("k2", b"y" * 32)
    before = cache.generation()
    cache.forget_unknown("k2")
    assert not cache.is_known_unknown("k2", b"y" * 32)
    cache.remember_unknown_key_id("k2", before)  # a lookup that read "no such key" before the issue
    assert not cache.is_known_unknown("k2", b"y" * 32)
    cache.remember_unknown_key_id("k2", cache.generation())  # read after: really unknown to this process
    assert cache.is_known_unknown("k2", b"y" * 32)


def test_invalidate_still_drops_verified_entries():
    cache = VerifiedCache()
    cache.put(b"z" * 32, _entry("k3"), cache.generation())
    cache.invalidate("k3")
    assert cache.get(b"z" * 32) is None
