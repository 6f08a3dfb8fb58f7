"""One serving process: its gRPC server, health, reflection, background threads, and how it stops."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from woes.auth.v1 import auth_service_pb2

from auth_service.api import envoy
from auth_service.api.gate import CallGate
from auth_service.api.policy import load_policy
from auth_service.api.service import SERVICE_NAME, AuthServicer, add_to_server
from auth_service.api.throttle import Throttle
from auth_service.api.tls import TlsFiles, server_credentials
from auth_service.app.config import Settings, parse_rate, split_listen
from auth_service.app.services import Services, build_services, credential_manager
from auth_service.cache.verified import VerifiedCache
from auth_service.domain.crypto import Pepper
from auth_service.domain.errors import ConfigError
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.ports import KeyStore
from auth_service.ops import stats
from auth_service.ops.metrics import Metrics
from auth_service.ops.stats import StatsEndpoint
from auth_service.store import SqlDatabase, SqlStore
from auth_service.sync.feed import ChangeFeedFollower
from auth_service.sync.usage import UsageRecorder

log = logging.getLogger("auth_service.server")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The largest valid request (IssueKey with 32 scopes and 32 origins) is about 10 KiB.
MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_connection_idle_ms", 30 * 60_000),
    ("grpc.so_reuseport", 1),
]


@dataclass
class Runtime:
    """One serving process: its store, manager, background threads and gRPC server."""

    settings: Settings
    store: KeyStore
    manager: CredentialManager
    feed: ChangeFeedFollower
    usage: UsageRecorder
    server: grpc.Server
    health: health.HealthServicer
    port: int
    stopped: threading.Event = field(default_factory=threading.Event)
    services: Services | None = None
    servicer: AuthServicer | None = None
    worker: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    stats_endpoint: StatsEndpoint | None = None
    gate: CallGate | None = None
    metrics: Metrics | None = None
    metrics_listen: tuple[str, int] | None = None

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, drain, finish in-flight calls within ``grace``, flush usage, close."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        grace = self.settings.shutdown_grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        if self.settings.shutdown_drain > 0:
            # Keep answering (health NOT_SERVING included) so load balancers that poll
            # Health/Check see the drain and move traffic away before we refuse calls.
            time.sleep(self.settings.shutdown_drain)
        self.server.stop(grace).wait()
        if self.metrics is not None:
            self.metrics.stop()
        self.feed.stop()
        self.usage.stop()
        if self.services is not None:
            self.services.stop()
        if self.stats_endpoint is not None:
            self.stats_endpoint.stop()
        log.info("counters at stop: %s", json.dumps(stats.snapshot(self), sort_keys=True))
        self.store.close()


# Python's default starts a young-generation collection every 700 net container allocations. A
# serving process keeps every in-flight call's objects alive across those collections, promotes
# them, and then pays for full collections over a heap that start-up made large (SQLAlchemy,
# protobuf descriptors, the cache), each pausing every call in flight. See tune_gc().
GC_YOUNG_THRESHOLD = 20_000


def tune_gc(young_threshold: int = GC_YOUNG_THRESHOLD) -> None:
    """Garbage-collector settings of a serving process, applied once it is built and before it serves.

    Collect once, then freeze what start-up created (modules, descriptors, the store's metadata):
    frozen objects are never traversed again, so later full collections only walk what serving
    created. Young collections run every ``young_threshold`` net allocations instead of 700; the
    older generations keep Python's ratios. Cyclic garbage is still collected, only in larger
    batches. The benchmark's baseline server applies the same settings, so ratios compare handlers,
    not collector settings.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def new_grpc_server(
    interceptors: tuple = (),
    max_concurrent_streams: int = 100,
    max_concurrent_rpcs: int = 1000,
    threads: int = Settings.threads,
) -> grpc.Server:
    """The gRPC server every serving process uses: thread pool, limits and options.

    ``threads`` (``WOES_AUTH_THREADS``, default 2) run the handlers. Few threads are faster here:
    grpcio hands each call from its polling thread to the pool, and while a thread of the pool is
    busy the next call waits in the queue for it instead of waking an idle thread, with fewer
    context switches per call (docs/performance.md). A handler waiting on the store (a miss, an admin RPC) holds its thread, not the
    interpreter: with a slow store (a remote database) raise it.
    """
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="woes-auth-rpc"),
        interceptors=interceptors,
        options=[*SERVER_OPTIONS, ("grpc.max_concurrent_streams", max_concurrent_streams)],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )


