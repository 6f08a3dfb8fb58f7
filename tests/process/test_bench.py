"""The benchmark's own pieces that need no load generator: the gRPC frame h2load posts, the CPU
accounting of a process group, and the table printed from a results file."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import time

import pytest
from woes.auth.v1 import auth_service_pb2 as pb

from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grpc_frame_is_a_length_prefixed_uncompressed_message(bench):
    message = pb.AuthenticateRequest(credential="x" * 70, required_scopes=["messages:read"]).SerializeToString()
    frame = bench.grpc_frame(message)
    assert frame[0] == 0  # not compressed
    assert struct.unpack(">I", frame[1:5])[0] == len(message)
    assert pb.AuthenticateRequest.FromString(frame[5:]).credential == "x" * 70


def test_group_cpu_counts_a_busy_process_of_the_group_and_nothing_else(bench):
    # A child in its own session (its own process group) that burns about half a second of CPU.
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"],
        start_new_session=True,
    )
    try:
        seen = 0.0
        while busy.poll() is None:
            seen = max(seen, bench.group_cpu_seconds(busy.pid))
            time.sleep(0.02)
    finally:
        busy.wait()
    assert 0.2 <= seen <= 5.0
    assert bench.group_cpu_seconds(busy.pid) == 0.0  # exited: nothing left in the group
    assert bench.group_cpu_seconds(os.getpgrp()) >= 0.0


def test_the_committed_results_render_as_the_performance_table(bench):
    results = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    table = bench.table(results)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| case |"))
    assert "server CPU µs/call" in header
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    numbers = [row.split("|")[1].strip().split(" ")[0] for row in rows]
    assert {"1.", "2.", "3.", "4.", "5."} <= set(numbers) and numbers == sorted(numbers)
    # docs/performance.md shows this very text, from the committed results, not edited by hand; no other
    # document repeats the numbers.
    assert table in (ROOT / "docs" / "performance.md").read_text(), "docs/performance.md does not show the results"
    assert rows[0] not in (ROOT / "README.md").read_text()


def test_handler_time_measures_the_registered_handler_on_the_benchmark_database(bench, tmp_path):
    """bench/handler_time.py times warm and flood calls of the real handler, and refuses to time a
    set whose calls do not end as expected (a valid set with an unknown credential in it)."""
    from auth_service.domain import tokens
    from auth_service.domain.crypto import Keyring, Pepper

    pepper_text = bench.new_pepper_text()
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    valid, _admin = bench.seed(url, Pepper(Keyring.parse(pepper_text)), 50)
    unknown = [tokens.mint(tokens.KeyKind.SERVER).token for _ in range(50)]
    env = bench.server_env(tmp_path, pepper_text, url)
    got = bench.handler_time(tmp_path, env, valid, unknown)
    assert set(got) == {"warm_us", "warm_cold_us", "flood_us", "flood_cold_us"}
    assert all(0 < value < 10_000 for value in got.values())
    with pytest.raises(RuntimeError, match="warm_us: calls ended"):
        bench.handler_time(tmp_path, env, valid + unknown[:1], unknown)


def test_the_baseline_spends_the_python_time_it_is_given():
    spec = importlib.util.spec_from_file_location("bench_baseline", ROOT / "bench" / "baseline_server.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    assert baseline.spin_iterations(0) == 0
    short, long = baseline.spin_iterations(2), baseline.spin_iterations(200)
    assert 0 < short < long  # calibrated on this machine: no claim about its speed


def test_instruction_totals_are_read_from_a_callgrind_dump():
    spec = importlib.util.spec_from_file_location("bench_instructions", ROOT / "bench" / "instructions.py")
    instructions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(instructions)
    dump = "version: 1\ncreator: callgrind-3.19.0\ndesc: Trigger: dump measured\nevents: Ir\nsummary: 709497484\ntotals: 709497569\n"
    assert instructions.callgrind_total(dump) == 709497569
    assert instructions.callgrind_total("events: Ir\nsummary: 12\n") == 12
    with pytest.raises(ValueError):
        instructions.callgrind_total("not a dump")
