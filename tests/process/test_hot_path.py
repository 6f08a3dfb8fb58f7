"""The Authenticate hot path across processes: revocation bound, usage at shutdown, negative cache, cache bound.

Separate `woes-auth serve` processes sharing one SQLite file are a faithful
model of the workers of one deployment: each has its own cache and follows the
store's change feed. Timings are measured and asserted against the configured
feed interval with a wide margin (this suite runs on a busy shared machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc
from woes.auth.v1 import resources_pb2 as res

from auth_service.app import runtime as server_mod
from auth_service.app.services import credential_manager
from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.crypto import Keyring, Pepper
from auth_service.domain.keys.rules import IssueSpec
from auth_service.store import SqlStore
from tests.conftest import MINTED, free_port, new_pepper_text, server_log_path, start_live_server
from tests.support.keys import record_issued_elsewhere
from tests.support.paths import ROOT
from tests.support.rich_errors import call_error, rich_error

FEED_INTERVAL = 0.25
# The bound a deployment states is the feed interval plus one poll's time; the
# assertion allows a wide margin for a loaded machine and still fails if the
# feed is not followed at all (the cache TTL is 300 s, the negative TTL 60 s).
REVOCATION_BOUND = 1.0 + 4 * FEED_INTERVAL


def _free_block(count: int) -> int:
    for _ in range(100):
        base = free_port()
        if base + count < 65535 and all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port block")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ServeProcess:
    """`woes-auth serve` in a subprocess, with its stats endpoint, logging to the scanned log folder."""

    def __init__(self, name: str, db_url: str, pepper_text: str, *, workers: int = 1, **env_extra: str):
        self.port = _free_block(1)
        self.workers = workers
        self.stats_port = _free_block(workers)
        env = dict(
            os.environ,
            WOES_AUTH_PEPPER=pepper_text,
            WOES_AUTH_DATABASE_URL=db_url,
            WOES_AUTH_FEED_INTERVAL=str(FEED_INTERVAL),
            WOES_AUTH_SHUTDOWN_GRACE="2",
            PYTHONPATH=str(ROOT),
        )
        env.update(env_extra)
        self.log_path = server_log_path(name)
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "auth_service.cli", "serve", "--workers", str(workers)]
        cmd += ["--listen", f"127.0.0.1:{self.port}", "--stats-port", str(self.stats_port), "--log-level", "DEBUG"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.stats()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server {name} did not start; see {self.log_path}") from None
                time.sleep(0.1)
        self.channel = self.new_channel(0)
        self.stub = pb_grpc.AuthServiceStub(self.channel)

    def new_channel(self, n: int) -> grpc.Channel:
        # Its own subchannel pool: a new TCP connection, which the kernel gives to one worker.
        return grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.use_local_subchannel_pool", 1), ("test.channel", n)]
        )

    def stats(self) -> list[dict]:
        out = []
        for i in range(self.workers):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port + i}/stats", timeout=5) as resp:
                out.append(json.loads(resp.read()))
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.channel.close()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def shared_db(tmp_path):
    """One SQLite file, one pepper, one admin credential: what the processes of a deployment share."""
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    pepper_text = new_pepper_text("hp1")
    store = SqlStore(url)
    admin = credential_manager(store, Pepper(Keyring.parse(pepper_text))).bootstrap_admin("hot path admin").secret
    store.close()
    return url, pepper_text, (("authorization", f"Bearer {admin}"),)


@pytest.fixture
def servers():
    started: list[ServeProcess] = []
    yield started
    for server in started:
        server.stop()


def _issue(stub, admin_md, workspace: str = "ws-hot") -> pb.IssueKeyResponse:
    issued = stub.IssueKey(
        pb.IssueKeyRequest(workspace_id=workspace, kind=res.KEY_KIND_SERVER, scopes=["conversations:read"]),
        metadata=admin_md,
        timeout=10,
    )
    MINTED.add(issued.secret)
    return issued


def _auth(stub, secret: str, caller: str = ""):
    return stub.Authenticate(pb.AuthenticateRequest(credential=secret, caller=caller), timeout=10)


def _seconds_until_refused(stub, secret: str, reason: str, limit: float) -> float:
    """Poll Authenticate until it is refused with ``reason``; seconds it took (fails after ``limit``)."""
    start = time.monotonic()
    while True:
        try:
            _auth(stub, secret)
        except grpc.RpcError as err:
            got = rich_error(err)
            assert got.reason == reason, got
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        assert elapsed < limit, f"still accepted {elapsed:.2f} s after the change (feed interval {FEED_INTERVAL} s)"
        time.sleep(0.01)


# -- revocation across processes ---------------------------------------------------


def test_revoke_through_one_process_is_refused_by_another_within_the_bound(shared_db, servers):
    url, pepper_text, admin_md = shared_db
    a = ServeProcess("hot-a", url, pepper_text)
    servers.append(a)
    b = ServeProcess("hot-b", url, pepper_text)
    servers.append(b)
    issued = _issue(a.stub, admin_md)
    assert _auth(b.stub, issued.secret).principal.key_id == issued.key.key_id  # now cached in B
    assert _auth(b.stub, issued.secret).principal.key_id == issued.key.key_id
    assert b.stats()[0]["cache"]["hits"] >= 1

    a.stub.Revoke(pb.RevokeRequest(key_id=issued.key.key_id, reason="test"), metadata=admin_md, timeout=10)
    # The process that revoked never accepts it again, not even once.
    assert call_error(_auth, a.stub, issued.secret).reason == "CREDENTIAL_REVOKED"
    took = _seconds_until_refused(b.stub, issued.secret, "CREDENTIAL_REVOKED", REVOCATION_BOUND)
    print(f"revocation reached the other process after {took:.3f} s (feed interval {FEED_INTERVAL} s)")
    assert took <= REVOCATION_BOUND


def test_rotate_through_one_process_ends_the_old_key_in_another_within_the_bound(shared_db, servers):
    url, pepper_text, admin_md = shared_db
    a = ServeProcess("hot-rot-a", url, pepper_text)
    servers.append(a)
    b = ServeProcess("hot-rot-b", url, pepper_text)
    servers.append(b)
    issued = _issue(a.stub, admin_md)
    _auth(b.stub, issued.secret)
    rotated = a.stub.Rotate(
        pb.RotateRequest(key_id=issued.key.key_id, grace_period={"seconds": 0}), metadata=admin_md, timeout=10
    )
    MINTED.add(rotated.secret)
    took = _seconds_until_refused(b.stub, issued.secret, "CREDENTIAL_EXPIRED", REVOCATION_BOUND)
    assert took <= REVOCATION_BOUND
    assert _auth(b.stub, rotated.secret).principal.key_id == rotated.key.key_id


def _channels_per_worker(server: ServeProcess, secret: str) -> list[grpc.Channel]:
    """One connection per worker, identified by which worker's call counter moved."""
    found: dict[int, grpc.Channel] = {}
    for n in range(1, 200):
        channel = server.new_channel(n)
        before = [s["authenticate"].get("ok", 0) for s in server.stats()]
        _auth(pb_grpc.AuthServiceStub(channel), secret)
        after = [s["authenticate"].get("ok", 0) for s in server.stats()]
        moved = [i for i in range(server.workers) if after[i] != before[i]]
        if len(moved) == 1 and moved[0] not in found:
            found[moved[0]] = channel
            if len(found) == server.workers:
                return [found[i] for i in range(server.workers)]
        else:
            channel.close()
    raise AssertionError("200 connections all went to the same worker")


