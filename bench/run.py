"""`make bench`: Authenticate against an empty unary RPC on the same gRPC stack, measured by h2load.

Everything it measures it starts itself, in a temporary folder: a SQLite
database seeded with 100,000 server keys, `woes-auth serve --workers N`, and
the baseline server (bench/baseline_server.py). Load comes from h2load (C,
outside Python): gRPC over HTTP/2 is a POST of one length-prefixed protobuf
frame with `content-type: application/grpc` and `te: trailers`.

Distinct keys with h2load. h2load posts one body file for every request, but
it reads that file again (pread) for each request it sends. A writer thread
overwrites the file in place, every fraction of a millisecond, with the next
request of the key set (all requests have the same length), so one h2load run
spreads its calls over the whole set: 10,000 keys in case 2. The same writer
runs during the baseline, so both sides pay for it.

Errors. h2load counts an HTTP 200 as success even when grpc-status is not 0.
Every worker of the real server counts Authenticate outcomes (ok or the error
reason) and serves them on its stats endpoint (`--stats-port`); the numbers in
the table are differences of those counters over each run, cross-checked
against h2load's own count. The baseline cannot fail by construction; a sample
of Python client calls before and after its run checks its status anyway.
A body read while the writer rewrites the file (a torn read, a few in ten
thousand) reaches the server as a malformed credential: those are listed as
"torn bodies", apart from errors.

Settings (environment): BENCH_WORKERS (default: cores), BENCH_DURATION
seconds per case (default 6), BENCH_CONNECTIONS (default 8 per worker),
BENCH_STREAMS per connection (default 4), BENCH_RSS_KEYS (default 100000),
BENCH_ROUNDS interleaved baseline/warm/flood rounds (default 12, every other one in
reverse order), BENCH_ROUND_DURATION seconds per run in a round (default 3),
BENCH_BESIDE_ROUNDS rounds of valid traffic alone and beside a flood (default 4),
BENCH_BESIDE_FLOOD_SHARE the flood's rate there, in per cent of the baseline's calls/s
(default 10).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from sqlalchemy import create_engine, insert  # noqa: E402
from woes.auth.v1 import auth_service_pb2 as pb  # noqa: E402
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc  # noqa: E402
from woes.auth.v1 import resources_pb2 as res  # noqa: E402

from auth_service.app.services import credential_manager  # noqa: E402
from auth_service.domain import tokens  # noqa: E402
from auth_service.domain.clock import utcnow  # noqa: E402
from auth_service.domain.crypto import Keyring, Pepper  # noqa: E402
from auth_service.domain.keys.records import KeyRecord  # noqa: E402
from auth_service.store import SqlStore, schema  # noqa: E402
from auth_service.store import keys as sql_store  # noqa: E402

METHOD = "/woes.auth.v1.AuthService/Authenticate"
SCOPES = ("conversations:write", "messages:read")
REQUIRED = ["conversations:read"]
CALLER = "bench"
WARM_KEYS = 10_000
CHURN_KEYS = 3_000


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


WORKERS = env_int("BENCH_WORKERS", os.cpu_count() or 1)
DURATION = env_int("BENCH_DURATION", 6)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 8 * WORKERS)
STREAMS = env_int("BENCH_STREAMS", 4)
RSS_KEYS = env_int("BENCH_RSS_KEYS", 100_000)
ROUNDS = env_int("BENCH_ROUNDS", 12)
ROUND_DURATION = env_int("BENCH_ROUND_DURATION", 3)
BESIDE_ROUNDS = env_int("BENCH_BESIDE_ROUNDS", 4)
BESIDE_FLOOD_SHARE = env_int("BENCH_BESIDE_FLOOD_SHARE", 10)
BESIDE_FLOOD_CREDENTIALS = 3_000
# Memory is reported in MB of 1,000,000 bytes, the unit of the target (200 MB per worker).
MB = 1_000_000
ROUND_FIELDS = ("calls_per_s", "p50_ms", "p99_ms", "errors", "server_cpu_us_per_call")


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- h2load -------------------------------------------------------------------


def ensure_h2load() -> str:
    path = shutil.which("h2load")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("h2load missing: installing the Debian package nghttp2-client")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-q", "nghttp2-client"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "nghttp2-client"], env=env, check=False)
        path = shutil.which("h2load")
        if path:
            return path
    sys.exit(
        "bench: h2load is needed. Install it and run again:\n"
        "  Debian/Ubuntu: sudo apt-get install nghttp2-client\n"
        "  Fedora: sudo dnf install nghttp2    macOS: brew install nghttp2"
    )


def h2load_version(h2load: str) -> str:
    out = subprocess.run([h2load, "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] if out.strip() else "h2load"


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


class RotatingBody:
    """The body file h2load posts, overwritten in place with the next request of a set."""

    def __init__(self, path: Path, frames: list[bytes], period: float):
        lengths = {len(f) for f in frames}
        if len(lengths) != 1:
            raise ValueError("every request of a rotating body must have the same length")
        self.path = path
        self.frames = frames
        self.period = period
        path.write_bytes(frames[0])
        self._fd = os.open(path, os.O_WRONLY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.writes = 0

    def _run(self) -> None:
        n = len(self.frames)
        i = 0
        while not self._stop.is_set():
            i = (i + 1) % n
            os.pwrite(self._fd, self.frames[i], 0)
            self.writes += 1
            time.sleep(self.period)

    def __enter__(self) -> RotatingBody:
        if len(self.frames) > 1:
            self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._fd)


def run_h2load(
    h2load: str,
    port: int,
    body: Path,
    workdir: Path,
    name: str,
    *,
    duration: float,
    clients: int,
    streams: int,
    rps: int | None = None,
) -> dict:
    log_file = workdir / f"h2load-{name}.log"
    cmd = [
        h2load,
        "-D", str(duration),
        "-c", str(clients),
        "-m", str(streams),
        "-t", "1",
        "-d", str(body),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "--log-file", str(log_file),
        *(("--rps", str(rps)) if rps else ()),
        f"http://127.0.0.1:{port}{METHOD}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    # Recorded with the temporary folder written as $WORKDIR: the results describe the run, not this host's paths.
    result = {"command": shlex.join(cmd).replace(str(workdir), "$WORKDIR")}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    result["calls_per_s"] = float(m.group(3)) if m else 0.0
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )
    total, _started, done, ok, failed, errored, timeout = (int(g) for g in m.groups())
    result.update(h2_done=done, h2_2xx=ok, h2_failed=failed + errored + timeout)
    latencies = []
    with open(log_file) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                latencies.append(int(parts[2]))
    latencies.sort()
    if latencies:
        result["p50_ms"] = latencies[len(latencies) // 2] / 1000
        result["p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000
        result["mean_ms"] = statistics.fmean(latencies) / 1000
    result["latency_samples"] = len(latencies)
    return result


# -- processes ----------------------------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[2] is the process group; 11 and 12 utime and stime
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_port_block(count: int) -> int:
    """A base port with ``count`` free consecutive ports after it (best effort)."""
    for _ in range(200):
        base = random.randint(20_000, 60_000 - count)
        sockets = []
        try:
            for i in range(count):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


class Proc:
    def __init__(self, cmd: list[str], env: dict, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=self._log, start_new_session=True)

    def stop(self, timeout: float = 60) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class RealServer:
    def __init__(self, workdir: Path, env: dict, port: int, name: str):
        self.port = port
        self.stats_port = free_port_block(WORKERS)
        cmd = [sys.executable, "-m", "auth_service.cli", "serve", "--workers", str(WORKERS)]
        cmd += ["--listen", f"127.0.0.1:{port}", "--stats-port", str(self.stats_port)]
        # Recorded with the ports written as PORT: the results describe the run, not this run's ports.
        self.command = (
            shlex.join(["woes-auth", *cmd[3:]]).replace(f":{port}", ":PORT").replace(str(self.stats_port), "PORT")
        )
        self.proc = Proc(cmd, env, workdir / f"server-{name}.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                if self.proc.popen.poll() is not None:
                    raise RuntimeError(f"the server exited; see {self.proc.log_path}") from None
                time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def stats(self) -> list[dict]:
        out = []
        for i in range(WORKERS):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port + i}/stats", timeout=5) as resp:
                out.append(json.loads(resp.read()))
        return out

    def stop(self) -> int:
        return self.proc.stop()


class BaselineServer:
    def __init__(self, workdir: Path, env: dict, port: int, response: bytes, python_us: float = 0.0):
        self.port = port
        ready = workdir / f"baseline-ready-{port}"
        shutil.rmtree(ready, ignore_errors=True)
        ready.mkdir()
        response_file = workdir / "baseline-response.bin"
        response_file.write_bytes(response)
        cmd = [sys.executable, str(ROOT / "bench" / "baseline_server.py"), "--listen", f"127.0.0.1:{port}"]
        cmd += ["--workers", str(WORKERS), "--response-file", str(response_file), "--ready-dir", str(ready)]
        if python_us:
            cmd += ["--python-us", f"{python_us:.2f}"]
        self.proc = Proc(cmd, env, workdir / f"server-baseline-{port}.log")
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < WORKERS:
            if time.monotonic() > deadline or self.proc.popen.poll() is not None:
                raise RuntimeError("the baseline server did not start")
            time.sleep(0.05)

    def stop(self) -> int:
        return self.proc.stop()


# -- data ---------------------------------------------------------------------


def seed(url: str, pepper: Pepper, n_keys: int) -> tuple[list[str], str]:
    """``n_keys`` server keys (bulk insert) and one admin key; returns their secrets."""
    store = SqlStore(url)
    admin = credential_manager(store, pepper).bootstrap_admin("bench admin").secret
    store.close()
    now = utcnow()
    secrets_out = []
    rows = []
    for n in range(n_keys):
        cred = tokens.mint(tokens.KeyKind.SERVER)
        secrets_out.append(cred.token)
        record = KeyRecord(
            key_id=cred.key_id,
            workspace_id=f"ws-{n % 1000:04d}",
            kind=tokens.KeyKind.SERVER,
            display_name="bench",
            scopes=SCOPES,
            allowed_origins=(),
            digest=pepper.digest(cred.token),
            pepper_id=pepper.primary_id,
            hint=tokens.hint(cred.token),
            create_time=now,
        )
        rows.append(sql_store.record_to_row(record))
    engine = create_engine(url)
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(schema.keys), rows[start : start + 5000])
    engine.dispose()
    return secrets_out, admin


def request_bytes(credential: str) -> bytes:
    return pb.AuthenticateRequest(credential=credential, required_scopes=REQUIRED, caller=CALLER).SerializeToString()


def new_pepper_text() -> str:
    """A fresh pepper for a benchmark's own database (``WOES_AUTH_PEPPER``'s form)."""
    return f"bench1:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def server_env(workdir: Path, pepper_text: str, url: str, **overrides: str) -> dict:
    """The environment every server the benchmarks start runs with (and ``overrides``)."""
    env = dict(
        os.environ,
        WOES_AUTH_PEPPER=pepper_text,
        WOES_AUTH_DATABASE_URL=url,
        WOES_AUTH_DATA_DIR=str(workdir),
        WOES_AUTH_LOG_LEVEL="INFO",
        # The load generator is one caller sending 10,000 unknown credentials: the per-caller
        # throttle would refuse most of the flood unevaluated (cheaper still). Turn it off so that
        # case 4 measures what the issue asks: the negative cache after first sight. The
        # per-key-id throttle stays at its default.
        WOES_AUTH_THROTTLE_CALLER="off",
        # Case 2 and its rounds measure a warm cache. A run takes longer than the default TTL
        # (300 s) on a slow machine, and every warm key was cached in the same minute: past the
        # TTL each warm call would read the store until every key had been called again, which
        # is case 3 (cold), not case 2. A measured run: on a machine serving 2,800 baseline
        # calls/s that lasted all of the last 7 rounds.
        WOES_AUTH_CACHE_TTL="3600",
        PYTHONPATH=str(ROOT),
    )
    env.pop("WOES_AUTH_STATS_PORT", None)
    env.update(overrides)
    return env


def handler_time(workdir: Path, env: dict, valid: list[str], unknown: list[str]) -> dict:
    """Microseconds of woes-auth's own Python per Authenticate call, warm and flood, measured in a
    loop by ``bench/handler_time.py`` in a process of its own (its caches are its own)."""
    valid_file, unknown_file = workdir / "handler-valid.txt", workdir / "handler-unknown.txt"
    valid_file.write_text("\n".join(valid))
    unknown_file.write_text("\n".join(unknown))
    cmd = [sys.executable, str(ROOT / "bench" / "handler_time.py"), "--credentials", str(valid_file)]
    cmd += ["--unknown", str(unknown_file), "--required-scope", REQUIRED[0], "--caller", CALLER]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/handler_time.py failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


# -- Python client helpers (warm-up, checks, churn) ---------------------------


def new_channel(port: int, n: int) -> grpc.Channel:
    # A local subchannel pool and a distinct argument: a new TCP connection per channel.
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", n)]
    )


def channels_per_worker(server: RealServer, probe: str) -> list[grpc.Channel]:
    """One channel (connection) per worker, found by watching which worker's counters move."""
    found: dict[int, grpc.Channel] = {}
    spare = []
    for n in range(400):
        channel = new_channel(server.port, n)
        before = [s["authenticate"].get("ok", 0) for s in server.stats()]
        pb_grpc.AuthServiceStub(channel).Authenticate(pb.AuthenticateRequest(credential=probe), timeout=10)
        after = [s["authenticate"].get("ok", 0) for s in server.stats()]
        moved = [i for i in range(WORKERS) if after[i] != before[i]]
        if len(moved) == 1 and moved[0] not in found:
            found[moved[0]] = channel
            if len(found) == WORKERS:
                break
        else:
            spare.append(channel)
    for channel in spare:
        channel.close()
    if len(found) < WORKERS:
        raise RuntimeError("could not reach every worker with a dedicated connection")
    return [found[i] for i in range(WORKERS)]


