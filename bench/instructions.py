"""Instructions per call of a whole serving process, counted by valgrind's callgrind.

Throughput on a shared 2-core machine drifts by tens of per cent between runs; instruction counts
do not (the same program, inputs and environment give the same count whatever else the machine
does). This counts every user-space instruction one serving process executes, in all its threads
(grpcio's C core, the interpreter, OpenSSL, upb, woes-auth), while it answers a fixed number of
calls sent by h2load, for:

1. the baseline (``bench/baseline_server.py``: the same server factory, a pre-built response);
2. ``Authenticate`` with valid keys, cache warm;
3. ``Authenticate`` with well-formed unknown credentials, after first sight (the flood).

Each server runs one process under callgrind with instrumentation off; after a warm-up of the
same calls it is switched on (``callgrind_control``), the measured calls are sent, and the counts
are dumped. What it does not count: the kernel (system calls, context switches, which dominate a
call's time on these machines) and time spent waiting. The change feed and usage flush intervals
are raised for the run: under callgrind a call takes about 50 times longer, so periodic work would
be counted about 50 times over per call.

    python bench/instructions.py [--calls N]        (needs valgrind: apt-get install valgrind)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as bench  # noqa: E402
from woes.auth.v1 import auth_service_pb2 as pb  # noqa: E402
from woes.auth.v1 import resources_pb2 as res  # noqa: E402

from auth_service.domain import tokens  # noqa: E402
from auth_service.domain.crypto import Keyring, Pepper  # noqa: E402


def callgrind_total(text: str) -> int:
    """The instruction total of a callgrind output file (its ``totals:`` line, else ``summary:``)."""
    m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    if m is None:
        raise ValueError("not a callgrind output file")
    return int(m.group(1))


def h2load_calls(h2load: str, port: int, frames: list[bytes], workdir: Path, n: int) -> dict:
    body = workdir / "body.bin"
    with bench.RotatingBody(body, frames, 0.0005):
        cmd = [h2load, "-n", str(n), "-c", "4", "-m", "4", "-t", "1", "-d", str(body)]
        cmd += ["-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}{bench.METHOD}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if m is None:
        raise RuntimeError(f"h2load gave no summary: {out[-300:]}")
    return {"done": int(m.group(2)), "http_2xx": int(m.group(3))}


def measure(name: str, cmd: list[str], env: dict, port: int, frames: list[bytes], workdir: Path, calls: int) -> dict:
    h2load = bench.ensure_h2load()
    out_file = workdir / f"callgrind-{name}.out"
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}"]
    log = open(workdir / f"{name}.log", "wb")
    proc = subprocess.Popen([*vg, *cmd], env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=600)
        channel.close()
        h2load_calls(h2load, port, frames, workdir, calls)  # warm-up: caches, pool threads, first sights
        pid = str(proc.pid)
        for args in (["-i", "on", pid], ["-z", pid]):
            subprocess.run(["callgrind_control", *args], check=True, capture_output=True)
        got = h2load_calls(h2load, port, frames, workdir, calls)
        subprocess.run(["callgrind_control", "-d", "measured", pid], check=True, capture_output=True)
        deadline = time.monotonic() + 120
        dumps = []
        while time.monotonic() < deadline and not dumps:
            dumps = [p for p in workdir.glob(f"callgrind-{name}.out*") if p != out_file or p.stat().st_size]
            dumps = [p for p in dumps if "measured" in p.read_text(errors="replace")[:2000]]
            time.sleep(0.5)
        if not dumps:
            raise RuntimeError(f"{name}: callgrind wrote no dump")
        total = callgrind_total(dumps[0].read_text(errors="replace"))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(300)
        log.close()
    return {"calls": got["done"], "instructions": total, "instructions_per_call": round(total / max(1, got["done"]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per case (and as many to warm up)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench/instructions.py needs valgrind (Debian/Ubuntu: apt-get install valgrind)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="woes-auth-instructions-"))
    pepper_text = bench.new_pepper_text()
    url = f"sqlite:///{workdir / 'bench.db'}"
    keys, _admin = bench.seed(url, Pepper(Keyring.parse(pepper_text)), 300)
    unknown = [tokens.mint(tokens.KeyKind.SERVER).token for _ in range(300)]
    env = bench.server_env(workdir, pepper_text, url, WOES_AUTH_FEED_INTERVAL="100", WOES_AUTH_USAGE_FLUSH="1000")
    response = pb.AuthenticateResponse(
        principal=res.Principal(
            key_id=tokens.parse(keys[0]).key_id, workspace_id="ws-0000", kind=res.KEY_KIND_SERVER, scopes=bench.SCOPES
        )
    ).SerializeToString()
    (workdir / "response.bin").write_bytes(response)
    (workdir / "ready").mkdir()
    warm = [bench.grpc_frame(bench.request_bytes(k)) for k in keys]
    flood = [bench.grpc_frame(bench.request_bytes(k)) for k in unknown]
    cases = {}
    port = bench.free_port_block(1)
    # One process each, no supervisor: callgrind can be switched on only in the process it started.
    baseline = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'bench'); import baseline_server as b; "
        f"sys.exit(b.serve_worker(0, '127.0.0.1:{port}', Path(r'{workdir / 'response.bin'}').read_bytes(), "
        f"Path(r'{workdir / 'ready'}')))"
    )
    print(f"callgrind, {args.calls} calls per case (and as many to warm up); a few minutes per case", flush=True)
    cases["baseline"] = measure("baseline", [sys.executable, "-c", baseline], env, port, warm, workdir, args.calls)
    serve = [sys.executable, "-m", "auth_service.cli", "serve", "--workers", "1"]
    for name, frames in (("warm", warm), ("flood", flood)):
        port = bench.free_port_block(1)
        cmd = [*serve, "--listen", f"127.0.0.1:{port}"]
        cases[name] = measure(name, cmd, env, port, frames, workdir, args.calls)
    base = cases["baseline"]["instructions_per_call"]
    for case in cases.values():
        case["ratio_to_baseline"] = round(case["instructions_per_call"] / base, 3)
    results = {"machine": bench.machine(), "calls_per_case": args.calls, "cases": cases}
    out = ROOT / "bench" / "results" / "instructions.json"
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    for name, case in cases.items():
        print(f"{name:9} {case['instructions_per_call']:>9,} instructions per call  ({case['ratio_to_baseline']:.3f}x)")
    print(f"wrote {out.relative_to(ROOT)}; logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
