"""In-process caches on the Authenticate hot path.

* :class:`VerifiedCache` maps the peppered digest of a credential that was
  verified against the store to what the store said about it (including
  "revoked"), bounded in entries (LRU) and in age.
* Unknown credentials are remembered briefly: by key id when no such key
  exists, by digest when the key exists but the secret does not match, and every
  refused digest by digest, so that a repeat is answered before the credential
  is even parsed. These negative maps are kept in two generations
  (see :class:`Negatives`): no expiry time per entry, no per-entry order to
  keep, one lookup for a repeated digest.
* What the store said of a key id is remembered too (:meth:`VerifiedCache.record_of`): the
  verified entry of its real credential, or, for a key whose real credential has not been seen
  (only wrong secrets were), its stored digest in a bounded map of its own. Every later guess
  for that key id is then checked in memory, one HMAC against the record: a flood costs one
  store read per key id, whatever secrets it tries, and never locks the real credential out.
* :class:`GrantMemo` remembers, by a keyed hash of a request's exact bytes, which verified entry
  granted it: a repeat of the same request is granted again without decoding it or hashing its
  credential, as long as that same entry is still cached, live and trusted. Likewise a request
  the negative cache refused, as long as it still refuses that credential.
* Invalidation is by key id: a local ``Revoke``/``Rotate`` drops the entry at
  once, the change feed drops it in every other process. A generation counter
  stops a lookup that read the store *before* an invalidation from putting its
  (now stale) answer back *after* it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from auth_service.cache.counters import ThreadCounters
from auth_service.cache.memo import GrantMemo
from auth_service.cache.negative import WRONG_SECRET, Negatives
from auth_service.domain.keys.records import CachedKey, KnownRecord

# Expiry spread of verified entries, as a fraction of the TTL (see VerifiedCache.stamp).
TTL_SPREAD = 0.2


class VerifiedCache:
    def __init__(
        self,
        max_entries: int = 100_000,
        ttl: float = 300.0,
        negative_max_entries: int = 100_000,
        negative_ttl: float = 60.0,
        memo_refusals: int = 10_000,
    ):
        if max_entries < 1 or negative_max_entries < 1:
            raise ValueError("cache sizes must be at least 1")
        self.max_entries = max_entries
        self.ttl = ttl
        self.negative_max_entries = negative_max_entries
        self.negative_ttl = negative_ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, CachedKey] = OrderedDict()
        self._digest_by_key: dict[str, bytes] = {}
        # Key ids read from the store whose real credential was not verified (only wrong secrets
        # were presented): key id -> KnownRecord, least recently read first, bounded like the
        # negative maps (a flood naming many existing key ids fills it, and no further).
        self._key_records: OrderedDict[str, KnownRecord] = OrderedDict()
        self.records_max = negative_max_entries
        # Negative entries live in generations of half the negative TTL each (at most half the
        # negative bound each): an entry is remembered for at least half the TTL and never longer
        # than the TTL, and the maps never hold more than the bound. A digest whose key id does not
        # exist only counts while that key id is still remembered, so issuing the key id (which
        # forgets it) makes every digest remembered for it count for nothing at once.
        self._neg_half = negative_ttl / 2
        self._neg_cap = max(1, negative_max_entries // 2)
        self._neg_keeps_previous = 2 * self._neg_cap <= negative_max_entries
        self._neg = Negatives(time.monotonic())
        self._generation = 0
        self._invalidated_at: dict[str, int] = {}
        self._invalidation_floor = 0
        self._known_since: dict[str, int] = {}  # key id -> generation at which it was issued
        self._negative_floor = 0
        # "probe_negative_hits": negative hits of the hot path's probe, each also a miss of the
        # verified cache (one count instead of two on the path of a flood).
        # "probe_grants": hits of the hot path's probe that granted the call, each also an ``ok``
        # outcome of Authenticate (counted once, here: see auth_service.ops.stats.Outcomes).
        self._counts = ThreadCounters("hits", "misses", "negative_hits", "probe_negative_hits", "probe_grants")
        # Grants by the request that earned them, as many as there are verified entries (the memo
        # refers to entries and grants only through them: see GrantMemo); refusals of the negative
        # cache likewise, fewer (``memo_refusals``, never more than the negative digests): a record
        # is about 250 bytes, and a flood of fresh credentials records every first sight.
        self.memo = GrantMemo(max_entries, min(memo_refusals, negative_max_entries))
        self._count = self._counts.add

    @property
    def hits(self) -> int:
        totals = self._counts.snapshot()
        return totals["hits"] + totals["probe_grants"]

    @property
    def probe_grants(self) -> int:
        """Calls the hot path's probe granted from this cache alone (each also counted in :attr:`hits`)."""
        return self._counts.total("probe_grants")

    @property
    def misses(self) -> int:
        totals = self._counts.snapshot()
        return totals["misses"] + totals["probe_negative_hits"]

    @property
    def negative_hits(self) -> int:
        totals = self._counts.snapshot()
        return totals["negative_hits"] + totals["probe_negative_hits"]

    # -- positive ---------------------------------------------------------

    def get(self, digest: bytes) -> CachedKey | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                self._count("misses")
                return None
            if now - entry.cached_at > self.ttl:
                self._drop(digest, entry)
                self._count("misses")
                return None
            self._entries.move_to_end(digest)
        self._count("hits")
        return entry

    def hot_path(self) -> tuple[Callable[[bytes], CachedKey | None], Callable[[bytes], None], Callable[[], None]]:
        """The verified map's steps for the hot path's probe, as callables it binds once: ``get(digest)``
        (the entry or ``None``, whatever its age: the probe compares ``cached_at`` with :attr:`ttl`
        itself), ``touch(digest)`` (mark it most recently used; ``KeyError`` if it went meanwhile)
        and ``count_grant()`` (a hit that granted the call, see :attr:`probe_grants`).

        The first two are the ordered dict's own C methods: a probe pays no Python call for them,
        which on a call whose code and data are out of the processor's caches is most of what a
        call costs. Without the lock: each is one C-level step, atomic under the interpreter lock,
        and cannot undo what a writer holding the lock does (an entry invalidated since the lookup
        is simply not there any more). The map is never replaced, only changed, so what was bound
        stays the map."""
        return self._entries.get, self._entries.move_to_end, partial(self._count, "probe_grants")

    def count_miss(self) -> None:
        """Count a miss that the hot path's probe found (it counts nothing), as :meth:`get` would have."""
        self._count("misses")

    def count_negative_hit(self) -> None:
        """Count a refusal answered from memory (a key id's record) rather than the store."""
        self._count("negative_hits")

    def probe_refusal_counter(self) -> Callable[[], None]:
        """For the hot path to bind once: counts a refusal its probe found in memory, as the full
        rule counts it (a miss of the verified cache and a negative hit), in one C-level step."""
        return partial(self._count, "probe_negative_hits")

    def stamp(self) -> float:
        """The ``cached_at`` (monotonic) of an entry made now: now, less a random part of up to
        ``TTL_SPREAD`` of the TTL. Keys cached together (the first minutes after a start) then
        expire over the last fifth of the TTL instead of all in one moment, which would send every
        call of a busy process to the store at once; no entry lives longer than the TTL."""
        return time.monotonic() - random.random() * TTL_SPREAD * self.ttl

    def generation(self) -> int:
        """Take before reading the store; pass to :meth:`put`."""
        return self._generation

    def put(self, digest: bytes, entry: CachedKey, generation: int) -> bool:
        """Cache ``entry`` unless its key was invalidated after ``generation`` was taken."""
        with self._lock:
            if generation < self._invalidation_floor:
                return False
            if self._invalidated_at.get(entry.key_id, -1) > generation:
                return False
            old = self._digest_by_key.get(entry.key_id)
            if old is not None and old != digest:
                self._entries.pop(old, None)
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            self._digest_by_key[entry.key_id] = digest
            self._key_records.pop(entry.key_id, None)  # the verified entry speaks for the key id now
            while len(self._entries) > self.max_entries:
                evicted_digest, evicted = self._entries.popitem(last=False)
                if self._digest_by_key.get(evicted.key_id) == evicted_digest:
                    del self._digest_by_key[evicted.key_id]
            return True

    def _drop(self, digest: bytes, entry: CachedKey) -> None:
        self._entries.pop(digest, None)
        if self._digest_by_key.get(entry.key_id) == digest:
            del self._digest_by_key[entry.key_id]

    # -- records by key id ---------------------------------------------------

    def record_of(self, key_id: str, now: float | None = None) -> KnownRecord | None:
        """What the store said of ``key_id`` lately, for checking another credential naming it in
        memory, or ``None`` (then only the store knows). Either the verified entry of its real
        credential (``pepper_id`` ``None``: ``digest`` is that credential's digest under the primary
        pepper, so any other digest is a wrong secret), or a record read for a wrong secret (its
        stored digest under ``pepper_id``). Within the TTL only; counts nothing. Lock-free: each
        lookup is one C-level step, and an answer read just before a concurrent invalidation is
        one a locked read could have given too (the caller took :meth:`generation` first, so
        nothing it puts back outlives the invalidation)."""
        if now is None:
            now = time.monotonic()
        digest = self._digest_by_key.get(key_id)
        if digest is not None:
            entry = self._entries.get(digest)
            if entry is not None and now - entry.cached_at <= self.ttl:
                return KnownRecord(entry.kind, None, digest, entry)
        known = self._key_records.get(key_id)
        if known is not None and now - known.entry.cached_at <= self.ttl:
            return known
        return None

    def remember_record(self, known: KnownRecord, generation: int) -> bool:
        """Keep the record of a key whose real credential was not presented (read at
        ``generation``), unless the key was invalidated since; bounded, oldest out."""
        key_id = known.entry.key_id
        with self._lock:
            if generation < self._invalidation_floor or self._invalidated_at.get(key_id, -1) > generation:
                return False
            records = self._key_records
            records.pop(key_id, None)
            records[key_id] = known
            while len(records) > self.records_max:
                records.popitem(last=False)
            return True

    def records(self) -> int:
        """Records held for key ids whose real credential was not verified (see :meth:`record_of`)."""
        return len(self._key_records)

    # -- negative ---------------------------------------------------------

    def _next_negatives(self, neg: Negatives, now: float) -> Negatives:
        keep = self._neg_keeps_previous and now - neg.started < self.negative_ttl
        return Negatives(now, neg if keep else None)

    def _remembers_key_id(self, neg: Negatives, key_id: str, now: float) -> bool:
        return key_id in neg.key_ids or (key_id in neg.prev_key_ids and now - neg.prev_started < self.negative_ttl)

    def _refused_digest(self, neg: Negatives, digest: bytes, now: float) -> str | None:
        """The key id a refused ``digest`` named (``WRONG_SECRET`` for a secret that did not
        match), or ``None``; a digest of an unknown key id only while that key id is remembered."""
        key_id = neg.digests.get(digest)
        if key_id is None:
            key_id = neg.prev_digests.get(digest)
            if key_id is None or now - neg.prev_started >= self.negative_ttl:
                return None
        if key_id is not WRONG_SECRET and not self._remembers_key_id(neg, key_id, now):
            return None
        return key_id

    def is_known_unknown(self, key_id: str, digest: bytes) -> bool:
        now = time.monotonic()
        with self._lock:
            neg = self._negatives_locked(now)
            known = self._remembers_key_id(neg, key_id, now) or self._refused_digest(neg, digest, now) is not None
        if known:
            self._count("negative_hits")
        return known

    def refuses_digest(self, digest: bytes) -> bool:
        """Whether :meth:`is_unknown_digest` would say yes now, counting nothing (for a caller
        that only wants to know, not to answer a call from it)."""
        now = time.monotonic()
        with self._lock:
            return self._refused_digest(self._negatives_locked(now), digest, now) is not None

    def _negatives_locked(self, now: float) -> Negatives:
        """The current generation, turned over first if it is older than half the negative TTL (for
        a caller holding the lock; :meth:`is_unknown_digest` reads it without and locks to turn over)."""
        neg = self._neg
        if now - neg.started >= self._neg_half > 0:
            neg = self._neg = self._next_negatives(neg, now)
        return neg

    def is_unknown_digest(self, digest: bytes, count_miss: bool = False, now: float | None = None) -> bool:
        """Whether this exact credential was refused lately: its key id does not exist, or its secret
        did not match. Answered from the digest alone, before the credential is parsed. With
        ``count_miss``, a "yes" also counts the miss of the verified cache the caller probed
        (the hot path's probe counts nothing), as :meth:`get` would have. ``now``: ``time.monotonic()``,
        when the caller has read it already."""
        if now is None:
            now = time.monotonic()
        # Without the lock: each lookup is one C-level step, atomic under the GIL, and an answer
        # read just before a concurrent change is one a locked read could have given too.
        # _refused_digest() and _remembers_key_id() written out: this is the path of a flood, where
        # every Python call fewer counts.
        neg = self._neg
        if now - neg.started >= self._neg_half > 0:
            with self._lock:
                neg = self._negatives_locked(now)
        key_id = neg.digests.get(digest)
        if key_id is None:
            key_id = neg.prev_digests.get(digest)
            if key_id is None or now - neg.prev_started >= self.negative_ttl:
                return False
        if key_id is not WRONG_SECRET and not (
            key_id in neg.key_ids or (key_id in neg.prev_key_ids and now - neg.prev_started < self.negative_ttl)
        ):
            return False
        self._count("probe_negative_hits" if count_miss else "negative_hits")
        return True

    def remember_unknown_key_id(self, key_id: str, generation: int, digest: bytes | None = None) -> None:
        """``key_id`` does not exist (read at ``generation``); ``digest`` is the credential that asked."""
        self._remember(key_id, digest, key_id, generation)

    def remember_wrong_secret(self, key_id: str, digest: bytes, generation: int) -> None:
        self._remember(None, digest, key_id, generation)

    def _remember(self, unknown_key_id: str | None, digest: bytes | None, key_id: str, generation: int) -> None:
        if self.negative_ttl <= 0:
            return  # no negative caching
        now = time.monotonic()
        with self._lock:
            if generation < self._invalidation_floor or self._invalidated_at.get(key_id, -1) > generation:
                return
            if generation < self._negative_floor or self._known_since.get(key_id, -1) > generation:
                return
            neg = self._negatives_locked(now)
            if len(neg.key_ids) >= self._neg_cap or len(neg.digests) >= self._neg_cap:
                neg = self._neg = self._next_negatives(neg, now)  # full: a new generation, the oldest out
            if unknown_key_id is not None:
                neg.key_ids.add(unknown_key_id)
                if digest is not None:
                    neg.digests[digest] = unknown_key_id
            elif digest is not None:
                neg.digests[digest] = WRONG_SECRET

    def _forget_key_id(self, key_id: str) -> None:
        neg = self._neg
        neg.key_ids.discard(key_id)
        neg.prev_key_ids.discard(key_id)

    # -- invalidation -----------------------------------------------------

    def forget_unknown(self, key_id: str) -> None:
        """``key_id`` was just issued: drop what says it does not exist, and keep lookups that read
        the store before now from remembering it as unknown. Verified entries stay (and may still be
        put): they were read after the issue committed."""
        with self._lock:
            self._generation += 1
            self._known_since[key_id] = self._generation
            if len(self._known_since) > 10_000:
                self._known_since.clear()
                self._negative_floor = self._generation
            self._forget_key_id(key_id)

    def invalidate(self, key_id: str) -> None:
        """Forget everything about ``key_id`` (positive and negative)."""
        with self._lock:
            self._generation += 1
            self._invalidated_at[key_id] = self._generation
            if len(self._invalidated_at) > 10_000:
                # Keep the guard bounded: lookups that started before now simply don't cache.
                self._invalidated_at.clear()
                self._invalidation_floor = self._generation
            digest = self._digest_by_key.pop(key_id, None)
            if digest is not None:
                self._entries.pop(digest, None)
            self._key_records.pop(key_id, None)
            self._forget_key_id(key_id)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._invalidation_floor = self._generation
            self._invalidated_at.clear()
            self._entries.clear()
            self._digest_by_key.clear()
            self._key_records.clear()
            self._neg = Negatives(time.monotonic())
        self.memo.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def negative_size(self) -> int:
        """Negative entries held: key ids and digests, each at most ``negative_max_entries``."""
        return len(self._neg)
