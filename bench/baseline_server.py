"""The benchmark's baseline: the physical limit of one unary call on this serving stack.

It serves ``woes.auth.v1.AuthService/Authenticate`` on the same machinery as
``woes-auth serve``: the same gRPC server factory (thread pool, options,
concurrency limit), the same registration (generic and registered handlers),
the same forked workers sharing the port with SO_REUSEPORT, the same
garbage-collector settings. The handler returns a pre-built, pre-serialized
response of the size of a real one and never reads the request (no
deserializer, no serializer).

    python bench/baseline_server.py --listen 127.0.0.1:PORT --workers N \\
        --response-file FILE --ready-dir DIR
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

import grpc

from auth_service import rpc
from auth_service import server as server_mod


def serve_worker(index: int, listen: str, response: bytes, ready_dir: Path) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def authenticate(_request: bytes, _context) -> bytes:
        return response

    handlers = {"Authenticate": grpc.unary_unary_rpc_method_handler(authenticate)}
    server = server_mod.new_grpc_server()
    server_mod.tune_gc()  # the same process settings as a woes-auth worker
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(rpc.SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(rpc.SERVICE_NAME, handlers)
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
    args = parser.parse_args()
    response = args.response_file.read_bytes()
    return server_mod.supervise(args.workers, lambda i: serve_worker(i, args.listen, response, args.ready_dir))


if __name__ == "__main__":
    sys.exit(main())
