"""Limits: each refuses with a clear status (message size, credential length, scopes, origins, concurrency)."""

from __future__ import annotations

import threading

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc
from woes.auth.v1 import resources_pb2 as res

from auth_service.app import runtime as server_mod
from auth_service.app.config import Settings
from auth_service.domain import scopes as scope_registry
from auth_service.domain import tokens
from auth_service.domain.keys.rules import MAX_ORIGINS, MAX_REQUIRED_SCOPES
from auth_service.domain.tokens import KeyKind
from auth_service.store import SqlStore
from tests.support.rich_errors import call_error

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def test_oversized_message_is_refused_before_the_servicer(live_server):
    err = call_error(live_server.stub.Authenticate, pb.AuthenticateRequest(credential="x" * 100_000), timeout=10)
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in err.message
    # Just under the transport limit the request reaches the servicer and meets the credential limit.
    err = call_error(live_server.stub.Authenticate, pb.AuthenticateRequest(credential="x" * 60_000), timeout=10)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_MALFORMED")


def test_largest_valid_request_fits(live_server):
    origins = [f"https://{'a' * 60}{n}.example.com:8443" for n in range(MAX_ORIGINS)]
    got = live_server.stub.IssueKey(
        pb.IssueKeyRequest(
            workspace_id="w" * 64, kind=res.KEY_KIND_WIDGET, display_name="d" * 100, allowed_origins=origins
        ),
        metadata=live_server.admin_md,
        timeout=10,
    )
    assert len(got.key.allowed_origins) == MAX_ORIGINS


def test_credential_length_limit(live_server):
    err = call_error(
        live_server.stub.Authenticate, pb.AuthenticateRequest(credential="woes_sk_" + "a" * 300), timeout=10
    )
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_MALFORMED")
    assert str(tokens.MAX_CREDENTIAL_LEN) in err.message


def test_scopes_per_key_limit(live_server):
    too_many = ["conversations:read"] * (scope_registry.MAX_SCOPES_PER_KEY + 1)
    err = call_error(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(workspace_id="ws", kind=res.KEY_KIND_SERVER, scopes=too_many),
        metadata=live_server.admin_md,
        timeout=10,
    )
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert err.violations == [("scopes", f"at most {scope_registry.MAX_SCOPES_PER_KEY} scopes")]


def test_origins_per_key_limit(live_server):
    origins = [f"https://site{n}.example" for n in range(MAX_ORIGINS + 1)]
    err = call_error(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(workspace_id="ws", kind=res.KEY_KIND_WIDGET, allowed_origins=origins),
        metadata=live_server.admin_md,
        timeout=10,
    )
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert err.violations == [("allowed_origins", f"at most {MAX_ORIGINS} origins")]


def test_required_scopes_limit(live_server):
    err = call_error(
        live_server.stub.Authenticate,
        pb.AuthenticateRequest(
            credential="woes_sk_x", required_scopes=["conversations:read"] * (MAX_REQUIRED_SCOPES + 1)
        ),
        timeout=10,
    )
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert ("required_scopes", f"at most {MAX_REQUIRED_SCOPES} scopes") in err.violations


# -- concurrency ----------------------------------------------------------------------


class GateStore(SqlStore):
    """A real SQLite store whose lookups of key ids starting with BLOCK wait for a release."""

    def __init__(self, url: str):
        super().__init__(url)
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.inside = 0
        self.max_inside = 0

    def get_key(self, key_id):
        if key_id.startswith("BLOCK"):
            with self._lock:
                self.inside += 1
                self.max_inside = max(self.max_inside, self.inside)
            self.entered.release()
            self.release.wait(30)
            with self._lock:
                self.inside -= 1
        return super().get_key(key_id)


def _blocking_credential(n: int) -> str:
    return tokens.mint(KeyKind.SERVER, f"BLOCK{n:07d}").token


@pytest.fixture
def gated(sqlite_url, pepper):
    started = []

    def start(**overrides):
        settings = Settings(listen="127.0.0.1:0", database_url=sqlite_url, shutdown_grace=1.0)
        for name, value in overrides.items():
            setattr(settings, name, value)
        store = GateStore(sqlite_url)
        runtime = server_mod.start(server_mod.build(settings, pepper, store=store))
        started.append(runtime)
        return runtime, store

    yield start
    for runtime in started:
        runtime.store.release.set()
        runtime.stop(0.5)


def test_concurrent_rpc_limit_refuses_with_resource_exhausted(gated):
    runtime, store = gated(max_concurrent_rpcs=2)
    with grpc.insecure_channel(f"127.0.0.1:{runtime.port}") as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        held = [
            stub.Authenticate.future(pb.AuthenticateRequest(credential=_blocking_credential(n)), timeout=30)
            for n in range(2)
        ]
        assert store.entered.acquire(timeout=20) and store.entered.acquire(timeout=20)
        err = call_error(stub.Authenticate, pb.AuthenticateRequest(credential=_blocking_credential(9)), timeout=10)
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Concurrent RPC limit exceeded" in err.message
        store.release.set()
        for future in held:
            assert future.exception().code() is grpc.StatusCode.UNAUTHENTICATED  # unknown key, answered normally
    assert store.max_inside == 2


def test_concurrent_stream_limit_queues_calls_of_one_connection(gated):
    runtime, store = gated(max_concurrent_streams=1)
    target = f"127.0.0.1:{runtime.port}"
    with (
        grpc.insecure_channel(target, options=OWN_CONNECTION) as one,
        grpc.insecure_channel(target, options=OWN_CONNECTION) as two,
    ):
        a = auth_service_pb2_grpc.AuthServiceStub(one)
        first = a.Authenticate.future(pb.AuthenticateRequest(credential=_blocking_credential(1)), timeout=30)
        assert store.entered.acquire(timeout=20)
        second = a.Authenticate.future(pb.AuthenticateRequest(credential=_blocking_credential(2)), timeout=30)
        # The second call of the same connection waits for a stream slot: it does not reach the servicer ...
        assert not store.entered.acquire(timeout=1.0)
        # ... while a call on another connection does.
        other = auth_service_pb2_grpc.AuthServiceStub(two).Authenticate.future(
            pb.AuthenticateRequest(credential=_blocking_credential(3)), timeout=30
        )
        assert store.entered.acquire(timeout=20)
        assert store.inside == 2
        store.release.set()
        for future in (first, second, other):
            assert future.exception().code() is grpc.StatusCode.UNAUTHENTICATED
    assert store.max_inside == 2
