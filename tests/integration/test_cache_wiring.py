"""The server's configured cache is the one Authenticate uses, so the change feed really invalidates it.

Regression: CredentialManager once replaced an empty (and so falsy: it has ``__len__``) cache by a new
default one; the change feed then invalidated a cache nobody read, and a revocation made by another
process went unnoticed until the cache entry aged out.
"""

from __future__ import annotations

import time

import grpc
from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.app.services import credential_manager
from auth_service.domain.keys.rules import IssueSpec
from auth_service.domain.tokens import KeyKind
from tests.conftest import start_live_server
from tests.support.rich_errors import call_error


def test_configured_cache_is_used_and_followed_by_the_feed(sqlite_url, pepper):
    srv = start_live_server(sqlite_url, pepper, cache_size=1234, feed_interval=0.05)
    try:
        assert srv.manager.cache.max_entries == 1234
        issued = srv.manager.issue_key(
            "test", IssueSpec(workspace_id="ws-c", kind=KeyKind.SERVER, scopes=("conversations:read",))
        )
        srv.stub.Authenticate(pb.AuthenticateRequest(credential=issued.secret), timeout=10)
        assert len(srv.manager.cache) == 1
        # Another process (its own manager and cache, same database) revokes the key.
        credential_manager(srv.runtime.store, pepper).revoke("other-process", issued.key.key_id, "test")
        deadline = time.monotonic() + 20
        while True:
            err = None
            try:
                srv.stub.Authenticate(pb.AuthenticateRequest(credential=issued.secret), timeout=10)
            except grpc.RpcError:
                err = call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential=issued.secret), timeout=10)
            if err is not None:
                break
            assert time.monotonic() < deadline, "the revocation never reached this process's cache"
            time.sleep(0.05)
        assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_REVOKED")
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)


def test_the_server_grants_a_repeated_request_from_its_bytes_until_a_revoke(sqlite_url, pepper):
    """On the real server (plaintext, no policy, no access log) Authenticate's first frame takes
    the request's bytes: a repeat of a granted request is granted from the memo, and a revocation
    through this process refuses the very next repeat."""
    srv = start_live_server(sqlite_url, pepper)
    try:
        issued = srv.manager.issue_key(
            "test", IssueSpec(workspace_id="ws-c", kind=KeyKind.SERVER, scopes=("conversations:read",))
        )
        request = pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:read"], caller="s")
        first = srv.stub.Authenticate(request, timeout=10)  # the store read, then cached
        srv.stub.Authenticate(request, timeout=10)  # the probe grants it, and remembers its bytes
        assert len(srv.manager.cache.memo) == 1
        grants = srv.manager.cache.probe_grants
        for _ in range(3):
            assert srv.stub.Authenticate(request, timeout=10) == first
        assert srv.manager.cache.probe_grants == grants + 3
        assert len(srv.manager.cache.memo) == 1
        srv.manager.revoke("test", issued.key.key_id, "test")
        err = call_error(srv.stub.Authenticate, request, timeout=10)
        assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_REVOKED")
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
