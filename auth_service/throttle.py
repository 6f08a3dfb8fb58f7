"""Throttling of failed authentications: bounded in-memory token buckets.

Each failed authentication (a call answered ``UNAUTHENTICATED``) takes one
token from the bucket of its *caller* and one from the bucket of the *key id*
it named. Buckets refill at a steady rate up to their burst size. Only
failures create buckets, so valid traffic costs one dictionary lookup per
bucket kind and never waits.

While either bucket of a call is empty, the call is refused before any work
with ``RESOURCE_EXHAUSTED`` and the time until a token is back, unless its
credential was verified recently and is still live (answered from the
verified cache alone, see :func:`auth_service.interceptors.cached_and_live`).
Guesses are refused unevaluated; valid traffic is not touched, even when it
shares a caller with the guesser (a gateway forwarding its users' credentials)
or a key id with it (key ids are public: a stranger's guesses must not lock a
key's owner out).

Which buckets are empty is kept apart (``blocked``, with the time each has a
token again), so that after a burst of failures, once every bucket has a token
again, valid calls go back to costing one truthiness test: they do not read
the peer or the key id while nothing is blocked, however many buckets remain.

Callers are the certificate identity with mTLS; on plaintext loopback, where
every caller is anonymous, the connection (the peer address and port). Either
limit can be turned off (``off``): its failures are then not recorded at all.
A bucket is one number, the time it is full again; refilled buckets are
forgotten as failures go on (a full bucket and no bucket are the same), and both
maps are bounded (least recently failed out first), so a flood of made-up key
ids cannot exhaust memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from itertools import islice


class TokenBuckets:
    def __init__(self, burst: float, rate: float, max_entries: int = 100_000):
        if burst < 1 or rate <= 0 or max_entries < 1:
            raise ValueError("burst >= 1, rate > 0 and max_entries >= 1")
        self.burst = float(burst)
        self.rate = float(rate)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # Key -> the monotonic time its bucket is full again; one float per bucket stands for the
        # whole bucket (tokens at ``now``: ``burst - (full_at - now) * rate``, at most ``burst``).
        # Least recently failed first, so the buckets that have refilled are found at the front.
        self._buckets: OrderedDict[str, float] = OrderedDict()
        # Keys whose bucket ran empty -> monotonic time it holds a token again; most recently
        # emptied last. A superset of the empty buckets (entries are dropped once their time passed).
        self.blocked: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, full_at: float, now: float) -> float:
        return self.burst if full_at <= now else self.burst - (full_at - now) * self.rate

    def retry_after(self, key: str, now: float | None = None) -> float:
        """0 when ``key`` has a token left; otherwise the seconds until it has one again."""
        full_at = self._buckets.get(key)
        if full_at is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = self._tokens(full_at, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str, now: float | None = None) -> None:
        """Record one failure against ``key``."""
        now = time.monotonic() if now is None else now
        buckets, burst, rate = self._buckets, self.burst, self.rate
        with self._lock:
            full_at = buckets.get(key)
            if full_at is None:
                left = burst - 1.0
                # A new bucket: forget refilled ones from the front (they mean nothing any more), at
                # most two, never a walk over the map (this is the path of a flood of made-up key
                # ids). The front is the least recently failed, so the map keeps what failed lately.
                if buckets:
                    for _ in range(2):
                        oldest = next(iter(buckets))
                        if buckets[oldest] > now:
                            break
                        del buckets[oldest]
                        if not buckets:
                            break
            else:
                left = burst - 1.0 if full_at <= now else burst - (full_at - now) * rate - 1.0
                if left < 0.0:
                    left = 0.0
                buckets.move_to_end(key)
            buckets[key] = now + (burst - left) / rate
            while len(buckets) > self.max_entries:
                buckets.popitem(last=False)
            if left < 1.0:
                self.blocked.pop(key, None)
                self.blocked[key] = now + (1.0 - left) / rate
                while len(self.blocked) > self.max_entries:
                    del self.blocked[next(iter(self.blocked))]

    def any_blocked(self, now: float | None = None) -> bool:
        """Whether some bucket may be empty. Drops entries whose time has passed, oldest first, so the
        answer turns back to ``False`` (no lookups per call) soon after failures stop."""
        blocked = self.blocked
        if not blocked:
            return False
        now = time.monotonic() if now is None else now
        key = next(iter(blocked), None)
        until = blocked.get(key) if key is not None else None
        if until is None or until > now:
            return bool(blocked)
        with self._lock:
            for key in list(islice(blocked, 64)):
                if blocked[key] > now:
                    break
                del blocked[key]
        return bool(blocked)


class NoBuckets:
    """A limit that is off: nothing is ever blocked, failures are not even recorded."""

    blocked: dict[str, float] = {}  # never filled

    def __len__(self) -> int:
        return 0

    def retry_after(self, key: str, now: float | None = None) -> float:
        return 0.0

    def take(self, key: str, now: float | None = None) -> None:
        return None

    def any_blocked(self, now: float | None = None) -> bool:
        return False


class Throttle:
    """Failed-authentication limits per caller and per key id; ``None`` turns a limit off."""

    def __init__(
        self,
        caller: tuple[float, float] | None = (1000, 100),
        key: tuple[float, float] | None = (20, 2),
        max_entries: int = 100_000,
    ):
        self.callers = TokenBuckets(*caller, max_entries=max_entries) if caller else NoBuckets()
        self.keys = TokenBuckets(*key, max_entries=max_entries) if key else NoBuckets()
        # Whether a failure is charged to its caller: when not, the gate need not find out who the
        # caller is (on plaintext that is the peer address, which grpcio is slow to hand out).
        self.charges_callers = caller is not None
        self.charges_keys = key is not None
        self.refused = {"caller": 0, "key_id": 0}

    def caller_retry_after(self, caller: str) -> float:
        return self.callers.retry_after(caller) if self.callers.any_blocked() else 0.0

    def key_retry_after(self, key_id: str) -> float:
        return self.keys.retry_after(key_id) if key_id and self.keys.any_blocked() else 0.0

    def failed(self, caller: str, key_id: str) -> None:
        now = time.monotonic()
        if self.charges_callers:
            self.callers.take(caller, now)
        if key_id and self.charges_keys:
            self.keys.take(key_id, now)
