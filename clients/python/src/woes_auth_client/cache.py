"""An optional in-process micro-cache of successful authentications.

For services that authenticate every request: a repeated credential within
``ttl`` (1 s by default, never more than 60 s) is answered from memory. Only
successes are kept, keyed by a SHA-256 of the credential and the required
scopes (never the credential itself), bounded in entries (least recently used
goes first). A revocation therefore reaches a caller at most ``ttl`` later
than it reaches woes-auth.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from .types import Principal

MAX_TTL = 60.0


class MicroCache:
    def __init__(self, ttl: float = 1.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be in (0, {MAX_TTL}] seconds")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MicroCache(ttl={self.ttl}, max_entries={self.max_entries}, size={len(self)})"

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(credential: str, required_scopes: Iterable[str]) -> bytes:
        h = hashlib.sha256(credential.encode("utf-8", "surrogatepass"))
        for scope in sorted(set(required_scopes)):
            h.update(b"\0" + scope.encode("utf-8", "surrogatepass"))
        return h.digest()

    def get(self, key: bytes) -> Principal | None:
        now = self._clock()
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            stored_at, principal = item
            if now - stored_at >= self.ttl or (
                principal.expire_time is not None and principal.expire_time.timestamp() <= time.time()
            ):
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return principal

    def put(self, key: bytes, principal: Principal) -> None:
        now = self._clock()
        with self._lock:
            self._entries[key] = (now, principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
