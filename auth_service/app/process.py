"""The serving processes: configuration checks, one process or several workers, signals, exit codes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import make_url

from auth_service.app.config import Settings, is_loopback, load_pepper, log_key_source, split_listen
from auth_service.app.runtime import build, start, tune_gc
from auth_service.app.services import load_ring
from auth_service.domain.crypto import Pepper
from auth_service.domain.errors import ConfigError, StoreUnavailable
from auth_service.ops.stats import STATS_HOST, StatsEndpoint
from auth_service.store import SqlKekStore, SqlStore
from auth_service.store.migrate import SchemaNotCurrent

log = logging.getLogger("auth_service.server")


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def serve_one(settings: Settings, pepper: Pepper, worker: int | None = None) -> int:
    """Serve in this process until SIGTERM or SIGINT; returns the exit code."""
    stop_requested = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The schema was checked by serve() before any worker existed: never create it here.
    runtime = build(settings, pepper, SqlStore(settings.resolved_database_url(), create_schema=False), worker=worker)
    runtime.worker = worker
    tune_gc()
    start(runtime)
    if settings.stats_port:
        runtime.stats_endpoint = StatsEndpoint(runtime, settings.stats_port + (worker or 0)).start()
        log.info("stats on http://%s:%d/stats", STATS_HOST, runtime.stats_endpoint.port)
    host, _ = split_listen(settings.listen)
    if settings.tls_enabled:
        mode = "mTLS: client certificates signed by the client CA required"
    elif is_loopback(host):
        mode = "plaintext on loopback only; set WOES_AUTH_TLS_CERT/_KEY/_CLIENT_CA for mTLS"
    else:
        mode = "PLAINTEXT on a non-loopback address (allowed explicitly): put a TLS-terminating proxy in front"
    log.info(
        "serving woes.auth.v1.AuthService on %s:%d (%s)%s",
        host,
        runtime.port,
        mode,
        "" if worker is None else f" worker {worker}",
    )
    if runtime.gate is not None:
        log.info("caller %s", runtime.gate.policy.describe())
    if runtime.metrics is not None:
        log.info("metrics on http://%s:%d/metrics", runtime.metrics_listen[0], runtime.metrics.port)
    while not stop_requested.wait(0.5):
        pass
    runtime.stop()
    log.info("stopped")
    return 0


def serve(settings: Settings) -> int:
    settings.validate()
    settings.require_keys()  # every missing key named at once, before any development key is made
    pepper, note = load_pepper(settings, create=True)
    log_key_source(note, log)
    # Check the schema once, before any worker exists (and before any gRPC object: fork safety).
    check_schema(settings.resolved_database_url())
    schema_store = SqlStore(settings.resolved_database_url(), create_schema=False)
    try:
        _kek_ring, kek_note = load_ring(settings, SqlKekStore(schema_store), create=True)
    finally:
        schema_store.close()
    log_key_source(kek_note, log)
    log.info("database %s", safe_url(settings.resolved_database_url()))
    workers = settings.effective_workers()
    if workers == 1:
        return serve_one(settings, pepper)
    _, port = split_listen(settings.listen)
    if port == 0:
        raise ConfigError("several workers need a fixed port (they share it with SO_REUSEPORT)")
    return _supervise(settings, pepper, workers)


def check_schema(url: str) -> None:
    """Refuse to start on a schema older than the code (naming ``woes-auth db upgrade``); a new,
    empty embedded SQLite database gets its schema created (see :func:`auth_service.store.migrate.prepare`)."""
    store = SqlStore(url, create_schema=False)
    try:
        store.prepare_schema()
    except SchemaNotCurrent as exc:
        raise ConfigError(str(exc)) from None
    except StoreUnavailable:
        raise ConfigError(f"cannot reach the database {safe_url(url)}; check WOES_AUTH_DATABASE_URL") from None
    finally:
        store.close()


def _supervise(settings: Settings, pepper: Pepper, workers: int) -> int:
    return supervise(workers, lambda index: serve_one(settings, pepper, worker=index))


def supervise(workers: int, serve_worker: Callable[[int], int]) -> int:
    """Fork ``workers`` processes running ``serve_worker(index)``; restart any that dies; stop all on SIGTERM.

    ``serve_worker`` must create its gRPC objects itself (after the fork) and
    return its exit code when it receives SIGTERM.
    """
    children: dict[int, int] = {}
    stopping = threading.Event()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve_worker(index)
            except Exception:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index

    def on_signal(signum, _frame):
        stopping.set()
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("starting %d workers", workers)
    for index in range(workers):
        spawn(index)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping.is_set():
            if code != 0:
                exit_code = 1
            continue
        log.error("worker %d exited with %d; restarting it", index, code)
        time.sleep(1)
        if not stopping.is_set():
            spawn(index)
    return exit_code


def main_serve(settings: Settings) -> int:
    try:
        return serve(settings)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        print(f"woes-auth: {exc}", file=sys.stderr)
        return 2