def test_revoke_through_one_worker_is_refused_by_the_other_worker(shared_db, servers):
    url, pepper_text, admin_md = shared_db
    server = ServeProcess("hot-workers", url, pepper_text, workers=2)
    servers.append(server)
    issued = _issue(server.stub, admin_md)
    first, second = _channels_per_worker(server, issued.secret)
    stub_first, stub_second = pb_grpc.AuthServiceStub(first), pb_grpc.AuthServiceStub(second)
    # The issue itself reaches each worker's feed within the interval and drops what it cached so far.
    time.sleep(3 * FEED_INTERVAL)
    _auth(stub_first, issued.secret)
    _auth(stub_second, issued.secret)
    pids = [s["pid"] for s in server.stats()]
    assert pids[0] != pids[1]
    assert all(s["cache"]["entries"] >= 1 for s in server.stats())

    stub_first.Revoke(pb.RevokeRequest(key_id=issued.key.key_id, reason="test"), metadata=admin_md, timeout=10)
    assert call_error(_auth, stub_first, issued.secret).reason == "CREDENTIAL_REVOKED"
    took = _seconds_until_refused(stub_second, issued.secret, "CREDENTIAL_REVOKED", REVOCATION_BOUND)
    assert took <= REVOCATION_BOUND
    first.close()
    second.close()


