"""The time one ``Authenticate`` call spends in woes-auth's own Python, measured in a loop.

It builds a serving process's objects exactly as ``woes-auth serve`` does (the same
``auth_service.app.runtime.build``, with the settings of the environment: the benchmark's database,
pepper and throttle settings), never starts the server, and calls the registered
``Authenticate`` handler directly, request deserializer included if it has one (its first frame
takes the request's bytes and decodes them only when it must), as grpcio would on a serving
thread: once over every credential of a file to warm the caches, then in a loop. Printed as JSON:
microseconds per call, best of 7 timings, for the valid credentials (warm cache) and for the
unknown ones (after first sight: the flood; each credential refused at most 12 times, within the
per-key-id throttle's burst); and each with the processor's caches emptied before every call
(``*_cold_us``).

The call context is a stand-in holding the status a refusal sets; grpcio's own context takes a
lock in each setter, so a refusal costs somewhat more in a real call.

    python bench/handler_time.py --credentials FILE --unknown FILE
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from woes.auth.v1 import auth_service_pb2 as pb  # noqa: E402

from auth_service.api.service import SERVICE_NAME  # noqa: E402
from auth_service.app import runtime as server_mod  # noqa: E402
from auth_service.app.config import Settings, load_pepper  # noqa: E402

METHOD = f"/{SERVICE_NAME}/Authenticate"


class _Recorder:
    """The gRPC server ``build`` makes, noting the handlers registered on it."""

    def __init__(self, real):
        self._real = real
        self.handlers: dict[str, object] = {}

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler
        self._real.add_registered_method_handlers(service, handlers)

    def __getattr__(self, name):
        return getattr(self._real, name)


class _Context:
    """What a handler may ask of its call here: the status a refusal sets, the peer, the metadata."""

    __slots__ = ("_code", "_details", "_trailing")

    def __init__(self):
        self._code = self._details = self._trailing = None

    def set_code(self, code) -> None:
        self._code = code

    def code(self):
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata) -> None:
        self._trailing = metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def invocation_metadata(self):
        return ()

    def abort(self, code, details):
        raise RuntimeError(f"the handler aborted: {code}")


def handler_microseconds(requests: list[bytes], deserialize, behaviour, rounds: int = 7) -> float:
    """Each request once per round: an unknown key id is then refused at most ``rounds + 1`` times,
    within the per-key-id throttle's burst, so the flood measured is not the throttle's refusal."""

    def loop() -> float:
        start = time.perf_counter()
        for request in requests:
            behaviour(request if deserialize is None else deserialize(request), _Context())
        return time.perf_counter() - start

    return min(loop() for _ in range(rounds)) / len(requests) * 1e6


def cold_handler_microseconds(requests: list[bytes], deserialize, behaviour, flush_bytes: int = 8 << 20) -> float:
    """The same calls, each timed alone after every cache line of ``flush_bytes`` was written: the
    handler with the processor's caches cold, as when it runs between gRPC's own work on another
    of the pool's threads (an upper bound: nothing of the call left in any cache). Best of 3."""
    junk = bytearray(flush_bytes)
    line = b"\x01" * (flush_bytes // 64)
    clock = time.perf_counter

    def loop() -> float:
        spent = 0.0
        for request in requests:
            junk[::64] = line
            start = clock()
            behaviour(request if deserialize is None else deserialize(request), _Context())
            spent += clock() - start
        return spent

    return min(loop() for _ in range(3)) / len(requests) * 1e6


def _outcomes(requests: list[bytes], deserialize, behaviour) -> set:
    seen = set()
    for request in requests:
        context = _Context()
        behaviour(request if deserialize is None else deserialize(request), context)
        seen.add(None if context.code() is None else context.code().name)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credentials", type=Path, required=True, help="valid credentials, one per line")
    parser.add_argument("--unknown", type=Path, required=True, help="well-formed unknown credentials, one per line")
    parser.add_argument("--required-scope", default="conversations:read")
    parser.add_argument("--caller", default="bench")
    args = parser.parse_args()
    settings = Settings.from_env()
    settings.listen = "127.0.0.1:0"
    pepper, _note = load_pepper(settings, create=False)
    made = server_mod.new_grpc_server
    recorder = None

    def recording(*a, **kw):
        nonlocal recorder
        recorder = _Recorder(made(*a, **kw))
        return recorder

    server_mod.new_grpc_server = recording
    try:
        runtime = server_mod.build(settings, pepper)
    finally:
        server_mod.new_grpc_server = made
    handler = recorder.handlers[METHOD]
    out = {}
    for name, path, expected in (("warm_us", args.credentials, None), ("flood_us", args.unknown, "UNAUTHENTICATED")):
        requests = [
            pb.AuthenticateRequest(
                credential=line, required_scopes=[args.required_scope], caller=args.caller
            ).SerializeToString()
            for line in path.read_text().split()
        ]
        # No deserializer: the handler takes the request's bytes (and decodes them only if it must).
        call = (requests, handler.request_deserializer, handler.unary_unary)
        for when in ("first sight", "measured"):  # first sight: cache the valid ones, remember the unknown ones
            got = _outcomes(*call)
            if got != {expected}:
                raise SystemExit(f"{name}: calls ended {sorted(map(str, got))} ({when}), expected {expected}")
            if when == "first sight":
                out[name] = round(handler_microseconds(*call), 2)
                out[name.replace("_us", "_cold_us")] = round(cold_handler_microseconds(requests[:2000], *call[1:]), 2)
    runtime.store.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
