"""A PostgreSQL outage, made with a TCP proxy between the server and the database (never by stopping it).

What must hold (README, "Running in production"):
- a credential verified recently keeps authenticating from the cache for the outage window, then is
  refused with UNAVAILABLE too;
- whatever needs the store answers UNAVAILABLE (reason STORE_UNAVAILABLE): never UNAUTHENTICATED, never
  OK for a credential the process has not verified; admin RPCs likewise;
- health stays SERVING while cached credentials are served and turns NOT_SERVING past the window;
- nothing hangs; service resumes within 5 s of the database returning, without a restart;
- usage counted during the outage is written afterwards.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import tokens
from auth_service.store import SqlStore
from tests.conftest import start_live_server
from tests.support.cluster import TcpProxy, wait_for, with_port
from tests.support.rich_errors import call_error

OUTAGE_WINDOW = 4.0
CALL_TIMEOUT = 30.0  # a call that takes this long has hung: the assertions below demand far less


@pytest.fixture
def proxied(postgres_url, pepper):
    SqlStore(postgres_url).close()  # migrate through the direct path
    proxy = TcpProxy("127.0.0.1", make_url(postgres_url).port)
    srv = start_live_server(
        with_port(postgres_url, proxy.port),
        pepper,
        outage_window=OUTAGE_WINDOW,
        usage_flush=0.5,
        feed_interval=0.25,
    )
    yield srv, proxy
    proxy.restore()
    srv.channel.close()
    srv.runtime.stop(0.5)
    proxy.close()


def _issue(srv, workspace="ws-outage"):
    return srv.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id=workspace, kind=res.KEY_KIND_SERVER, scopes=["conversations:read"]),
        metadata=srv.admin_md,
        timeout=CALL_TIMEOUT,
    )


def _settle(srv) -> None:
    """Wait until the feed has read every change so far (an 'issued' change drops the key from the cache)."""
    latest = srv.runtime.store.latest_change()
    wait_for(lambda: srv.runtime.feed.last_seq >= latest, 10, what="the change feed to catch up")


def _auth(srv, secret):
    return srv.stub.Authenticate(pb.AuthenticateRequest(credential=secret, caller="svc-a"), timeout=CALL_TIMEOUT)


def _outcome(srv, secret) -> str:
    """ "OK" or the error reason of an Authenticate call."""
    try:
        _auth(srv, secret)
    except grpc.RpcError as err:
        from tests.support.rich_errors import rich_error

        return rich_error(err).reason or err.code().name
    return "OK"


def _health(srv) -> int:
    return (
        health_pb2_grpc.HealthStub(srv.channel)
        .Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT)
        .status
    )


def _unavailable(fn, *args, **kwargs):
    started = time.monotonic()
    err = call_error(fn, *args, timeout=CALL_TIMEOUT, **kwargs)
    took = time.monotonic() - started
    assert err.code is grpc.StatusCode.UNAVAILABLE, (err.code, err.reason, err.message)
    assert err.reason == "STORE_UNAVAILABLE"
    assert took < 15, f"a call took {took:.1f} s during the outage"
    return err


def test_a_database_outage_and_recovery(proxied):
    srv, proxy = proxied
    cached = _issue(srv)
    uncached = _issue(srv)
    _settle(srv)
    assert _auth(srv, cached.secret).principal.key_id == cached.key.key_id  # now cached here
    never_stored = tokens.mint(tokens.KeyKind.SERVER).token  # well-formed, checksum valid, unknown
    srv.runtime.usage.flush()
    before = srv.stub.GetKey(pb.GetKeyRequest(key_id=cached.key.key_id), metadata=srv.admin_md).key.use_count

    proxy.cut()
    cut_at = time.monotonic()

    # Inside the window: the cached credential still authenticates...
    served_during_outage = 0
    for _ in range(20):
        assert _auth(srv, cached.secret).principal.key_id == cached.key.key_id
        served_during_outage += 1
    assert time.monotonic() - cut_at < OUTAGE_WINDOW, "the machine was too slow to test inside the window"
    # ...while anything needing the store is UNAVAILABLE, never UNAUTHENTICATED or OK.
    _unavailable(srv.stub.Authenticate, pb.AuthenticateRequest(credential=uncached.secret))
    _unavailable(srv.stub.Authenticate, pb.AuthenticateRequest(credential=never_stored))
    _unavailable(
        srv.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=tokens.mint(tokens.KeyKind.WIDGET).token)
    )
    admin = {"metadata": srv.admin_md}
    _unavailable(
        srv.stub.IssueKey,
        pb.IssueKeyRequest(workspace_id="ws-outage", kind=res.KEY_KIND_SERVER, scopes=["conversations:read"]),
        **admin,
    )
    _unavailable(srv.stub.GetKey, pb.GetKeyRequest(key_id=cached.key.key_id), **admin)
    _unavailable(srv.stub.ListKeys, pb.ListKeysRequest(workspace_id="ws-outage"), **admin)
    _unavailable(srv.stub.Rotate, pb.RotateRequest(key_id=cached.key.key_id), **admin)
    _unavailable(srv.stub.Revoke, pb.RevokeRequest(key_id=cached.key.key_id), **admin)
    # Malformed input needs no store and is refused as usual.
    assert call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential="woes_sk_nonsense")).code is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # Cached credentials are still served, so the replica reports SERVING.
    if time.monotonic() - cut_at < OUTAGE_WINDOW - 0.5:
        assert _health(srv) == health_pb2.HealthCheckResponse.SERVING

    # Past the window the cache is no longer trusted: refused with UNAVAILABLE, and health says so.
    wait_for(
        lambda: _health(srv) == health_pb2.HealthCheckResponse.NOT_SERVING,
        OUTAGE_WINDOW + 10,
        what="health NOT_SERVING past the outage window",
    )
    assert time.monotonic() - cut_at >= OUTAGE_WINDOW
    _unavailable(srv.stub.Authenticate, pb.AuthenticateRequest(credential=cached.secret))

    # The database returns: everything works again within 5 s, without a restart.
    proxy.restore()
    restored_at = time.monotonic()

    def all_back():
        try:
            _auth(srv, cached.secret)
            _auth(srv, uncached.secret)
            srv.stub.GetKey(pb.GetKeyRequest(key_id=uncached.key.key_id), metadata=srv.admin_md, timeout=5)
        except grpc.RpcError:
            return False
        return _health(srv) == health_pb2.HealthCheckResponse.SERVING

    wait_for(all_back, 5.0, every=0.1, what="service to resume within 5 s of the database returning")
    resumed_after = time.monotonic() - restored_at
    assert resumed_after < 5.0
    assert call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential=never_stored)).reason == (
        "CREDENTIAL_UNKNOWN"
    )

    # Usage counted from the cache during the outage was kept and written afterwards.
    def usage_written():
        key = srv.stub.GetKey(pb.GetKeyRequest(key_id=cached.key.key_id), metadata=srv.admin_md).key
        return key.use_count >= before + served_during_outage

    wait_for(usage_written, 10, every=0.2, what="usage from the outage to be written")


def test_a_slow_database_delays_store_calls_but_not_cached_authentication(proxied):
    srv, proxy = proxied
    cached = _issue(srv)
    other = _issue(srv)
    _settle(srv)
    _auth(srv, cached.secret)
    proxy.set_delay(1.0)
    results: dict[str, object] = {}

    def slow_get():
        key = srv.stub.GetKey(pb.GetKeyRequest(key_id=other.key.key_id), metadata=srv.admin_md, timeout=CALL_TIMEOUT)
        results["get"] = (key.key.key_id, time.monotonic())

    thread = threading.Thread(target=slow_get)
    thread.start()
    time.sleep(0.2)
    for _ in range(10):
        assert _auth(srv, cached.secret).principal.key_id == cached.key.key_id
    authenticated_at = time.monotonic()
    thread.join(CALL_TIMEOUT)
    assert results["get"][0] == other.key.key_id  # slow, but correct
    assert authenticated_at < results["get"][1]  # the hot path never waited for the slow database
    proxy.restore()

    def answers():
        try:
            return srv.stub.GetKey(pb.GetKeyRequest(key_id=other.key.key_id), metadata=srv.admin_md, timeout=5)
        except grpc.RpcError:
            return None

    # Polls slower than the outage window made even cached credentials untrusted; that ends with the delay.
    assert wait_for(answers, 10, every=0.1, what="the service to be back to normal").key.key_id == other.key.key_id


def test_revocation_during_the_outage_window_is_not_lost(proxied, postgres_url, pepper):
    """A key revoked through another replica while this one is cut off is refused once it reconnects."""
    from auth_service.app.services import credential_manager

    srv, proxy = proxied
    cached = _issue(srv)
    _settle(srv)
    _auth(srv, cached.secret)
    proxy.cut()
    other_replica = SqlStore(postgres_url, create_schema=False)  # reaches the database directly
    try:
        credential_manager(other_replica, pepper).revoke("admin:other", cached.key.key_id, "compromised")
    finally:
        other_replica.close()
    proxy.restore()
    wait_for(
        lambda: _outcome(srv, cached.secret) == "CREDENTIAL_REVOKED",
        5.0,
        every=0.1,
        what="the revocation to reach the reconnected replica",
    )
