"""The README runs as written.

Its walk-through and its "Use it from another service" section are marked with HTML comments
before each fenced block:

- ``<!-- walkthrough: server -->``: the command that starts the server (run in the background);
- ``<!-- walkthrough -->``: shell commands, run in one bash session in README order, so a
  variable is known only if an earlier block set it (``set -u``); every command must succeed;
- ``<!-- walkthrough: fails -->``: the same, but the block's last command must fail;
- ``<!-- walkthrough: client-install -->``: the install command of the client, which the shared
  ``client_python`` fixture runs in a fresh venv (``tests/venv_helpers.py``);
- ``<!-- walkthrough: snippet -->``: Python saved as ``check.py``;
- ``<!-- walkthrough: client -->``: shell commands run like the others, in the client-only venv,
  in the folder holding ``check.py``.

A ```` ```text ```` block right after a marked shell block is what that block prints (stdout and
stderr). ``...`` within a line stands for any text of that line, a line of ``...`` alone for any
number of lines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import conftest
from tests.support.paths import ROOT
from tests.support.process import base_env
from tests.support.venv import CLIENT_INSTALL

CREDENTIAL = re.compile(r"woes_[a-z]{2}_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}")
BLOCK = re.compile(r"^<!-- walkthrough(?::\s*([\w-]+))? -->\n```\w*\n(.*?)^```\n(?:```text\n(.*?)^```$)?", re.M | re.S)
KINDS = {"", "server", "fails", "client-install", "snippet", "client"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass
class Block:
    kind: str
    text: str
    line: int
    expected: str | None = None


def readme_blocks(text: str) -> list[Block]:
    """The marked blocks of the README in order, each with the output block that follows it."""
    blocks: list[Block] = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        kind = match.group(1) or ""
        assert kind in KINDS, f"README.md:{line}: unknown walkthrough kind {kind!r}"
        blocks.append(Block(kind, match.group(2), line, match.group(3)))
    assert len(blocks) == text.count("<!-- walkthrough"), "a walkthrough marker is not right before a fenced block"
    return blocks


def output_pattern(expected: str) -> re.Pattern:
    parts = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*?".join(re.escape(piece) for piece in line.rstrip().split("...")) + r"\n")
    return re.compile("".join(parts))


def shown_matches(expected: str, actual: str) -> bool:
    lines = [line.rstrip() for line in actual.rstrip("\n").splitlines()]
    return output_pattern(expected).fullmatch("\n".join(lines) + "\n") is not None


def one(blocks: list[Block], kind: str) -> Block:
    found = [b for b in blocks if b.kind == kind]
    assert len(found) == 1, f"README.md should have exactly one '{kind}' walkthrough block, has {len(found)}"
    return found[0]


def session_script(blocks: list[Block], out: Path, client_bin: Path, client_dir: Path) -> str:
    """One bash script running the shell blocks in order; each block's output and status go to files."""
    lines = [
        "set -u -o pipefail",
        f'__OUT="{out}"',
        'trap \'printf "%s\\n" "$?" >> "$__OUT/$__N.failed"\' ERR',
    ]
    for n, block in enumerate(blocks):
        if block.kind not in ("", "fails", "client"):
            continue
        lines.append(f"__N={n}")
        lines.append(f'exec >"$__OUT/{n}.out" 2>&1')
        if block.kind == "client":  # "in that environment": the client-only venv, where check.py is
            lines.append(f'cd "{client_dir}" && source "{client_bin}/activate"')
        lines.append(block.text.rstrip("\n"))
        lines.append(f'printf "%s\\n" "$?" > "$__OUT/{n}.rc"')
    lines.append('set > "$__OUT/variables"')
    return "\n".join(lines) + "\n"


