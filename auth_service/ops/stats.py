"""Operational counters of one serving process, and an optional loopback HTTP endpoint for them.

``woes-auth serve --stats-port P`` (env ``WOES_AUTH_STATS_PORT``) makes worker
``i`` answer ``GET /stats`` on ``127.0.0.1:P+i`` with a JSON object: calls by
outcome, cache sizes and hit counts, statements sent to the store, change-feed
position, resident memory. It never contains a credential, digest or key id,
and it only ever binds to loopback: it is for the operator's scraper on the
same host and for the benchmark, not for callers. Off by default.

Every process also logs the same counters once when it stops.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from auth_service.cache.counters import ThreadCounters

if TYPE_CHECKING:
    from auth_service.app.runtime import Runtime

log = logging.getLogger(__name__)

STATS_HOST = "127.0.0.1"


class Outcomes:
    """Calls of one RPC counted by outcome (``ok`` or an error reason); thread-safe, lock-free to count."""

    def __init__(self, granted_elsewhere: Callable[[], int] | None = None) -> None:
        """``granted_elsewhere``: how many ``ok`` calls another counter holds instead (the grants of
        ``Authenticate``'s cache probe, counted once by the cache): added to ``ok`` when read."""
        self._counts = ThreadCounters("ok")
        self.ok = partial(self._counts.add, "ok")
        # refused(reason): one call of the counter's own, not a method around it (a flood's path).
        self.refused = self._counts.add
        self._granted_elsewhere = granted_elsewhere

    def snapshot(self) -> dict[str, int]:
        """``ok`` always; a reason once it occurred."""
        counts = self._counts.snapshot()
        if self._granted_elsewhere is not None:
            counts["ok"] += self._granted_elsewhere()
        return {k: v for k, v in counts.items() if v or k == "ok"}


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gc_snapshot() -> dict:
    """The garbage collector's settings and work so far (collections and collected objects per generation)."""
    generations = gc.get_stats()
    return {
        "threshold": list(gc.get_threshold()),
        "frozen_objects": gc.get_freeze_count(),
        "collections": [g["collections"] for g in generations],
        "collected": [g["collected"] for g in generations],
    }


def snapshot(runtime: Runtime) -> dict:
    manager = runtime.manager
    cache = manager.cache
    feed = runtime.feed
    servicer = runtime.servicer
    return {
        "pid": os.getpid(),
        "worker": runtime.worker,
        "uptime_seconds": round(time.monotonic() - runtime.started_at, 3),
        "rss_bytes": rss_bytes(),
        "authenticate": servicer.authenticate_outcomes.snapshot() if servicer is not None else {},
        "store": {
            "statements": runtime.store.query_count,
            "hot_path_reads": manager.store_reads,
        },
        "cache": {
            "entries": len(cache),
            "max_entries": cache.max_entries,
            "negative_entries": cache.negative_size(),
            "memo_records": len(cache.memo),
            "memo_refusals": cache.memo.refusals(),
            "hits": cache.hits,
            "misses": cache.misses,
            "negative_hits": cache.negative_hits,
        },
        "feed": {
            "last_seq": feed.last_seq,
            "polls": feed.polls,
            "interval_seconds": feed.interval,
            "staleness_seconds": round(feed.staleness(), 3),
            "healthy": feed.healthy,
        },
        "usage_pending_keys": runtime.usage.pending(),
        "gc": gc_snapshot(),
        # Calls the throttle refused before they reached a handler (TOO_MANY_FAILURES), by bucket.
        "throttled": dict(runtime.gate.throttle.refused) if runtime.gate is not None else {},
    }


class StatsEndpoint:
    """``GET /stats`` on a loopback port, served by a daemon thread."""

    def __init__(self, runtime: Runtime, port: int):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?", 1)[0] != "/stats":
                    self.send_error(404)
                    return
                body = json.dumps(snapshot(outer.runtime)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        self.runtime = runtime
        self._httpd = ThreadingHTTPServer((STATS_HOST, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="woes-auth-stats", daemon=True)

    def start(self) -> StatsEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
