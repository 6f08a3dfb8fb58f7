"""Prometheus metrics on a separate HTTP port (``WOES_AUTH_METRICS_LISTEN``, off by default).

Series (all prefixed ``woes_auth_``):

| series | type | labels |
| --- | --- | --- |
| ``rpc_calls_total`` | counter | ``method``, ``code`` (gRPC status name) |
| ``rpc_duration_seconds`` | histogram | ``method`` |
| ``authentication_failures_total`` | counter | ``reason`` (the ErrorInfo reason) |
| ``throttled_total`` | counter | ``scope`` (``caller`` or ``key_id``) |
| ``policy_denials_total`` | counter | ``group`` |
| ``cache_hits_total``, ``cache_misses_total``, ``cache_negative_hits_total`` | counter | |
| ``cache_hit_ratio`` | gauge | hits / (hits + misses) since start |
| ``cache_entries`` | gauge | |
| ``change_feed_staleness_seconds`` | gauge | seconds since the change feed was last read (revocation lag bound) |

Each process has its own registry. With ``serve --workers N``, worker ``i``
serves its metrics on the configured port plus ``i`` (scrape them all; sum
over the ``worker`` target label on the Prometheus side). Per-process
registries keep the cache and feed gauges true to the process that owns them,
which prometheus_client's multiprocess mode cannot do for custom collectors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from auth_service.cache.verified import VerifiedCache

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StateCollector:
    """Reads the cache counters and the feed's staleness at scrape time (nothing on the hot path)."""

    def __init__(self, cache: VerifiedCache, staleness: Callable[[], float]):
        self.cache = cache
        self.staleness = staleness

    def collect(self):
        c = self.cache
        hits, misses, negative = c.hits, c.misses, c.negative_hits
        for name, value, text in (
            ("cache_hits", hits, "verified-cache hits"),
            ("cache_misses", misses, "verified-cache misses (a store lookup or a negative hit followed)"),
            ("cache_negative_hits", negative, "unknown credentials answered from the negative cache"),
        ):
            family = CounterMetricFamily(f"woes_auth_{name}", text)
            family.add_metric([], value)
            yield family
        ratio = GaugeMetricFamily("woes_auth_cache_hit_ratio", "cache hits / (hits + misses) since start")
        ratio.add_metric([], hits / (hits + misses) if hits + misses else 0.0)
        yield ratio
        entries = GaugeMetricFamily("woes_auth_cache_entries", "verified credentials cached")
        entries.add_metric([], len(c))
        yield entries
        lag = GaugeMetricFamily(
            "woes_auth_change_feed_staleness_seconds", "seconds since the change feed was last read successfully"
        )
        lag.add_metric([], self.staleness())
        yield lag


class Metrics:
    def __init__(self, cache: VerifiedCache, staleness: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("woes_auth_rpc_calls", "RPCs answered", ["method", "code"], registry=r)
        self.latency = Histogram(
            "woes_auth_rpc_duration_seconds", "RPC handling time", ["method"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.auth_failures = Counter(
            "woes_auth_authentication_failures", "failed authentications by reason", ["reason"], registry=r
        )
        self.throttled = Counter("woes_auth_throttled", "calls refused by throttling", ["scope"], registry=r)
        self.policy_denials = Counter(
            "woes_auth_policy_denials", "calls refused by the caller policy", ["group"], registry=r
        )
        r.register(_StateCollector(cache, staleness))
        self._children: dict[tuple[str, str], tuple] = {}
        self._lock = threading.Lock()
        self._httpd = None
        self.port = 0

    def observe(self, method: str, code: str, seconds: float, reason: str = "") -> None:
        key = (method, code)
        children = self._children.get(key)
        if children is None:
            with self._lock:
                children = (self.calls.labels(method, code), self.latency.labels(method))
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if reason and code == "UNAUTHENTICATED":
            self.auth_failures.labels(reason).inc()

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port."""
        self._httpd, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._httpd.server_port
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