def build(settings: Settings, pepper: Pepper, store: KeyStore | None = None, worker: int | None = None) -> Runtime:
    """Create (but do not start) a serving process bound to ``settings.listen``."""
    store = store or SqlStore(settings.resolved_database_url())
    cache = VerifiedCache(
        max_entries=settings.cache_size,
        ttl=settings.cache_ttl,
        negative_max_entries=settings.cache_size,
        negative_ttl=settings.negative_ttl,
        memo_refusals=settings.refusal_memo_size,
    )
    usage = UsageRecorder(store, interval=settings.usage_flush)
    manager = credential_manager(store, pepper, cache, usage, outage_window=settings.outage_window)

    def on_change(key_id: str, change: str) -> None:
        # An "issued" change only matters to the negative cache: a verified entry of the same key is
        # read after the issue committed (and every later change has its own entry).
        if change == "issued":
            cache.forget_unknown(key_id)
        else:
            cache.invalidate(key_id)

    feed = ChangeFeedFollower(store, on_change, interval=settings.feed_interval)
    manager.follow(feed)

    metrics = Metrics(cache, feed.staleness) if settings.metrics_listen else None
    policy = load_policy(settings.policy_file, settings.tls_enabled)
    gate = CallGate(
        policy=policy,
        tls=settings.tls_enabled,
        throttle=Throttle(parse_rate(settings.throttle_caller), policy.throttled),
        resolve_admin=manager.authenticate_admin,
        audit=store.write_audit,
        metrics=metrics,
        access_log_enabled=settings.access_log,
        known_good=manager.cached_and_live,
    )
    # The gate wraps each handler once, at registration: as a server interceptor it would run on
    # every call, in the polling thread every call of the process goes through.
    server = new_grpc_server((), settings.max_concurrent_streams, settings.max_concurrent_rpcs, settings.threads)
    services = build_services(settings, manager, store) if isinstance(store, SqlDatabase) else None
    servicer = AuthServicer(manager, services)
    add_to_server(servicer, server, gate)
    envoy.add_to_server(envoy.AuthorizationServicer(manager, servicer.count_failure), server, gate)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            envoy.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if settings.tls_enabled:
        files = TlsFiles(Path(settings.tls_cert), Path(settings.tls_key), Path(settings.tls_client_ca))
        try:
            credentials = server_credentials(files)
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS files: {exc.strerror}") from None
        port = server.add_secure_port(settings.listen, credentials)
    else:
        port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise ConfigError(f"cannot listen on {settings.listen}")
    metrics_listen = None
    if metrics is not None:
        host, mport = split_listen(settings.metrics_listen)
        metrics_listen = (host, mport + worker if mport and worker else mport)
    return Runtime(
        settings,
        store,
        manager,
        feed,
        usage,
        server,
        health_servicer,
        port,
        gate=gate,
        metrics=metrics,
        metrics_listen=metrics_listen,
        services=services,
        servicer=servicer,
    )


def start(runtime: Runtime) -> Runtime:
    runtime.feed.start()
    runtime.usage.start()
    if runtime.services is not None:
        runtime.services.start()
    runtime.server.start()
    if runtime.metrics is not None and runtime.metrics_listen is not None:
        try:
            runtime.metrics.serve(*runtime.metrics_listen)
        except OSError as exc:
            runtime.server.stop(0)
            raise ConfigError(f"cannot serve metrics on {runtime.metrics_listen}: {exc.strerror}") from None
    for name in ("", SERVICE_NAME):
        runtime.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    threading.Thread(target=_watch_health, args=(runtime,), name="woes-auth-health", daemon=True).start()
    return runtime


def _watch_health(runtime: Runtime, every: float = 0.5) -> None:
    """NOT_SERVING while the process cannot serve at all: the store has been unreachable for longer
    than the outage window, so even cached credentials are refused (UNAVAILABLE). SERVING again as
    soon as the change feed reads the store."""
    serving = True
    while not runtime.stopped.wait(every):
        ok = runtime.feed.staleness() <= runtime.settings.outage_window
        if ok == serving:
            continue
        serving = ok
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        if ok:
            log.warning("health SERVING again: the credential store is reachable")
        else:
            log.error("health NOT_SERVING: the credential store has been unreachable past the outage window")
        for name in ("", SERVICE_NAME):
            runtime.health.set(name, status)