# -- usage at shutdown ----------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_usage_counts_survive_a_graceful_stop(shared_db, servers, workers):
    url, pepper_text, admin_md = shared_db
    # A flush interval far beyond the test: only the flush at shutdown can write the counts.
    server = ServeProcess(f"hot-usage-{workers}", url, pepper_text, workers=workers, WOES_AUTH_USAGE_FLUSH="3600")
    servers.append(server)
    issued = _issue(server.stub, admin_md)
    channels = [server.new_channel(n) for n in range(1, 9)]  # spread over the workers
    for n in range(16):
        _auth(pb_grpc.AuthServiceStub(channels[n % len(channels)]), issued.secret, caller="svc-usage")
    for channel in channels:
        channel.close()
    assert sum(s["usage_pending_keys"] for s in server.stats()) >= 1
    assert server.stop() == 0

    again = ServeProcess(f"hot-usage-{workers}-after", url, pepper_text)
    servers.append(again)
    key = again.stub.GetKey(pb.GetKeyRequest(key_id=issued.key.key_id), metadata=admin_md, timeout=10).key
    assert key.use_count == 16
    assert key.last_caller == "svc-usage"
    assert key.HasField("last_used_time")


def test_every_worker_serves_with_the_tuned_collector(shared_db, servers):
    url, pepper_text, _admin_md = shared_db
    server = ServeProcess("hot-gc", url, pepper_text, workers=2)
    servers.append(server)
    for stat in server.stats():
        assert stat["gc"]["threshold"][0] == server_mod.GC_YOUNG_THRESHOLD
        # What start-up created is frozen: full collections never walk it again.
        assert stat["gc"]["frozen_objects"] > 10_000


# -- the negative cache ------------------------------------------------------------------


def test_negative_cache_never_hides_a_key_issued_after_the_miss(sqlite_url, pepper):
    srv = start_live_server(sqlite_url, pepper, feed_interval=FEED_INTERVAL)
    other = SqlStore(sqlite_url)  # another process of the deployment, writing to the same database
    try:
        cred = tokens.mint(tokens.KeyKind.SERVER)
        for _ in range(4):
            assert call_error(_auth, srv.stub, cred.token).reason == "CREDENTIAL_UNKNOWN"
        assert srv.manager.cache.negative_hits >= 3  # every refusal after the first came from the negative cache
        assert srv.manager.cache.memo.refusals() == 1  # the third on, from the memo's record of the request
        reads = srv.manager.store_reads

        other.insert_key(
            record_issued_elsewhere(cred, pepper), AuditEvent(action="key.issue", actor="test", outcome="ok")
        )
        start = time.monotonic()
        while True:
            try:
                got = _auth(srv.stub, cred.token)
                break
            except grpc.RpcError:
                assert time.monotonic() - start < REVOCATION_BOUND, "the negative cache hid a newly issued key"
                time.sleep(0.01)
        assert got.principal.key_id == cred.key_id
        assert srv.manager.store_reads > reads
    finally:
        other.close()
        srv.channel.close()
        srv.runtime.stop(0.5)


