"""A revoke whose transaction commits late is applied by every other server all the same.

A writer holds its revoke's transaction open (its change's sequence number allocated, the row not
yet visible) while another change commits above it and for longer than the follower's gap timeout;
then it commits. The other server must refuse the credential within the feed's bound, on
PostgreSQL (where numbers commit out of order) whether notifications or polling deliver the
change, on SQLite (where writers are serialised), and for a server that started while the revoke
was still open.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from sqlalchemy import event
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc

from auth_service.app import runtime as server_mod
from auth_service.app.config import Settings
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.store import SqlStore
from tests.conftest import LiveServer, new_kek_text
from tests.support.rich_errors import rich_error
from tests.support.rpc import issue

BOUND = 2.0  # seconds: the stated bound (1 s) with room for a loaded machine
GAP_TIMEOUT = 0.5  # the followers' gap timeout, shortened so that holding past it takes a second


def _server(url: str, pepper, *, listen: bool = True, interval: float = 0.05) -> LiveServer:
    """A real server; without ``listen`` its follower polls only (no PostgreSQL notifications)."""
    settings = Settings(
        listen="127.0.0.1:0", database_url=url, shutdown_grace=1.0, shutdown_drain=0.0, kek=new_kek_text()
    )
    settings.feed_interval = interval
    runtime = server_mod.build(settings, pepper)
    if not listen:
        runtime.feed.listener = None
    runtime.feed.gap_timeout = GAP_TIMEOUT
    server_mod.start(runtime)
    admin = runtime.manager.bootstrap_admin("test admin").secret
    channel = grpc.insecure_channel(f"127.0.0.1:{runtime.port}")
    return LiveServer(runtime, channel, auth_service_pb2_grpc.AuthServiceStub(channel), admin)


def _close(*servers: LiveServer) -> None:
    for srv in servers:
        srv.channel.close()
        srv.runtime.stop(0.5)


def _outcome(srv: LiveServer, request: pb.AuthenticateRequest) -> str:
    try:
        srv.stub.Authenticate(request, timeout=10)
    except grpc.RpcError as err:
        return rich_error(err).reason or err.code().name
    return "OK"


class HeldRevoke:
    """A second store writer whose revoke stops just before its commit until released."""

    def __init__(self, url: str, key_id: str):
        self.store = SqlStore(url, create_schema=False)
        self.at_commit = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        event.listen(self.store._write, "commit", self._hold)
        self.thread = threading.Thread(target=self._revoke, args=(key_id,), daemon=True)

    def _hold(self, _conn) -> None:
        self.at_commit.set()
        assert self.release.wait(60), "the test never released the revoke"

    def _revoke(self, key_id: str) -> None:
        try:
            audit = AuditEvent(action="key.revoke", actor="other-writer", outcome="ok", key_id=key_id, time=utcnow())
            self.store.revoke(key_id, "late commit", utcnow(), audit)
        except BaseException as exc:  # reported by commit()
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        assert self.at_commit.wait(30), "the revoke never reached its commit"

    def commit(self) -> float:
        """Let the revoke commit; returns when it did (monotonic)."""
        self.release.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, self.error
        return time.monotonic()

    def close(self) -> None:
        self.release.set()
        self.thread.join(30)
        self.store.close()


def _issue_in_background(srv: LiveServer) -> threading.Thread:
    """Another change, committed while the revoke is held (on SQLite it waits for the revoke)."""
    thread = threading.Thread(target=issue, args=(srv,), daemon=True)
    thread.start()
    return thread


def _refused_within(srv: LiveServer, request: pb.AuthenticateRequest, since: float) -> float:
    """Seconds from ``since`` until ``srv`` refuses ``request`` as revoked (fails after 3 x BOUND)."""
    while True:
        outcome = _outcome(srv, request)
        waited = time.monotonic() - since
        if outcome != "OK":
            assert outcome == "CREDENTIAL_REVOKED"
            return waited
        assert waited < 3 * BOUND, "the other server still grants a credential whose revoke committed"
        time.sleep(0.02)


def _late_revoke_is_applied(url: str, pepper, *, listen: bool, interval: float) -> None:
    a = _server(url, pepper)
    b = _server(url, pepper, listen=listen, interval=interval)
    held = None
    try:
        issued = issue(a)
        request = pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:write"])
        for _ in range(3):  # cached by B, and its repeats granted from the request's bytes
            assert _outcome(b, request) == "OK"
        seen = b.runtime.feed.last_seq
        held = HeldRevoke(url, issued.key.key_id)
        held.start()
        other = _issue_in_background(a)
        if a.runtime.store.dialect == "postgresql":
            # The other change commits above the held one: B sees a gap in the sequence.
            deadline = time.monotonic() + 10
            while b.runtime.feed.last_seq < seen + 2:
                assert time.monotonic() < deadline, "B never saw the change above the held one"
                time.sleep(0.02)
        time.sleep(GAP_TIMEOUT * 4)  # held well past the gap timeout, B polling (or woken) meanwhile
        assert _outcome(b, request) == "OK"  # not revoked yet: nothing committed
        committed = held.commit()
        other.join(30)
        assert _refused_within(b, request, committed) < BOUND
        assert _outcome(a, request) == "CREDENTIAL_REVOKED"
    finally:
        if held is not None:
            held.close()
        _close(a, b)


@pytest.mark.parametrize(
    ("listen", "interval"),
    [pytest.param(True, 60.0, id="notified"), pytest.param(False, 0.05, id="polling")],
)
def test_a_revoke_committed_after_the_gap_timeout_is_applied_on_postgresql(postgres_url, pepper, listen, interval):
    _late_revoke_is_applied(postgres_url, pepper, listen=listen, interval=interval)


def test_a_revoke_held_past_the_gap_timeout_is_applied_on_sqlite(sqlite_url, pepper):
    """SQLite serialises writers: the other change waits for the revoke, so there is no gap at all."""
    _late_revoke_is_applied(sqlite_url, pepper, listen=False, interval=0.05)


def test_a_server_started_while_a_revoke_is_open_applies_it_on_postgresql(postgres_url, pepper):
    """B starts after a change above the held revoke committed: the feed's end is past the revoke."""
    a = _server(postgres_url, pepper)
    held = None
    b = None
    try:
        issued = issue(a)
        request = pb.AuthenticateRequest(credential=issued.secret)
        held = HeldRevoke(postgres_url, issued.key.key_id)
        held.start()
        issue(a)  # commits above the held revoke
        b = _server(postgres_url, pepper)
        assert b.runtime.feed.last_seq > 0
        for _ in range(3):
            assert _outcome(b, request) == "OK"  # read and cached while the revoke is open
        time.sleep(GAP_TIMEOUT * 4)
        committed = held.commit()
        assert _refused_within(b, request, committed) < BOUND
    finally:
        if held is not None:
            held.close()
        _close(a, *([b] if b is not None else []))