def call_all(channel: grpc.Channel, credentials: list[str], window: int = 64) -> dict[str, int]:
    """Authenticate each credential once over ``channel``, pipelined; outcome counts. Each request
    is the one the measured runs send for that credential (``request_bytes``): a warm-up is the
    first sight of the very requests measured after it."""
    stub = pb_grpc.AuthServiceStub(channel)
    outcomes: dict[str, int] = {}
    pending: deque = deque()

    def settle(fut) -> None:
        try:
            fut.result()
            key = "OK"
        except grpc.RpcError as err:
            key = err.code().name
        outcomes[key] = outcomes.get(key, 0) + 1

    for cred in credentials:
        request = pb.AuthenticateRequest(credential=cred, required_scopes=REQUIRED, caller=CALLER)
        pending.append(stub.Authenticate.future(request, timeout=60))
        if len(pending) >= window:
            settle(pending.popleft())
    while pending:
        settle(pending.popleft())
    return outcomes


def on_every_worker(channels: list[grpc.Channel], credentials: list[str]) -> list[dict[str, int]]:
    results: list[dict[str, int]] = [{} for _ in channels]

    def run(i: int) -> None:
        results[i] = call_all(channels[i], credentials)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(channels))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def sample_status(port: int, credential: str, n: int = 20) -> dict[str, int]:
    with new_channel(port, -1) as channel:
        return call_all(channel, [credential] * n, window=4)


