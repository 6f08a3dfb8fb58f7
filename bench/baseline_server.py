"""The benchmark's baseline: the physical limit of one unary call on this serving stack.

It serves ``woes.auth.v1.AuthService/Authenticate`` on the same machinery as
``woes-auth serve``: the same gRPC server factory (thread pool, options,
concurrency limit), the same registration (generic and registered handlers),
the same forked workers sharing the port with SO_REUSEPORT, the same
garbage-collector settings. The handler returns a pre-built, pre-serialized
response of the size of a real one and never reads the request (no
deserializer, no serializer).

With ``--python-us X`` the handler first runs X microseconds of pure Python (an
empty loop, its length calibrated when the worker starts): what a handler's own
time, holding the interpreter lock as every Python handler does, costs on this
stack, measured beside the plain baseline.

    python bench/baseline_server.py --listen 127.0.0.1:PORT --workers N \\
        --response-file FILE --ready-dir DIR [--python-us X]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from itertools import repeat
from pathlib import Path

import grpc

from auth_service.api import service
from auth_service.app import process
from auth_service.app import runtime as server_mod
from auth_service.app.config import Settings


def spin(n: int) -> None:
    for _ in repeat(None, n):  # not range: past 256 each step would allocate an int
        pass


def spin_iterations(microseconds: float) -> int:
    """How many steps of :func:`spin` take ``microseconds`` per call on this machine: guessed from a
    long loop, then corrected twice on calls of that length (best of 5 batches of 1,000 calls)."""
    if microseconds <= 0:
        return 0
    n = 200_000
    steps = max(1, round(microseconds * 1e-6 * n / min(_timed(spin, n) for _ in range(5))))
    for _ in range(2):
        per_call = min(_timed(_calls, steps) for _ in range(5)) / 1000
        steps = max(1, round(steps * microseconds * 1e-6 / per_call))
    return steps


def _calls(steps: int) -> None:
    for _ in range(1000):
        spin(steps)


def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return time.perf_counter() - start


def serve_worker(index: int, listen: str, response: bytes, ready_dir: Path, python_us: float = 0.0) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    steps = spin_iterations(python_us)

    if steps:

        def authenticate(_request: bytes, _context) -> bytes:
            spin(steps)
            return response

    else:

        def authenticate(_request: bytes, _context) -> bytes:
            return response

    handlers = {"Authenticate": grpc.unary_unary_rpc_method_handler(authenticate)}
    server = server_mod.new_grpc_server(threads=Settings.from_env().threads)  # WOES_AUTH_THREADS, as woes-auth
    server_mod.tune_gc()  # the same process settings as a woes-auth worker
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(service.SERVICE_NAME, handlers)
    if server.add_insecure_port(listen) == 0:
        return 1
    server.start()
    (ready_dir / f"worker-{index}").touch()
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--response-file", type=Path, required=True)
    parser.add_argument("--ready-dir", type=Path, required=True)
    parser.add_argument("--python-us", type=float, default=0.0, help="microseconds of pure Python per call")
    args = parser.parse_args()
    response = args.response_file.read_bytes()
    return process.supervise(
        args.workers, lambda i: serve_worker(i, args.listen, response, args.ready_dir, args.python_us)
    )


if __name__ == "__main__":
    sys.exit(main())
