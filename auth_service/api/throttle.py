"""Throttling of failed authentications: bounded in-memory token buckets, per caller, opt-in.

A throttle never refuses a credential that verifies because of what someone else sent. Guessing
a 256-bit secret is hopeless, so a lockout per key id would buy nothing and would hand anyone
who knows a key id (they are public) a way to lock its owner out; there is no such bucket. What
needs protecting is the database and the CPU, and the caches do that directly: a key id's record,
once read, checks every later guess in memory, and unknown key ids come from the negative cache
(see :mod:`auth_service.cache`).

A per-caller limit remains for callers whose failures are their own: the mTLS identities the
caller policy lists under ``throttled`` (and ``anonymous`` there: plaintext callers, each by its
address without the port). Behind a shared identity (an API gateway forwarding its users'
credentials) one user's failures would be every user's, so no caller is throttled unless the
policy says so. For a listed caller, each failed authentication (a call answered
``UNAUTHENTICATED``, or an Envoy ``Check`` denied as unauthenticated) takes one token from its
bucket; buckets refill at a steady rate up to their burst size (``WOES_AUTH_THROTTLE_CALLER``).
While its bucket is empty, the caller's calls are refused before any work with
``RESOURCE_EXHAUSTED`` and the time until a token is back, unless the credential was verified
recently and is still live (answered from the verified cache alone, see
:func:`auth_service.domain.keys.authenticate.KeyAuthenticator.cached_and_live`).

Which buckets are empty is kept apart (``blocked``, with the time each has a token again), so
that once every bucket has a token again, calls go back to costing one truthiness test. A bucket
is one number, the time it is full again; refilled buckets are forgotten as failures go on, and
the map is bounded (least recently failed out first).
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
    """The per-caller limit of failed authentications, charged only to ``throttled`` callers (policy
    identities; ``anonymous`` for plaintext callers, by address). ``caller`` ``None`` turns it off."""

    def __init__(
        self,
        caller: tuple[float, float] | None = (1000, 100),
        throttled: frozenset[str] | set[str] = frozenset(),
        max_entries: int = 100_000,
    ):
        self.throttled = frozenset(throttled)
        on = caller is not None and bool(self.throttled)
        self.callers = TokenBuckets(*caller, max_entries=max_entries) if on else NoBuckets()
        # Whether any failure is charged: when not, the gate need not find out who the caller is
        # (on plaintext that is the peer address, which grpcio is slow to hand out).
        self.charges_callers = on
        self.refused = {"caller": 0}

    def bucket_of(self, identity: str, peer: str | None) -> str | None:
        """The bucket a failure of ``identity`` is charged to, or ``None`` when it is not throttled.
        ``peer``: grpcio's peer string, for a plaintext caller (``None`` with mTLS)."""
        if not self.charges_callers or identity not in self.throttled:
            return None
        return identity if peer is None else address_of(peer)

    def caller_retry_after(self, bucket: str) -> float:
        return self.callers.retry_after(bucket) if self.callers.any_blocked() else 0.0

    def failed(self, bucket: str | None) -> None:
        if bucket is not None:
            self.callers.take(bucket, time.monotonic())


def address_of(peer: str) -> str:
    """grpcio's peer string without its port: ``ipv4:10.0.0.7:51234`` -> ``ipv4:10.0.0.7``,
    ``ipv6:[::1]:51234`` -> ``ipv6:[::1]``; anything else unchanged. A client opening new
    connections gets a new port each time, never a new bucket."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit() and host not in ("ipv4", "ipv6"):
            return host
    return peer
