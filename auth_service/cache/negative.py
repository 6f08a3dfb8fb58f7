"""The negative caches' maps, kept in two generations: refused key ids and refused digests.

No expiry time per entry and no per-entry order to keep: a generation holds what was refused
during half the negative TTL, the cache keeps the current one and the one before it, and one
lookup answers a repeated digest.
"""

from __future__ import annotations

# The value of a negative digest entry whose key exists but whose secret did not match (key ids
# are never empty): such a digest is refused whatever becomes of the key id.
WRONG_SECRET = ""


class Negatives:
    """One generation of the negative maps: key ids that do not exist, and refused digests (->
    the key id they named, or ``WRONG_SECRET``). The cache keeps the current generation and the
    one before it and replaces both references at once (readers take one object and see one
    consistent pair); a generation's contents change only under the cache's lock."""

    __slots__ = ("started", "key_ids", "digests", "prev_started", "prev_key_ids", "prev_digests")

    def __init__(self, started: float, previous: Negatives | None = None):
        self.started = started
        self.key_ids: set[str] = set()
        self.digests: dict[bytes, str] = {}
        if previous is None:
            self.prev_started = started
            self.prev_key_ids: set[str] = set()
            self.prev_digests: dict[bytes, str] = {}
        else:
            self.prev_started = previous.started
            self.prev_key_ids = previous.key_ids
            self.prev_digests = previous.digests

    def __len__(self) -> int:
        return len(self.key_ids) + len(self.prev_key_ids) + len(self.digests) + len(self.prev_digests)
