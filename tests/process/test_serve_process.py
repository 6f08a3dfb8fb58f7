"""``woes-auth serve`` as a real process: starts, serves, drains on SIGTERM, and guards its pepper."""

from __future__ import annotations

import queue
import signal
import sqlite3
import stat
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc
from woes.auth.v1 import resources_pb2 as res

from tests import conftest
from tests.support.grpcurl import grpcurl
from tests.support.process import base_env, bootstrap_admin, cli, health, start_serve

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _remember_dev_pepper(data_dir) -> str:
    text = (data_dir / "dev-pepper").read_text().strip()
    for entry in text.split(","):
        conftest.OTHER_SECRETS.add(entry.split(":", 1)[1])
    return text


def test_serve_without_pepper_creates_a_private_dev_pepper_and_serves(tmp_path):
    server = start_serve(tmp_path)
    try:
        out = grpcurl(server.target, "grpc.health.v1.Health/Check")
        assert out.returncode == 0, out.stderr
        assert '"SERVING"' in out.stdout
        pepper_file = tmp_path / "dev-pepper"
        assert stat.S_IMODE(pepper_file.stat().st_mode) == 0o600
        pepper = _remember_dev_pepper(tmp_path)
        assert (tmp_path / "woes-auth.db").exists()
        log = server.log()
        assert "created a DEVELOPMENT pepper" in log and "(0600)" in log
        assert "plaintext on loopback only" in log
        assert pepper.split(":", 1)[1] not in log
    finally:
        assert server.stop() == 0
    # A second start reuses the file and says so.
    again = start_serve(tmp_path)
    try:
        assert "using the DEVELOPMENT pepper" in again.log()
        assert _remember_dev_pepper(tmp_path) == pepper
    finally:
        assert again.stop() == 0


def test_a_dev_pepper_readable_by_others_is_refused(tmp_path):
    first = start_serve(tmp_path)
    assert first.stop() == 0
    _remember_dev_pepper(tmp_path)
    (tmp_path / "dev-pepper").chmod(0o644)
    out = cli("serve", env=base_env(tmp_path, WOES_AUTH_LISTEN=f"127.0.0.1:{conftest.free_port()}"))
    assert out.returncode == 2
    assert "readable by others" in out.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_production_without_a_pepper_refuses_to_start(tmp_path, how):
    env = base_env(tmp_path, WOES_AUTH_LISTEN=f"127.0.0.1:{conftest.free_port()}")
    args = ["serve"]
    if how == "flag":
        args.append("--production")
    else:
        env["WOES_AUTH_PRODUCTION"] = "true"
    out = cli(*args, env=env, timeout=60)
    assert out.returncode == 2
    assert "production mode needs a pepper" in out.stderr
    assert "WOES_AUTH_PEPPER" in out.stderr
    assert not (tmp_path / "dev-pepper").exists()


def test_production_with_a_configured_pepper_serves_and_never_logs_it(tmp_path):
    pepper = conftest.new_pepper_text("prod1")
    kek = conftest.new_kek_text("prodkek1")
    server = start_serve(tmp_path, "--production", WOES_AUTH_PEPPER=pepper, WOES_AUTH_KEK=kek)
    try:
        assert health(server.target) == SERVING
        log = server.log()
        assert "pepper from WOES_AUTH_PEPPER" in log
        assert pepper.split(":", 1)[1] not in log
        assert kek.split(":", 1)[1] not in log
        assert not (tmp_path / "dev-pepper").exists()
        assert not (tmp_path / "dev-kek").exists()
    finally:
        assert server.stop() == 0


def test_pepper_file_is_read(tmp_path):
    pepper_file = tmp_path / "pepper"
    pepper_file.write_text(conftest.new_pepper_text("file1") + "," + conftest.new_pepper_text("old0") + "\n")
    pepper_file.chmod(0o600)
    server = start_serve(
        tmp_path, "--production", WOES_AUTH_PEPPER_FILE=str(pepper_file), WOES_AUTH_KEK=conftest.new_kek_text()
    )
    try:
        assert health(server.target) == SERVING
        assert "pepper from file" in server.log()
    finally:
        assert server.stop() == 0


def test_a_non_loopback_listen_address_is_refused(tmp_path):
    out = cli("serve", "--listen", "0.0.0.0:0", env=base_env(tmp_path))
    assert out.returncode == 2
    assert "non-loopback" in out.stderr


def test_sigterm_turns_health_not_serving_finishes_the_inflight_call_and_exits_0(tmp_path):
    server = start_serve(tmp_path, WOES_AUTH_SHUTDOWN_GRACE="30")
    admin = bootstrap_admin(tmp_path)
    channel = grpc.insecure_channel(server.target)
    watch = None
    lock = None
    try:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        md = (("authorization", f"Bearer {admin}"),)
        # The server works before the signal.
        issued = stub.IssueKey(
            pb.IssueKeyRequest(workspace_id="ws-term", kind=res.KEY_KIND_SERVER, scopes=["messages:read"]),
            metadata=md,
            timeout=30,
        )
        conftest.MINTED.add(issued.secret)

        statuses: queue.Queue = queue.Queue()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)

        def follow():
            try:
                for update in watch:
                    statuses.put(update.status)
            except grpc.RpcError:
                statuses.put(None)

        threading.Thread(target=follow, daemon=True).start()
        assert statuses.get(timeout=30) == SERVING

        # Hold the database's write lock so that the next IssueKey stays in flight inside the server.
        lock = sqlite3.connect(tmp_path / "woes-auth.db", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        inflight = stub.IssueKey.future(
            pb.IssueKeyRequest(workspace_id="ws-term", kind=res.KEY_KIND_SERVER, scopes=["messages:write"]),
            metadata=md,
            timeout=90,
        )
        time.sleep(2)  # generous time for the call to reach its handler; it then waits for the lock
        assert not inflight.done()

        server.proc.send_signal(signal.SIGTERM)
        assert statuses.get(timeout=30) == NOT_SERVING
        time.sleep(0.5)
        assert server.proc.poll() is None, "the process exited with a call still in flight"

        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        done = inflight.result(timeout=60)  # the in-flight call finishes successfully
        conftest.MINTED.add(done.secret)
        assert done.key.workspace_id == "ws-term"
        watch.cancel()
        assert server.proc.wait(60) == 0
        log = server.log()
        assert "received SIGTERM" in log
        assert '"stopped"' in log
    finally:
        if lock is not None:
            lock.close()
        if watch is not None:
            watch.cancel()
        channel.close()
        server.stop()


def test_sigterm_with_several_workers_exits_0(tmp_path):
    server = start_serve(tmp_path, WOES_AUTH_WORKERS="2")
    try:
        out = grpcurl(server.target, "grpc.health.v1.Health/Check")
        assert '"SERVING"' in out.stdout, out.stderr
        assert "starting 2 workers" in server.log()
    finally:
        _remember_dev_pepper(tmp_path)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0
    assert server.log().count('"stopped"') == 2


def test_after_sigterm_a_polling_health_check_sees_not_serving_during_the_drain(tmp_path):
    server = start_serve(tmp_path, WOES_AUTH_SHUTDOWN_DRAIN="3")
    try:
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
            server.proc.send_signal(signal.SIGTERM)
            seen = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    seen = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                except grpc.RpcError:
                    break
                if seen == NOT_SERVING:
                    break
                time.sleep(0.05)
            assert seen == NOT_SERVING, "a load balancer polling Health/Check never saw the drain"
        assert server.proc.wait(60) == 0
    finally:
        server.stop()