def test_a_miss_read_before_the_issue_is_not_cached_after_it(sqlite_url, pepper):
    """The race: a lookup reads "no such key", the key is issued and announced, then the lookup finishes."""
    srv = start_live_server(sqlite_url, pepper, feed_interval=3600)  # no feed poll interferes
    manager = srv.manager
    cred = tokens.mint(tokens.KeyKind.SERVER)
    read_done, issued = threading.Event(), threading.Event()
    real_get_key = manager.store.get_key

    def slow_get_key(key_id):
        record = real_get_key(key_id)
        if key_id == cred.key_id and record is None:
            read_done.set()
            assert issued.wait(10)
        return record

    manager.store.get_key = slow_get_key
    outcome: list = []
    lookup = threading.Thread(target=lambda: outcome.append(call_error(_auth, srv.stub, cred.token)))
    try:
        lookup.start()
        assert read_done.wait(10)
        manager.store.insert_key(
            record_issued_elsewhere(cred, pepper), AuditEvent(action="key.issue", actor="t", outcome="ok")
        )
        srv.runtime.feed.poll_once()  # what every process's feed thread does within its interval
        issued.set()
        lookup.join(10)
        assert outcome and outcome[0].reason == "CREDENTIAL_UNKNOWN"  # that call began before the key existed
        assert _auth(srv.stub, cred.token).principal.key_id == cred.key_id
    finally:
        issued.set()
        manager.store.get_key = real_get_key
        srv.channel.close()
        srv.runtime.stop(0.5)


# -- the cache bound ----------------------------------------------------------------------


def test_the_cache_bound_holds_under_a_real_server(sqlite_url, pepper):
    srv = start_live_server(sqlite_url, pepper, cache_size=40)
    try:
        cache = srv.manager.cache
        secrets_ = [_issue(srv.stub, srv.admin_md).secret for _ in range(100)]
        for _round in range(2):
            for secret in secrets_:
                assert _auth(srv.stub, secret).principal.workspace_id == "ws-hot"
                assert len(cache) <= 40
        unknown = [tokens.mint(tokens.KeyKind.SERVER).token for _ in range(150)]
        for token in unknown:
            assert call_error(_auth, srv.stub, token).reason == "CREDENTIAL_UNKNOWN"
        assert len(cache) <= 40
        assert cache.negative_size() <= 2 * 40  # two negative maps, each bounded like the cache
        # Evicted keys still authenticate: the bound costs a store read, never a wrong answer.
        assert _auth(srv.stub, secrets_[0]).principal.workspace_id == "ws-hot"
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)


# -- the probe in front of the gate -------------------------------------------------------------


def test_a_cached_credential_is_answered_by_the_probe_over_a_real_channel(live_server, monkeypatch):
    """Once cached, a valid credential never reaches the full rule; everything else still does."""
    srv = live_server
    manager = srv.runtime.manager
    secret = manager.issue_key("admin:test", _spec(("messages:read",))).secret
    request = pb.AuthenticateRequest(credential=secret, required_scopes=["messages:read"], caller="svc")
    first = srv.stub.Authenticate(request, timeout=10)
    full_calls = []
    real_authenticate = manager.authenticate
    monkeypatch.setattr(manager, "authenticate", lambda *a: full_calls.append(a) or real_authenticate(*a))
    for _ in range(5):
        assert srv.stub.Authenticate(request, timeout=10) == first
    assert full_calls == []
    # A refusal of a cached key (a scope it lacks) goes the full way, and its error is complete.
    denied = pb.AuthenticateRequest(credential=secret, required_scopes=["messages:write"])
    assert call_error(lambda: srv.stub.Authenticate(denied, timeout=10)).reason == "INSUFFICIENT_SCOPE"
    assert len(full_calls) == 1
    assert srv.runtime.servicer.authenticate_outcomes.snapshot() == {"ok": 6, "INSUFFICIENT_SCOPE": 1}
    # The 5 probe grants were counted once each, by the cache: as hits and, read back, as ok outcomes.
    assert manager.cache.probe_grants == 5
    # An unknown credential: the store answers once, the negative cache (through the probe) after that,
    # with the same complete error.
    unknown = pb.AuthenticateRequest(credential=tokens.mint(tokens.KeyKind.SERVER).token)
    errors = [call_error(lambda: srv.stub.Authenticate(unknown, timeout=10)) for _ in range(3)]
    assert {(e.code, e.reason, e.message) for e in errors} == {
        (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_UNKNOWN", "unknown credential")
    }
    assert len(full_calls) == 2


def _spec(scopes) -> IssueSpec:
    return IssueSpec("ws-probe", tokens.KeyKind.SERVER, scopes=tuple(scopes))
