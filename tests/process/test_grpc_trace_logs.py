"""A full scenario against a subprocess server at DEBUG with gRPC's native tracing on: no secret in its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import grpc
from google.protobuf import duration_pb2
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc
from woes.auth.v1 import resources_pb2 as res

from tests import conftest
from tests.conftest import free_port, new_pepper_text, server_log_path


def _run_cli(args, env):
    return subprocess.run(
        [sys.executable, "-m", "auth_service.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _wait_serving(target: str, proc, timeout: float = 60.0) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server exited"
            try:
                got = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if got.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise AssertionError("server did not start")


def _scenario(stub, admin: str) -> list[str]:
    """Every kind of call, success and failure; returns every secret it saw."""
    md = (("authorization", f"Bearer {admin}"), ("x-request-id", "scenario-1"))
    seen = []
    server = stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-trace", kind=res.KEY_KIND_SERVER, scopes=["conversations:write"]),
        metadata=md,
        timeout=10,
    )
    widget = stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-trace", kind=res.KEY_KIND_WIDGET, allowed_origins=["https://shop.example"]),
        metadata=md,
        timeout=10,
    )
    seen += [server.secret, widget.secret]
    stub.Authenticate(
        pb.AuthenticateRequest(credential=server.secret, required_scopes=["conversations:read"], caller="billing"),
        metadata=(("x-request-id", "scenario-2"),),
        timeout=10,
    )
    stub.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=widget.secret, origin="https://shop.example"), timeout=10)
    failures = [
        lambda: stub.Authenticate(pb.AuthenticateRequest(credential=server.secret[:-1] + "x"), timeout=10),
        lambda: stub.Authenticate(pb.AuthenticateRequest(credential=widget.secret), timeout=10),
        lambda: stub.Authenticate(
            pb.AuthenticateRequest(credential=server.secret, required_scopes=["webhooks:write"]), timeout=10
        ),
        lambda: stub.VerifyWidgetKey(
            pb.VerifyWidgetKeyRequest(public_key=widget.secret, origin="https://evil.example"), timeout=10
        ),
        lambda: stub.ListKeys(
            pb.ListKeysRequest(), metadata=(("authorization", f"Bearer {server.secret}"),), timeout=10
        ),
        lambda: stub.ListKeys(
            pb.ListKeysRequest(), metadata=(("authorization", f"Bearer {admin[:-2]}zz"),), timeout=10
        ),
    ]
    rotated = stub.Rotate(
        pb.RotateRequest(key_id=server.key.key_id, grace_period=duration_pb2.Duration(seconds=0)),
        metadata=md,
        timeout=10,
    )
    seen.append(rotated.secret)
    stub.Authenticate(pb.AuthenticateRequest(credential=rotated.secret), timeout=10)
    stub.Revoke(pb.RevokeRequest(key_id=rotated.key.key_id, reason="trace test"), metadata=md, timeout=10)
    failures += [
        lambda: stub.Authenticate(pb.AuthenticateRequest(credential=rotated.secret), timeout=10),
        lambda: stub.Authenticate(pb.AuthenticateRequest(credential=server.secret), timeout=10),
    ]
    for call in failures:
        try:
            call()
        except grpc.RpcError:
            continue
        raise AssertionError("a failing call of the scenario succeeded")
    stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-trace"), metadata=md, timeout=10)
    return seen


def test_debug_logs_with_grpc_tracing_hold_no_secret(tmp_path):
    port = free_port()
    pepper = new_pepper_text("trace1")
    env = {
        **os.environ,
        "WOES_AUTH_DATA_DIR": str(tmp_path),
        "WOES_AUTH_PEPPER": pepper,
        "WOES_AUTH_WORKERS": "1",
        "WOES_AUTH_LOG_LEVEL": "DEBUG",
        "WOES_AUTH_ACCESS_LOG": "1",
    }
    boot = _run_cli(["bootstrap-admin"], env)
    assert boot.returncode == 0, boot.stderr
    admin = boot.stdout.strip().splitlines()[-1]
    conftest.MINTED.add(admin)
    log_path = server_log_path("grpc-trace")
    traced = {**env, "GRPC_VERBOSITY": "debug", "GRPC_TRACE": "all"}
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auth_service.cli", "serve", "--listen", f"127.0.0.1:{port}"],
            env=traced,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_serving(f"127.0.0.1:{port}", proc)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                secrets_seen = _scenario(auth_service_pb2_grpc.AuthServiceStub(channel), admin)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    conftest.MINTED.update(secrets_seen)
    text = log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, native tracing included, is one JSON record
    native = [r for r in records if r["logger"] == "native"]
    assert len(native) > 100, "gRPC tracing was not on: the scan would prove little"
    # gRPC's HPACK trace prints request headers: the authorization value reached the filter and was scrubbed.
    assert any("authorization: Bearer [redacted]" in r["message"] for r in native)
    access = [r for r in records if r["logger"] == "auth_service.access"]
    assert {"scenario-1", "scenario-2"} <= {r["request_id"] for r in access}
    assert {r["code"] for r in access} >= {"OK", "UNAUTHENTICATED", "PERMISSION_DENIED"}
    assert all("duration_ms" in r and "method" in r for r in access)
    for secret in [admin, pepper.split(":", 1)[1], *secrets_seen]:
        assert secret not in text
        # Nor any long piece of it (hex dumps or line splits would show pieces).
        body = secret.split("_")[-1] if secret.startswith("woes_") else secret
        assert body[:24] not in text and body[-24:] not in text