def start_server(block: Block, env: dict[str, str], port: int) -> tuple[subprocess.Popen, Path]:
    log_path = conftest.server_log_path("readme-server")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", block.text],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and the server it starts, one process group
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if (
                    health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return proc, log_path
            except grpc.RpcError:
                time.sleep(0.3)
    finally:
        channel.close()
    stop(proc)
    pytest.fail(f"the README's server block did not serve:\n{log_path.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_readme_marks_its_walkthrough():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert one(blocks, "server").text.strip() == "make run"
    assert one(blocks, "client-install").text.strip() == CLIENT_INSTALL
    one(blocks, "snippet")
    one(blocks, "client")
    shell = [b for b in blocks if b.kind in ("", "fails")]
    assert len(shell) >= 5, "the walk-through lost its shell blocks"
    assert all(b.expected is not None for b in blocks if b.kind == "fails"), "a refusal needs its shown output"


def test_the_readme_snippet_is_short():
    snippet = one(readme_blocks((ROOT / "README.md").read_text()), "snippet").text
    code = [line for line in snippet.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 15, f"{len(code)} lines of code"


def test_shown_output_matching():
    shown = '{\n  "key_id": "...",\n...\n  "state": "ACTIVE"\n}\n'
    assert shown_matches(shown, '{\n  "key_id": "abc",\n  "a": 1,\n  "b": 2,\n  "state": "ACTIVE"\n}\n')
    assert shown_matches(shown, '{\n  "key_id": "",\n  "state": "ACTIVE"\n}')
    assert not shown_matches(shown, '{\n  "key_id": "abc",\n  "state": "REVOKED"\n}\n')
    assert not shown_matches('"key_id": "..."\n', '"key_id": "a\nb"\n')  # within a line only
    assert not shown_matches("ws-demo\n", "ws-demo\nmore\n")


def test_the_walkthrough_runs_as_written(tmp_path, client_python):
    for tool in ("make", "jq"):  # what the README says it needs beside .venv
        if shutil.which(tool) is None:
            pytest.fail(f"the README's walk-through needs {tool}: install it (Debian: apt-get install {tool})")
    blocks = readme_blocks((ROOT / "README.md").read_text())
    port = conftest.free_port()
    env = base_env(tmp_path / "data", WOES_AUTH_LISTEN=f"127.0.0.1:{port}", WOES_AUTH_WORKERS="1")
    # A variable the walk-through uses is one it sets: none may come from the test's environment.
    for name in set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", "".join(b.text for b in blocks))) - {"WOES_AUTH_LISTEN"}:
        env.pop(name, None)
    client_dir = tmp_path / "service"
    client_dir.mkdir()
    (client_dir / "check.py").write_text(one(blocks, "snippet").text)
    out = tmp_path / "out"
    out.mkdir()

    server, server_log = start_server(one(blocks, "server"), env, port)
    try:
        script = session_script(blocks, out, client_python.parent, client_dir)
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        stop(server)
    variables = (out / "variables").read_text(errors="replace") if (out / "variables").exists() else ""
    made = set(CREDENTIAL.findall(variables))
    conftest.MINTED.update(made)  # the final log scan looks for them too

    problems = []
    for n, block in enumerate(blocks):
        if block.kind not in ("", "fails", "client"):
            continue
        where = f"README.md:{block.line}"
        shown = (out / f"{n}.out").read_text(errors="replace") if (out / f"{n}.out").exists() else ""
        if not (out / f"{n}.rc").exists():
            problems.append(f"{where}: the session stopped in this block (bash: {done.stderr.strip()})\n{shown}")
            break
        failed = (out / f"{n}.failed").read_text().split() if (out / f"{n}.failed").exists() else []
        last = int((out / f"{n}.rc").read_text())
        if block.kind == "fails":
            if last == 0:
                problems.append(f"{where}: the block's last command should fail and succeeded\n{shown}")
        elif failed:
            problems.append(f"{where}: a command failed (exit {', '.join(failed)})\n{shown}")
        if block.expected is not None and not shown_matches(block.expected, shown):
            problems.append(f"{where}: printed\n{shown}\ninstead of\n{block.expected}")
        assert not CREDENTIAL.search(shown), f"{where}: a whole credential was printed"
    assert not problems, "\n\n".join(problems) + f"\n\nserver log: {server_log}"
    assert len(made) >= 4, "the walk-through's admin, server, widget and API credentials were not all seen"


# -- the conversations example (examples/conversations/README.md) -------------------------------------

EXAMPLE = ROOT / "examples" / "conversations"
EXAMPLE_BLOCK = re.compile(
    r"^<!-- example(?::\s*([\w-]+))? -->\n```\w*\n(.*?)^```\n(?:```text\n(.*?)^```$)?", re.M | re.S
)


def example_blocks() -> list[Block]:
    text = (EXAMPLE / "README.md").read_text()
    blocks = [
        Block(m.group(1) or "", m.group(2), text.count("\n", 0, m.start()) + 1, m.group(3))
        for m in EXAMPLE_BLOCK.finditer(text)
    ]
    assert len(blocks) == text.count("<!-- example"), "an example marker is not right before a fenced block"
    assert {b.kind for b in blocks} == {"", "fails", "install", "service"}
    return blocks


def test_the_conversations_example_runs_as_written(tmp_path):
    """The example's README, verbatim: its install line in a fresh venv (nothing else in it), the
    service started from a folder holding only ``examples/`` against a real woes-auth, and its
    calls with the repository's grpcurl, each block's output as shown."""
    if shutil.which("jq") is None:
        pytest.fail("the example's README needs jq: install it (Debian: apt-get install jq)")
    blocks = example_blocks()
    (install,) = [b for b in blocks if b.kind == "install"]
    (service,) = [b for b in blocks if b.kind == "service"]
    program, *args = install.text.split()
    assert program == "pip" and args[:2] == ["install", "./clients/python"], install.text
    shutil.copytree(ROOT / "clients" / "python", tmp_path / "clients" / "python")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    venv_bin = tmp_path / "venv" / "bin"
    done = subprocess.run(
        [str(venv_bin / "pip"), *args, "--quiet", "--disable-pip-version-check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copytree(ROOT / "examples", tmp_path / "app" / "examples", ignore=shutil.ignore_patterns("__pycache__"))

    port = conftest.free_port()
    env = base_env(
        tmp_path / "data",
        WOES_AUTH_LISTEN=f"127.0.0.1:{port}",
        WOES_AUTH_WORKERS="1",
        CONVERSATIONS_LISTEN=f"127.0.0.1:{conftest.free_port()}",
    )
    for name in ("ADMIN", "SECRET", "AUTH", "SVC", "WOES_AUTH_TARGET"):
        env.pop(name, None)
    service_env = dict(env, PATH=f"{venv_bin}:{env['PATH']}", VIRTUAL_ENV=str(tmp_path / "venv"))
    auth_server, _ = start_server(Block("server", "make run", 0), env, port)  # as the README says
    log_path = conftest.server_log_path("example-service")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", service.text],
            cwd=tmp_path / "app",
            env=service_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        channel = grpc.insecure_channel(env["CONVERSATIONS_LISTEN"])
        try:
            grpc.channel_ready_future(channel).result(timeout=60)
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        finally:
            channel.close()
        shell = [b for b in blocks if b.kind in ("", "fails")]
        out = tmp_path / "out"
        out.mkdir()
        script = session_script(shell, out, venv_bin, tmp_path / "app")
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        stop(proc)
        stop(auth_server)
    variables = (out / "variables").read_text(errors="replace") if (out / "variables").exists() else ""
    conftest.MINTED.update(CREDENTIAL.findall(variables))
    problems = []
    for n, block in enumerate(shell):
        where = f"examples/conversations/README.md:{block.line}"
        shown = (out / f"{n}.out").read_text(errors="replace") if (out / f"{n}.out").exists() else ""
        if not (out / f"{n}.rc").exists():
            problems.append(f"{where}: the session stopped in this block ({done.stderr.strip()})\n{shown}")
            break
        last = int((out / f"{n}.rc").read_text())
        if block.kind == "fails" and last == 0:
            problems.append(f"{where}: the block's last command should fail and succeeded\n{shown}")
        elif block.kind == "" and ((out / f"{n}.failed").exists() or last != 0):
            problems.append(f"{where}: a command failed\n{shown}")
        if block.expected is not None and not shown_matches(block.expected, shown):
            problems.append(f"{where}: printed\n{shown}\ninstead of\n{block.expected}")
    assert not problems, "\n\n".join(problems) + f"\n\nservice log: {log_path}"


def test_the_examples_generated_code_is_fresh(tmp_path):
    """``examples/conversations/generated`` is what ``make protos`` writes from the example's proto."""
    done = subprocess.run(["make", "-s", "protos", f"EXAMPLE_GEN={tmp_path}", f"GEN={tmp_path / 'contract'}"], cwd=ROOT)
    assert done.returncode == 0
    fresh = sorted(p.name for p in tmp_path.glob("woes_conversations_pb2*"))
    assert fresh == ["woes_conversations_pb2.py", "woes_conversations_pb2.pyi", "woes_conversations_pb2_grpc.py"]
    for name in fresh:
        assert (EXAMPLE / "generated" / name).read_text() == (tmp_path / name).read_text(), f"{name}: run make protos"
