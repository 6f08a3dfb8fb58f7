"""Run the real ``woes-auth`` command as a subprocess, with its output kept for the final log scan."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import conftest


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any WOES_AUTH_* setting, plus a private data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOES_AUTH_")}
    env["WOES_AUTH_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``woes-auth <args>`` to completion; its stderr (the log) is kept for the final scan."""
    out = subprocess.run(
        [sys.executable, "-m", "auth_service.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    conftest.server_log_path(f"cli-{args[0]}").write_text(out.stderr)
    return out


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_serve(data_dir: Path, *args: str, wait: bool = True, **env_extra: str) -> ServeProcess:
    """Start ``woes-auth serve`` on a free loopback port; with ``wait``, return once health says SERVING."""
    port = conftest.free_port()
    env = base_env(data_dir, WOES_AUTH_LISTEN=f"127.0.0.1:{port}", **env_extra)
    env.setdefault("WOES_AUTH_WORKERS", "1")
    log_path = conftest.server_log_path("serve")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auth_service.cli", "serve", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServeProcess(proc, port, data_dir, log_path, env)
    if wait:
        wait_serving(server)
    return server


def health(target: str, service: str = "", timeout: float = 5) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status


def wait_serving(server: ServeProcess, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"woes-auth serve exited with {server.proc.returncode}:\n{server.log()[-2000:]}")
        try:
            if health(server.target, timeout=2) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"woes-auth serve did not become SERVING within {within}s:\n{server.log()[-2000:]}")


def bootstrap_admin(data_dir: Path, **env_extra: str) -> str:
    out = cli("bootstrap-admin", env=base_env(data_dir, **env_extra))
    assert out.returncode == 0, out.stderr
    secret = out.stdout.rstrip("\n").splitlines()[-1]
    conftest.MINTED.add(secret)
    return secret
