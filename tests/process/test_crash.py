"""kill -9 of a replica in the middle of writes: nothing half-done, nothing acknowledged lost."""

from __future__ import annotations

import threading
import time

import grpc
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from tests import conftest
from tests.support.cluster import Cluster, chain_problems, wait_for
from tests.support.rich_errors import rich_error

WORKERS = 4


def test_kill_9_while_issuing_rotating_and_revoking(postgres_url, tmp_path):
    c = Cluster(postgres_url, tmp_path)
    replica = c.replica("replica-crash")
    stub = replica.stub
    md = c.admin_md
    lock = threading.Lock()
    issued: dict[str, tuple[str, str]] = {}  # key id -> (workspace, secret), acknowledged
    rotated: dict[str, tuple[str, str]] = {}  # old key id -> (new key id, new secret), acknowledged
    revoked: set[str] = set()  # acknowledged
    unanswered: list[str] = []  # request ids of IssueKey calls without an answer
    acknowledged = [0]
    stop = threading.Event()

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            request_id = f"crash-{n}-{i}"
            workspace = f"ws-crash-{n}"
            try:
                got = stub.IssueKey(
                    pb.IssueKeyRequest(
                        workspace_id=workspace,
                        kind=res.KEY_KIND_SERVER,
                        scopes=["customers:read"],
                        request_id=request_id,
                    ),
                    metadata=md,
                    timeout=10,
                )
            except (grpc.RpcError, ValueError):
                with lock:
                    unanswered.append(request_id)
                return  # the replica is gone: this worker's last call is the one in flight at the kill
            conftest.MINTED.add(got.secret)
            with lock:
                issued[got.key.key_id] = (workspace, got.secret)
                acknowledged[0] += 1
            try:
                new = stub.Rotate(pb.RotateRequest(key_id=got.key.key_id), metadata=md, timeout=10)
            except (grpc.RpcError, ValueError):
                return
            conftest.MINTED.add(new.secret)
            with lock:
                rotated[got.key.key_id] = (new.key.key_id, new.secret)
                acknowledged[0] += 1
            try:
                stub.Revoke(pb.RevokeRequest(key_id=new.key.key_id, reason="crash test"), metadata=md, timeout=10)
            except (grpc.RpcError, ValueError):
                return
            with lock:
                revoked.add(new.key.key_id)
                acknowledged[0] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    wait_for(lambda: acknowledged[0] >= 150, 120, what="the write loop to get going")
    replica.kill9()  # SIGKILL in the middle of the loop: no shutdown, no flush
    killed_at = time.monotonic()
    stop.set()
    for t in threads:
        t.join(30)
    assert time.monotonic() - killed_at < 30

    replica.start()  # the same replica again, on the same port and database
    store = c.store()
    try:
        problems = chain_problems(store)
        assert problems == [], problems[:10]
        for key_id, (workspace, _secret) in issued.items():
            key = store.get_key(key_id)
            assert key is not None and key.workspace_id == workspace, key_id
        for old_id, (new_id, _secret) in rotated.items():
            old, new = store.get_key(old_id), store.get_key(new_id)
            assert old.rotated_to == new_id and old.stored_state.value == "rotated"
            assert new is not None and new.rotated_from == old_id
        for key_id in revoked:
            assert store.get_key(key_id).stored_state.value == "revoked"

        # Calls that got no answer may or may not have happened; retried with their request id,
        # each ends with exactly one key.
        for request_id in unanswered:
            workspace = "ws-crash-" + request_id.split("-")[1]
            again = replica.stub.IssueKey(
                pb.IssueKeyRequest(
                    workspace_id=workspace, kind=res.KEY_KIND_SERVER, scopes=["customers:read"], request_id=request_id
                ),
                metadata=md,
                timeout=30,
            )
            if again.secret:
                conftest.MINTED.add(again.secret)
        per_request: dict[str, int] = {}
        for key in store.list_keys("", 1_000_000, None):
            if key.request_id:
                per_request[key.request_id] = per_request.get(key.request_id, 0) + 1
        assert all(n == 1 for n in per_request.values())
        assert set(unanswered) <= set(per_request)
        assert chain_problems(store) == []
    finally:
        store.close()

    # The restarted replica answers as the store says.
    old_id, (new_id, new_secret) = next(iter(rotated.items()))
    old_secret = issued[old_id][1]
    replica.stub.Authenticate(pb.AuthenticateRequest(credential=old_secret), timeout=10)  # in its rotation grace
    if new_id in revoked:
        try:
            replica.stub.Authenticate(pb.AuthenticateRequest(credential=new_secret), timeout=10)
            raise AssertionError("a revoked credential authenticated after the restart")
        except grpc.RpcError as err:
            assert rich_error(err).reason == "CREDENTIAL_REVOKED"
    print(
        f"acknowledged {len(issued)} issues, {len(rotated)} rotations, {len(revoked)} revocations; "
        f"{len(unanswered)} issue calls unanswered at the kill"
    )
    c.stop()
