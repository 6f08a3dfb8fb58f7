"""Helpers for the production tests: `woes-auth` subprocesses, a controllable TCP proxy, URL rewriting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url
from woes.auth.v1 import auth_service_pb2_grpc

from tests import conftest

WOES_AUTH = str(Path(sys.executable).parent / "woes-auth")
_FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def clean_env(**settings: str) -> dict[str, str]:
    """The test process's environment without any WOES_AUTH_* setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOES_AUTH_")}
    env.update({f"WOES_AUTH_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``woes-auth ARGS``; its stderr (its log) goes to a scanned file, stdout is returned.

    Callers add any secret the command prints on stdout to ``conftest.MINTED``."""
    log_path = conftest.server_log_path("cli-" + (args[0] if args else "none"))
    with open(log_path, "w") as log_file:
        done = subprocess.run(
            [WOES_AUTH, *args], env=env, stdout=subprocess.PIPE, stderr=log_file, text=True, timeout=timeout
        )
    done.stderr = log_path.read_text()
    return done


def with_port(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def wait_for(predicate, timeout: float, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class ServerProcess:
    """One `woes-auth serve` process (one worker) on a fixed free port, logging to a scanned file."""

    def __init__(self, name: str, env: dict[str, str]):
        self.name = name
        self.port = conftest.free_port()
        self.env = dict(env, WOES_AUTH_LISTEN=f"127.0.0.1:{self.port}", WOES_AUTH_WORKERS="1")
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.channel: grpc.Channel | None = None
        self.stub: auth_service_pb2_grpc.AuthServiceStub | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60) -> ServerProcess:
        self.log_path = conftest.server_log_path(self.name)
        log_file = open(self.log_path, "w")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen([WOES_AUTH, "serve"], env=self.env, stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        # Short reconnect backoff: the channel exists before the server listens.
        self.channel = grpc.insecure_channel(self.target, options=_FAST_RECONNECT)
        self.stub = auth_service_pb2_grpc.AuthServiceStub(self.channel)
        self.wait_ready(ready_timeout)
        return self

    def health(self, timeout: float = 2.0) -> int | None:
        try:
            return (
                health_pb2_grpc.HealthStub(self.channel)
                .Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
                .status
            )
        except grpc.RpcError:
            return None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.health() == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become SERVING in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill9(self) -> None:
        """SIGKILL this process (by its own pid) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_channel()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._close_channel()

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None


class TcpProxy:
    """A threaded TCP proxy to ``target`` that a test can cut, slow down and restore.

    ``cut()`` closes every proxied connection and refuses new ones (each accepted
    connection is closed at once), as a database restart or a dropped network path
    looks to the client; ``set_delay(s)`` holds every chunk ``s`` seconds in each
    direction; ``restore()`` lets connections through again.
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(256)
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.delay = 0.0
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="test-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in doomed:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self.delay = 0.0

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._thread.join(5)
        self._server.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            with self._lock:
                if self._cut:
                    _close(client)
                    _close(upstream)
                    continue
                self._sockets.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# -- a cluster of replicas on one PostgreSQL database ------------------------------


class Cluster:
    """A migrated PostgreSQL database, an admin credential made by `woes-auth bootstrap-admin`,
    and `woes-auth serve` replicas sharing one pepper."""

    def __init__(self, database_url: str, data_dir: Path, **settings: str):
        self.database_url = database_url
        self.pepper_text = conftest.new_pepper_text()
        kek_text = conftest.new_pepper_text("kek1")  # same format; registered as a secret to scan for
        self.env = clean_env(
            database_url=database_url,
            pepper=self.pepper_text,
            kek=kek_text,
            data_dir=data_dir,
            production="1",
            **settings,
        )
        self.replicas: list[ServerProcess] = []
        upgraded = run_cli(["db", "upgrade"], self.env)
        assert upgraded.returncode == 0, upgraded.stderr
        boot = run_cli(["bootstrap-admin", "--name", "cluster admin"], self.env)
        assert boot.returncode == 0, boot.stderr
        self.admin_secret = boot.stdout.strip().splitlines()[-1]
        conftest.MINTED.add(self.admin_secret)

    @property
    def admin_md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin_secret}"),)

    def replica(self, name: str) -> ServerProcess:
        server = ServerProcess(name, self.env).start()
        self.replicas.append(server)
        return server

    def store(self):
        from auth_service.store import SqlStore

        return SqlStore(self.database_url, create_schema=False)

    def stop(self) -> None:
        for server in self.replicas:
            server.stop()


def chain_problems(store) -> list[str]:
    """Every way the stored keys could be inconsistent; empty when all is well."""
    from auth_service.domain.keys.records import StoredState

    keys = store.list_keys("", 1_000_000, None)
    by_id = {k.key_id: k for k in keys}
    problems: list[str] = []
    successors: dict[str, list[str]] = {}
    changes: dict[str, set[str]] = {}
    for change in store.changes_since(0, limit=1_000_000):
        changes.setdefault(change.key_id, set()).add(change.change)
    audited = {(e.action, e.key_id, e.detail) for e in store.list_audit(limit=1_000_000)}
    for k in keys:
        if len(k.digest) != 32 or not k.hint or not k.pepper_id:
            problems.append(f"{k.key_id}: incomplete row")
        if "issued" not in changes.get(k.key_id, set()):
            problems.append(f"{k.key_id}: no 'issued' change-feed entry")
        if k.stored_state is StoredState.ROTATED:
            if not k.rotated_to or k.grace_expire_time is None:
                problems.append(f"{k.key_id}: rotated without successor or grace end")
            if "rotated" not in changes.get(k.key_id, set()):
                problems.append(f"{k.key_id}: rotated without a change-feed entry")
        if k.stored_state is StoredState.REVOKED:
            if k.revoke_time is None:
                problems.append(f"{k.key_id}: revoked without a revoke time")
            if "revoked" not in changes.get(k.key_id, set()):
                problems.append(f"{k.key_id}: revoked without a change-feed entry")
        if k.rotated_to:
            succ = by_id.get(k.rotated_to)
            if succ is None or succ.rotated_from != k.key_id:
                problems.append(f"{k.key_id}: successor {k.rotated_to} missing or not pointing back")
        if k.rotated_from:
            successors.setdefault(k.rotated_from, []).append(k.key_id)
            pred = by_id.get(k.rotated_from)
            if pred is None or pred.rotated_to != k.key_id:
                problems.append(f"{k.key_id}: predecessor {k.rotated_from} missing or not marked rotated to it")
            if not any(a == "key.rotate" and kid == k.rotated_from and k.key_id in d for a, kid, d in audited):
                problems.append(f"{k.key_id}: no audit event of the rotation that made it")
        elif k.kind.value != "admin" and not any(a == "key.issue" and kid == k.key_id for a, kid, _ in audited):
            problems.append(f"{k.key_id}: no audit event of its issue")
    for key_id, succ in successors.items():
        if len(succ) > 1:
            problems.append(f"{key_id}: {len(succ)} successors {succ}")
    return problems
