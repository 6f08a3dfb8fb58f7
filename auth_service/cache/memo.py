"""The grant memo: answers of the hot path by a keyed hash of the request's exact bytes."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from itertools import islice

from auth_service.domain.keys.records import CachedKey, shared


def _drop_oldest(records: dict, bound: int) -> None:
    """Bring ``records`` (oldest first) back under ``bound``, dropping a sixteenth of it at once: a
    dict's first key is found by walking past the slots of deleted ones, so dropping one key per
    insertion would walk further each time; in batches each slot is walked past once."""
    for key in list(islice(records, len(records) - bound + max(1, bound // 16))):
        del records[key]


class GrantMemo:
    """Answers of the hot path, by a fingerprint of the request that earned them.

    A grant depends on the request's credential, required scopes and caller only, and those are a
    function of the request's bytes. So a call whose bytes are those of a call granted before may
    be granted again from what that grant found: the digest of its credential, the verified entry
    that granted it and its caller (for the usage record), without decoding the request or hashing
    its credential again. The memo decides nothing itself: a repeat is granted only while the very
    same entry object is in the verified cache (an invalidation, an eviction or a reload replaces
    or removes it, and then the memo's record counts for nothing), within its TTL and validity,
    the change feed fresh; see :meth:`auth_service.domain.keys.hot_path.KeyHotPath.probe_wire`.

    Refusals of the negative cache are remembered the same way, apart: the digest of the refused
    credential and the key id it names (what a refusal is charged to). A repeat is refused from
    them only while the negative cache still refuses that digest and the verified cache does not
    hold it, exactly the probe's own rule: issuing the key id, an invalidation or the negative
    entry's age makes the record count for nothing. This is the path of a flood of made-up
    credentials: no decoding, no HMAC.

    The fingerprint is BLAKE2b-256 keyed with a random key made when the process starts: a
    keyed hash, so that nobody can make two requests collide without the key, and so that the
    memo holds no credential (not even the peppered digest of the request). Nothing of it is
    stored or shared. Bounded in entries, grants and refusals each on their own (a flood's
    refusals never push a grant out): past ``max_entries`` grants (``max_refusals`` refusals) the
    oldest records go, a sixteenth of the bound at a time (a caller varying its requests can only push records out, which sends
    those calls the long way).
    """

    def __init__(self, max_entries: int = 100_000, max_refusals: int | None = None):
        max_refusals = max_entries if max_refusals is None else max_refusals
        if max_entries < 1 or max_refusals < 1:
            raise ValueError("the grant memo's sizes must be at least 1")
        self.max_entries = max_entries
        self.max_refusals = max_refusals
        self._hasher = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=32)
        self._records: dict[bytes, tuple[bytes, CachedKey, str]] = {}
        self._refusals: dict[bytes, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def fingerprint(self, wire: bytes) -> bytes:
        """The keyed hash of ``wire`` (a request's bytes) that records are kept under."""
        hasher = self._hasher.copy()
        hasher.update(wire)
        return hasher.digest()

    def hot_path(
        self,
    ) -> tuple[
        Callable[[], object],
        Callable[[bytes], tuple[bytes, CachedKey, str] | None],
        Callable[[bytes], tuple[bytes, str] | None],
    ]:
        """``(new_hasher, lookup, lookup_refusal)`` for the hot path to bind once: ``new_hasher()``
        is a copy of the keyed hash's prepared state (``update(wire)``, then ``digest()`` is the
        fingerprint), ``lookup(fingerprint)`` the grant's record (digest, entry, caller) or
        ``None``, ``lookup_refusal(fingerprint)`` the refusal's (digest, key id) or ``None``.
        C methods all."""
        return self._hasher.copy, self._records.get, self._refusals.get

    def remember(self, fingerprint: bytes, digest: bytes, entry: CachedKey, caller: str) -> None:
        """Record that the request of ``fingerprint`` was granted by ``entry`` (cached under ``digest``)."""
        records = self._records
        caller = shared(caller)  # a few callers make most calls: one string each, not one per record
        with self._lock:
            records.pop(fingerprint, None)  # re-inserted last: the oldest record is the first
            records[fingerprint] = (digest, entry, caller)
            if len(records) > self.max_entries:
                _drop_oldest(records, self.max_entries)

    def remember_refusal(self, fingerprint: bytes, digest: bytes, key_id: str) -> None:
        """Record that the request of ``fingerprint`` was refused by the negative cache, which holds
        ``digest`` (its credential's); ``key_id``: the key id the credential names."""
        refusals = self._refusals
        with self._lock:
            refusals.pop(fingerprint, None)
            refusals[fingerprint] = (digest, key_id)
            if len(refusals) > self.max_refusals:
                _drop_oldest(refusals, self.max_refusals)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._refusals.clear()

    def __len__(self) -> int:
        """Grant records held (see :meth:`refusals`)."""
        return len(self._records)

    def refusals(self) -> int:
        """Refusal records held."""
        return len(self._refusals)