class Churn:
    """Revokes and rotates keys through the admin RPCs, one after the other, until stopped."""

    def __init__(self, port: int, admin: str, key_ids: list[str]):
        self.port = port
        self.md = (("authorization", f"Bearer {admin}"),)
        self.key_ids = key_ids
        self.ops = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        channel = new_channel(self.port, -2)
        stub = pb_grpc.AuthServiceStub(channel)
        for n, key_id in enumerate(self.key_ids):
            if self._stop.is_set():
                break
            try:
                if n % 2:
                    stub.Revoke(pb.RevokeRequest(key_id=key_id, reason="bench"), metadata=self.md, timeout=10)
                else:
                    stub.Rotate(pb.RotateRequest(key_id=key_id), metadata=self.md, timeout=10)
                self.ops += 1
            except grpc.RpcError:
                self.failures += 1
        channel.close()

    def __enter__(self) -> Churn:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.elapsed = time.monotonic() - self.started


# -- measuring a case -----------------------------------------------------------


def sum_outcomes(before: list[dict], after: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b, a in zip(before, after, strict=True):
        for reason, count in a["authenticate"].items():
            delta = count - b["authenticate"].get(reason, 0)
            if delta:
                out[reason] = out.get(reason, 0) + delta
    return out


def sum_field(before: list[dict], after: list[dict], section: str, name: str) -> int:
    return sum(a[section][name] - b[section][name] for b, a in zip(before, after, strict=True))


def measured(h2load, server, frames, workdir, name, *, expect: str, clients=None, streams=None, duration=None):
    """One h2load run over ``frames`` with server-side outcome accounting."""
    duration = duration or DURATION
    period = max(0.0002, duration / max(1, len(frames)))
    before = server.stats() if isinstance(server, RealServer) else None
    cpu_before = group_cpu_seconds(server.proc.popen.pid)
    with RotatingBody(workdir / f"body-{name}.bin", frames, period) as body:
        result = run_h2load(
            h2load,
            server.port,
            body.path,
            workdir,
            name,
            duration=duration,
            clients=clients or CONNECTIONS,
            streams=streams or STREAMS,
        )
        result["distinct_requests_sent"] = min(len(frames), body.writes + 1)
    # CPU the server's processes spent per answered call: steadier than calls/s on a shared machine,
    # since time the server was not given the CPU is not counted.
    result["server_cpu_us_per_call"] = (
        1e6 * (group_cpu_seconds(server.proc.popen.pid) - cpu_before) / max(1, result["h2_done"])
    )
    if before is not None:
        after = server.stats()
        outcomes = sum_outcomes(before, after)
        result["grpc_outcomes"] = outcomes
        # Every frame the writer puts in the body file is well-formed, so a
        # CREDENTIAL_MALFORMED answer can only be a body h2load read while the
        # writer was rewriting it (a torn read): counted apart, not hidden.
        result["torn_bodies"] = outcomes.get("CREDENTIAL_MALFORMED", 0)
        # Calls the throttle refused never reach the handler's counters: count them as errors too.
        result["throttled"] = sum(
            a.get("throttled", {}).get(scope, 0) - b.get("throttled", {}).get(scope, 0)
            for b, a in zip(before, after, strict=True)
            for scope in ("caller",)
        )
        result["errors"] = (
            sum(v for k, v in outcomes.items() if k not in (expect, "CREDENTIAL_MALFORMED"))
            + result["h2_failed"]
            + result["throttled"]
        )
        result["store_statements"] = sum_field(before, after, "store", "statements")
        result["hot_path_store_reads"] = sum_field(before, after, "store", "hot_path_reads")
        result["feed_polls"] = sum_field(before, after, "feed", "polls")
        result["gc_collections"] = [
            sum(a["gc"]["collections"][g] - b["gc"]["collections"][g] for b, a in zip(before, after, strict=True))
            for g in range(3)
        ]
        result["calls_per_worker"] = [
            sum(a["authenticate"].values()) - sum(b["authenticate"].values())
            for b, a in zip(before, after, strict=True)
        ]
    else:
        result["errors"] = result["h2_failed"] + (result["h2_done"] - result["h2_2xx"])
    return result


def guesses(key_ids: list[str], n: int) -> list[str]:
    """``n`` well-formed server credentials (valid checksum) naming ``key_ids`` in turn, each with a
    fresh random secret: what someone who knows the (public) key ids can send."""
    return [tokens.mint(tokens.KeyKind.SERVER, key_ids[i % len(key_ids)]).token for i in range(n)]


def _bad_checksum(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def mixed_flood_credentials(n: int, victims: list[str]) -> list[str]:
    """``n`` bad credentials of one length, in equal parts: random strings (no credential shape),
    malformed credentials (the shape, a wrong checksum), well-formed unknown ones, and, naming the
    key ids of ``victims`` (the valid callers' own keys), wrong secrets and malformed strings."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
    out = []
    for i in range(n):
        token = tokens.mint(tokens.KeyKind.SERVER).token
        kind = i % 5
        if kind == 0:
            out.append("".join(random.choice(alphabet) for _ in range(len(token))))
        elif kind == 1:
            out.append(_bad_checksum(token))
        elif kind == 2:
            out.append(token)
        else:
            guess = guesses([random.choice(victims)], 1)[0]
            out.append(guess if kind == 3 else _bad_checksum(guess))
    random.shuffle(out)
    return out


def frames_of(credentials: list[str]) -> list[bytes]:
    return [grpc_frame(request_bytes(c)) for c in credentials]


def valid_beside_flood(h2load, server, channels, warm_frames, workdir, flood_rate: int, victims: list[str]) -> dict:
    """Valid traffic at full load, alone and beside a flood of bad credentials at ``flood_rate``
    calls/s on connections of its own, in turn (every other round the other way round). The flood
    names the valid callers' own key ids (``victims``) too: none of their calls may be refused."""
    clients = 2 * WORKERS
    rounds = []
    for n in range(BESIDE_ROUNDS):
        bad = mixed_flood_credentials(BESIDE_FLOOD_CREDENTIALS, victims)
        on_every_worker(channels, bad)  # first sight of each digest (only the well-formed unknown ones reach the store)
        flood_frames = [grpc_frame(request_bytes(c)) for c in bad]

        def alone(n=n):
            return measured(
                h2load, server, warm_frames, workdir, f"beside{n}-alone", expect="ok", duration=ROUND_DURATION
            )

        def beside(n=n, flood_frames=flood_frames):
            flood: dict = {}
            period = max(0.0002, (ROUND_DURATION + 2) / len(flood_frames))
            with RotatingBody(workdir / f"body-beside{n}-flood.bin", flood_frames, period) as body:

                def run_flood():
                    flood.update(
                        run_h2load(
                            h2load,
                            server.port,
                            body.path,
                            workdir,
                            f"beside{n}-flood",
                            duration=ROUND_DURATION + 2,
                            clients=clients,
                            streams=1,
                            rps=max(1, flood_rate // clients),
                        )
                    )

                thread = threading.Thread(target=run_flood)
                thread.start()
                time.sleep(1.0)  # the flood is under way before the valid run starts, and ends after it
                valid = measured(
                    h2load, server, warm_frames, workdir, f"beside{n}-valid", expect="ok", duration=ROUND_DURATION
                )
                thread.join()
            # The server's counters over the valid run hold the flood's refusals too: the valid
            # calls that were not answered OK are h2load's calls less the OK answers.
            valid["not_ok"] = max(0, valid["h2_done"] - valid.get("grpc_outcomes", {}).get("ok", 0))
            valid["flood_calls_per_s"] = flood.get("calls_per_s", 0.0)
            return valid

        order = ("alone", "beside") if n % 2 == 0 else ("beside", "alone")
        runs = {"alone": alone, "beside": beside}
        got = {case: runs[case]() for case in order}
        a, b = got["alone"], got["beside"]
        rounds.append(
            {
                "order": list(order),
                "alone": {k: a.get(k) for k in ROUND_FIELDS},
                "beside": {k: b.get(k) for k in (*ROUND_FIELDS, "not_ok", "flood_calls_per_s", "hot_path_store_reads")},
            }
        )
    return {
        "flood_rate_asked": flood_rate,
        "flood_connections": clients,
        "flood_share_of_baseline_pct": BESIDE_FLOOD_SHARE,
        "rounds": rounds,
        "median_ratio": statistics.median(
            r["beside"]["calls_per_s"] / (r["alone"]["calls_per_s"] or 1) for r in rounds
        ),
        "median_p99_ratio": statistics.median(r["beside"]["p99_ms"] / (r["alone"]["p99_ms"] or 1) for r in rounds),
        "median_flood_calls_per_s": statistics.median(r["beside"]["flood_calls_per_s"] for r in rounds),
        "store_reads": sum(r["beside"]["hot_path_store_reads"] for r in rounds),
        "valid_not_ok": sum(r["beside"]["not_ok"] for r in rounds),
    }


# -- the run ----------------------------------------------------------------------


def machine() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import google.protobuf

    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "os": platform.system(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
    }


def main() -> int:
    h2load = ensure_h2load()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="woes-auth-bench-"))
    say(f"workers={WORKERS} connections={CONNECTIONS} streams/connection={STREAMS} duration={DURATION}s")
    pepper_text = new_pepper_text()
    pepper = Pepper(Keyring.parse(pepper_text))
    url = f"sqlite:///{workdir / 'bench.db'}"
    n_keys = max(RSS_KEYS, 2 * WARM_KEYS + CHURN_KEYS + 1)
    say(f"seeding {n_keys} keys")
    keys, admin = seed(url, pepper, n_keys)
    warm_keys = keys[:WARM_KEYS]
    churn_keys = keys[WARM_KEYS : WARM_KEYS + CHURN_KEYS]
    unknown = [tokens.mint(tokens.KeyKind.SERVER).token for _ in range(WARM_KEYS)]
    warm_frames = [grpc_frame(request_bytes(k)) for k in warm_keys]
    unknown_frames = [grpc_frame(request_bytes(k)) for k in unknown]
    # Key ids of real keys whose credentials are never sent: one whose secret a flood varies, and
    # WARM_KEYS that a flood names with wrong secrets.
    victim_id = tokens.parse(keys[WARM_KEYS + CHURN_KEYS]).key_id
    named_ids = [tokens.parse(k).key_id for k in keys[WARM_KEYS + CHURN_KEYS + 1 : 2 * WARM_KEYS + CHURN_KEYS + 1]]
    warm_ids = [tokens.parse(k).key_id for k in warm_keys]
    env = server_env(workdir, pepper_text, url)
    results: dict = {"machine": machine(), "h2load": h2load_version(h2load), "cases": {}}
    say("the handler's own time, in a loop")
    results["handler_time_us"] = handler_time(workdir, env, warm_keys, unknown)
    results["settings"] = {
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "streams_per_connection": STREAMS,
        "duration_s": DURATION,
        "rounds": ROUNDS,
        "round_duration_s": ROUND_DURATION,
        "warm_keys": WARM_KEYS,
        "rss_keys": RSS_KEYS,
        "feed_interval_s": float(os.environ.get("WOES_AUTH_FEED_INTERVAL", 0.25)),
        "cache_ttl_s": float(env["WOES_AUTH_CACHE_TTL"]),
        "beside_rounds": BESIDE_ROUNDS,
    }
    cases = results["cases"]
    port = free_port_block(1)

    # Size of a real response, for the baseline.
    sample_response = pb.AuthenticateResponse(
        principal=res.Principal(
            key_id=tokens.parse(warm_keys[0]).key_id, workspace_id="ws-0000", kind=res.KEY_KIND_SERVER, scopes=SCOPES
        )
    ).SerializeToString()

    # 1. baseline
    say("case 1: baseline (pre-built response, request not read)")
    base = BaselineServer(workdir, env, port, sample_response)
    try:
        before = sample_status(port, warm_keys[0])
        measured(h2load, base, warm_frames, workdir, "baseline-warmup", expect="ok", duration=2)
        cases["baseline"] = measured(h2load, base, warm_frames, workdir, "baseline", expect="ok")
        cases["baseline"]["python_sample_status"] = {"before": before, "after": sample_status(port, warm_keys[0])}
        say("serial latency, baseline")
        results["serial_baseline"] = measured(
            h2load,
            base,
            warm_frames,
            workdir,
            "baseline-serial",
            expect="ok",
            clients=1,
            streams=1,
            duration=max(3, DURATION // 2),
        )
    finally:
        base.stop()
    time.sleep(1)

    server = RealServer(workdir, env, port, "main")
    results["server_command"] = server.command
    rss_at_start = [round(s["rss_bytes"] / MB, 1) for s in server.stats()]
    try:
        # 3. cold: right after start, nothing cached.
        say("case 3: cold cache, right after start")
        cases["cold"] = measured(h2load, server, warm_frames, workdir, "cold", expect="ok")
        # 2. warm: every worker has every key of the set.
        say(f"case 2: warm cache, {WARM_KEYS} keys on every worker")
        channels = channels_per_worker(server, warm_keys[0])
        warmups = on_every_worker(channels, warm_keys)
        cases["warm"] = measured(h2load, server, warm_frames, workdir, "warm", expect="ok")
        cases["warm"]["warm_up_outcomes_per_worker"] = warmups
        say("serial latency, warm")
        results["serial_warm"] = measured(
            h2load,
            server,
            warm_frames,
            workdir,
            "warm-serial",
            expect="ok",
            clients=1,
            streams=1,
            duration=max(3, DURATION // 2),
        )
        # 4. the flood: well-formed unknown credentials, after each was seen once by every worker.
        say(f"case 4: flood of {len(unknown)} well-formed unknown credentials")
        flood_warmup = on_every_worker(channels, unknown)
        cases["flood"] = measured(h2load, server, unknown_frames, workdir, "flood", expect="CREDENTIAL_UNKNOWN")
        cases["flood"]["warm_up_outcomes_per_worker"] = flood_warmup
        calls = max(1, sum(cases["flood"]["grpc_outcomes"].values()))
        cases["flood"]["store_reads_per_1000_calls"] = 1000 * cases["flood"]["hot_path_store_reads"] / calls
        cases["flood"]["store_statements_per_1000_calls"] = 1000 * cases["flood"]["store_statements"] / calls
        # 4b. a flood varying the secret of one real key id (every request a fresh secret), after
        # each worker read that key id's record once; 4c. the same over WARM_KEYS real key ids.
        say("case 4b: flood of fresh secrets for one real key id")
        on_every_worker(channels, guesses([victim_id], 2))
        cases["flood_secrets"] = measured(
            h2load,
            server,
            frames_of(guesses([victim_id], WARM_KEYS)),
            workdir,
            "flood-secrets",
            expect="CREDENTIAL_UNKNOWN",
        )
        say(f"case 4c: flood of fresh secrets naming {len(named_ids)} real key ids")
        on_every_worker(channels, guesses(named_ids, len(named_ids)))
        cases["flood_key_ids"] = measured(
            h2load,
            server,
            frames_of(guesses(named_ids, WARM_KEYS)),
            workdir,
            "flood-key-ids",
            expect="CREDENTIAL_UNKNOWN",
        )
        # 5. warm traffic while another client revokes and rotates other cached keys.
        say("case 5: warm traffic while keys are revoked and rotated continuously")
        on_every_worker(channels, churn_keys)
        churn_ids = [tokens.parse(k).key_id for k in churn_keys]
        with Churn(port, admin, churn_ids) as churn:
            cases["churn"] = measured(h2load, server, warm_frames, workdir, "churn", expect="ok")
        cases["churn"]["churn_ops_per_s"] = churn.ops / churn.elapsed
        cases["churn"]["churn_failures"] = churn.failures
        # Valid callers beside a flood of random, malformed and unknown credentials.
        flood_rate = int(cases["baseline"]["calls_per_s"] * BESIDE_FLOOD_SHARE / 100)
        say(f"valid traffic alone and beside a flood of bad credentials at {flood_rate} calls/s, {BESIDE_ROUNDS} times")
        results["beside_flood"] = valid_beside_flood(
            h2load, server, channels, warm_frames, workdir, flood_rate, warm_ids
        )
        # Interleaved rounds: on a shared machine the throughput of one 6-second run drifts by tens
        # of per cent, so the ratios that decide the targets are measured back to back, baseline
        # (kept running on a second port), warm and flood, ROUNDS times; the medians count. Every
        # other round runs them in the reverse order (flood, warm, baseline), so that a machine
        # getting steadily faster or slower over a round favours neither side.
        say(
            f"interleaved rounds: baseline, baseline + Python, warm, flood (every other round reversed), {ROUNDS} times"
        )
        base2 = BaselineServer(workdir, env, free_port_block(1), sample_response)
        # The baseline again, its handler first spending the warm call's own time in pure Python
        # (measured in a loop with the processor's caches emptied before each call, the longer of
        # the two): what holding the interpreter lock that long costs on this stack, same rounds.
        python_us = results["handler_time_us"]["warm_cold_us"]
        base_py = BaselineServer(workdir, env, free_port_block(1), sample_response, python_us=python_us)
        measured(h2load, base_py, warm_frames, workdir, "baseline-python-warmup", expect="ok", duration=2)
        rounds = []
        try:
            for n in range(ROUNDS):

                def run_baseline(n=n):
                    return measured(
                        h2load, base2, warm_frames, workdir, f"round{n}-baseline", expect="ok", duration=ROUND_DURATION
                    )

                def run_baseline_python(n=n):
                    return measured(
                        h2load,
                        base_py,
                        warm_frames,
                        workdir,
                        f"round{n}-baseline-python",
                        expect="ok",
                        duration=ROUND_DURATION,
                    )

                def run_warm(n=n):
                    return measured(
                        h2load, server, warm_frames, workdir, f"round{n}-warm", expect="ok", duration=ROUND_DURATION
                    )

                def run_flood(n=n):
                    # A fresh set of unknown credentials each round, seen once by every worker first: reusing
                    # one set would let the per-key-id throttle (and the negative cache's expiry) mix in.
                    fresh = [tokens.mint(tokens.KeyKind.SERVER).token for _ in range(WARM_KEYS)]
                    on_every_worker(channels, fresh)
                    return measured(
                        h2load,
                        server,
                        [grpc_frame(request_bytes(k)) for k in fresh],
                        workdir,
                        f"round{n}-flood",
                        expect="CREDENTIAL_UNKNOWN",
                        duration=ROUND_DURATION,
                    )

                def run_flood_secrets(n=n):
                    # Fresh secrets every round, never seen before: each call is a first sight.
                    return measured(
                        h2load,
                        server,
                        frames_of(guesses([victim_id], WARM_KEYS)),
                        workdir,
                        f"round{n}-flood-secrets",
                        expect="CREDENTIAL_UNKNOWN",
                        duration=ROUND_DURATION,
                    )

                def run_flood_key_ids(n=n):
                    return measured(
                        h2load,
                        server,
                        frames_of(guesses(named_ids, WARM_KEYS)),
                        workdir,
                        f"round{n}-flood-key-ids",
                        expect="CREDENTIAL_UNKNOWN",
                        duration=ROUND_DURATION,
                    )

                order = ("baseline", "baseline_python", "warm", "flood", "flood_secrets", "flood_key_ids")
                if n % 2:
                    order = order[::-1]
                runs = {"baseline": run_baseline, "baseline_python": run_baseline_python}
                runs.update(warm=run_warm, flood=run_flood)
                runs.update(flood_secrets=run_flood_secrets, flood_key_ids=run_flood_key_ids)
                got = {case: runs[case]() for case in order}
                b, w, f = got["baseline"], got["warm"], got["flood"]
                rounds.append(
                    {
                        "order": list(order),
                        "baseline": {k: b.get(k) for k in ROUND_FIELDS},
                        "baseline_python": {k: got["baseline_python"].get(k) for k in ROUND_FIELDS},
                        "warm": {k: w.get(k) for k in (*ROUND_FIELDS, "calls_per_worker")},
                        "flood": {k: f.get(k) for k in (*ROUND_FIELDS, "calls_per_worker", "hot_path_store_reads")},
                        **{
                            case: {
                                k: got[case].get(k) for k in (*ROUND_FIELDS, "calls_per_worker", "hot_path_store_reads")
                            }
                            for case in ("flood_secrets", "flood_key_ids")
                        },
                    }
                )
        finally:
            base2.stop()
            base_py.stop()
        results["rounds"] = rounds
        results["round_medians"] = {
            f"{case}_{what}": statistics.median(r[case][key] / (r["baseline"][key] or 1) for r in rounds)
            for case in ("warm", "flood", "flood_secrets", "flood_key_ids", "baseline_python")
            for what, key in (
                ("ratio", "calls_per_s"),
                ("p99_ratio", "p99_ms"),
                ("cpu_ratio", "server_cpu_us_per_call"),
            )
        }
        # RSS with RSS_KEYS cached keys on every worker.
        say(f"memory: caching {RSS_KEYS} keys on every worker")
        rss_outcomes = on_every_worker(channels, keys[:RSS_KEYS])
        # Each once more: the cache grants the repeat and remembers it by its bytes (the grant
        # memo), so the memory measured is that of a process whose every key is in use.
        on_every_worker(channels, keys[:RSS_KEYS])
        stats = server.stats()
        results["memory"] = {
            "cached_keys_per_worker": [s["cache"]["entries"] for s in stats],
            "memo_records_per_worker": [s["cache"]["memo_records"] for s in stats],
            "rss_mb_per_worker": [round(s["rss_bytes"] / MB, 1) for s in stats],
            "rss_mb_per_worker_at_start": rss_at_start,
            "warm_up_outcomes_per_worker": rss_outcomes,
        }
        for channel in channels:
            channel.close()
    finally:
        server.stop()

    base_rate = cases["baseline"]["calls_per_s"] or 1
    for case in cases.values():
        case["ratio_to_baseline"] = case["calls_per_s"] / base_rate
        if cases["baseline"].get("p99_ms"):
            case["p99_ratio_to_baseline"] = case.get("p99_ms", 0) / cases["baseline"]["p99_ms"]
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["command"] = "make bench  (= .venv/bin/python bench/run.py)"
    out = ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))
    say(f"wrote {out.relative_to(ROOT)}; server logs and h2load logs in {workdir}")
    return 0


def table(r: dict) -> str:
    m = r["machine"]
    s = r["settings"]
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['os']}; Python {m['python']}, grpcio {m['grpcio']}, "
        f"protobuf {m['protobuf']}; {r['h2load']}.",
        f"Load: h2load, {s['connections']} connections x {s['streams_per_connection']} streams, {s['duration_s']} s per case; "
        f"{s['workers']} workers; server and h2load share the machine; no caller throttled (the built-in "
        "policy); errors include throttled calls"
        + (f"; cache TTL {s['cache_ttl_s']:.0f} s (longer than the run)." if s.get("cache_ttl_s") else "."),
        "",
        "| case | calls/s | vs baseline | p50 ms | p99 ms | p99 vs baseline | server CPU µs/call | errors | torn bodies |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "baseline": "1. baseline: pre-built response, request not read",
        "warm": f"2. Authenticate, warm cache, {s['warm_keys']:,} keys",
        "cold": "3. Authenticate, cold cache right after start",
        "flood": "4. flood of well-formed unknown credentials",
        "flood_secrets": "4b. flood of fresh secrets for one real key id",
        "flood_key_ids": f"4c. flood of fresh secrets naming {s['warm_keys']:,} real key ids",
        "churn": "5. Authenticate during continuous revoke/rotate",
    }
    for key in ("baseline", "warm", "cold", "flood", "flood_secrets", "flood_key_ids", "churn"):
        c = r["cases"].get(key)
        if c is None:
            continue
        lines.append(
            f"| {names[key]} | {c['calls_per_s']:,.0f} | {100 * c['ratio_to_baseline']:.0f} % | {c.get('p50_ms', 0):.2f} | "
            f"{c.get('p99_ms', 0):.2f} | {c.get('p99_ratio_to_baseline', 0):.2f}x | "
            f"{c.get('server_cpu_us_per_call', 0):,.0f} | {c['errors']} | "
            f"{c.get('torn_bodies', '-')} |"
        )
    flood = r["cases"]["flood"]
    churn = r["cases"]["churn"]
    mem = r["memory"]
    lines += [
        "",
        f"- Serial latency (1 connection, 1 call at a time): baseline p50 {r['serial_baseline'].get('p50_ms', 0):.3f} ms / "
        f"p99 {r['serial_baseline'].get('p99_ms', 0):.3f} ms; Authenticate warm p50 {r['serial_warm'].get('p50_ms', 0):.3f} ms / "
        f"p99 {r['serial_warm'].get('p99_ms', 0):.3f} ms.",
        f"- Flood: {flood['store_reads_per_1000_calls']:.2f} store reads per 1,000 calls after warm-up "
        f"({flood['hot_path_store_reads']} in {sum(flood['grpc_outcomes'].values()):,} calls); all store statements incl. "
        f"the change-feed polls ({flood['feed_polls']} polls): {flood['store_statements_per_1000_calls']:.2f} per 1,000 calls.",
        f"- Churn: {churn['churn_ops_per_s']:.1f} revokes+rotations/s through the admin RPCs during case 5.",
        f"- Memory: {', '.join(f'{k:,}' for k in mem['cached_keys_per_worker'])} cached keys per worker"
        + (
            f" and {', '.join(f'{k:,}' for k in mem['memo_records_per_worker'])} grant memo records"
            if "memo_records_per_worker" in mem
            else ""
        )
        + "; "
        f"RSS {', '.join(str(x) for x in mem['rss_mb_per_worker'])} MB per worker "
        f"({', '.join(str(x) for x in mem['rss_mb_per_worker_at_start'])} MB at start).",
        f"- Command: `make bench`; server: `{r['server_command']}`.",
    ]
    if r.get("rounds"):
        med = r["round_medians"]

        def per_round(case: str) -> str:
            return ", ".join(
                f"{100 * x[case]['calls_per_s'] / (x['baseline']['calls_per_s'] or 1):.0f} %" for x in r["rounds"]
            )

        lines += [
            f"- Interleaved rounds (baseline, warm, flood back to back, every other round in reverse order, "
            f"{len(r['rounds'])} times, {r['settings'].get('round_duration_s', r['settings']['duration_s'])} s each run; the targets are "
            f"judged on these medians): warm {100 * med['warm_ratio']:.0f} % of baseline calls/s "
            f"(rounds: {per_round('warm')}), p99 {med['warm_p99_ratio']:.2f}x; flood {100 * med['flood_ratio']:.0f} % "
            f"(rounds: {per_round('flood')}), p99 {med['flood_p99_ratio']:.2f}x; flood store reads "
            f"{sum(x['flood']['hot_path_store_reads'] for x in r['rounds'])}. Server CPU per call against the "
            f"baseline's, same rounds: warm {med['warm_cpu_ratio']:.2f}x, flood {med['flood_cpu_ratio']:.2f}x.",
        ]
        for case, label in (
            ("flood_secrets", "fresh secrets, one key id"),
            ("flood_key_ids", "fresh secrets, many key ids"),
        ):
            if f"{case}_ratio" in med:
                lines.append(
                    f"- Flood of {label} (4b/4c), same rounds: {100 * med[f'{case}_ratio']:.0f} % of the baseline's "
                    f"calls/s (rounds: {per_round(case)}), p99 {med[f'{case}_p99_ratio']:.2f}x, server CPU per call "
                    f"{med[f'{case}_cpu_ratio']:.2f}x; store reads {sum(x[case]['hot_path_store_reads'] for x in r['rounds'])}."
                )
        spent = r.get("handler_time_us")
        if spent and "warm_cold_us" in spent and "baseline_python_ratio" in med:
            lines.append(
                f"- The handler's own time: a warm call spends {spent['warm_us']:.1f} µs in woes-auth's Python, "
                f"measured in a loop, {spent['warm_cold_us']:.1f} µs with the processor's caches emptied before "
                f"each call (request decoding included; a flood call {spent['flood_us']:.1f} and "
                f"{spent['flood_cold_us']:.1f} µs). The baseline made to spend {spent['warm_cold_us']:.1f} µs of "
                "pure Python per call, in the same rounds, "
                f"served {100 * med['baseline_python_ratio']:.0f} % of the plain baseline's calls/s (server CPU per "
                f"call {med['baseline_python_cpu_ratio']:.2f}x, p99 {med['baseline_python_p99_ratio']:.2f}x), the "
                f"warm case {100 * med['warm_ratio']:.0f} %."
            )
    beside = r.get("beside_flood")
    if beside:
        lines += [
            f"- Valid callers beside a flood (random, malformed and unknown credentials, and wrong secrets and "
            f"malformed strings naming the valid callers' own key ids, in equal parts, asked at "
            f"{beside['flood_share_of_baseline_pct']} % of the baseline's calls/s over {beside['flood_connections']} "
            f"connections of its own; valid traffic alone and beside it in turn, {len(beside['rounds'])} times): "
            f"valid calls/s {100 * beside['median_ratio']:.0f} % of alone (rounds: "
            + ", ".join(
                f"{100 * x['beside']['calls_per_s'] / (x['alone']['calls_per_s'] or 1):.0f} %" for x in beside["rounds"]
            )
            + f"), p99 {beside['median_p99_ratio']:.2f}x; the flood ran at {beside['median_flood_calls_per_s']:,.0f} calls/s; "
            f"store reads during it {beside['store_reads']}; valid calls not answered OK {beside['valid_not_ok']}.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
