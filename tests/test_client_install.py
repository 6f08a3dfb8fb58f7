"""The client installs alone, and the README's "Use it from another service" snippet works as written.

Both run in a fresh virtual environment holding only ``pip install ./clients/python``:
slow-ish (one package install), but part of every ``make test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client_helpers import issue, revoke

ROOT = Path(__file__).resolve().parent.parent
SERVER_ONLY = {"sqlalchemy", "argon2-cffi", "argon2-cffi-bindings", "cryptography", "xds-protos", "psycopg"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def client_python(tmp_path_factory) -> Path:
    """The python of a new venv in which only the client distribution was installed."""
    root = tmp_path_factory.mktemp("client-only")
    source = root / "client-src"
    shutil.copytree(
        ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build")
    )
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=800,
        cwd=root,
    )
    assert out.returncode == 0, f"pip install of the client failed:\n{out.stdout}\n{out.stderr}"
    return python


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "WOES_"))}
    env.update(extra)
    return env


def test_client_installs_without_server_dependencies(client_python):
    listed = subprocess.run(
        [str(client_python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"woes-auth-client", "grpcio", "protobuf", "grpcio-status"} <= installed
    assert not installed & SERVER_ONLY, f"server dependencies were installed: {sorted(installed & SERVER_ONLY)}"

    probe = (
        "import importlib.util, woes_auth_client\n"
        "from woes.auth.v1 import auth_service_pb2_grpc\n"
        "for name in ('sqlalchemy', 'argon2', 'cryptography', 'auth_service'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "print(woes_auth_client.__file__)\n"
    )
    out = subprocess.run(
        [str(client_python), "-c", probe], capture_output=True, text=True, timeout=120, cwd=client_python.parent
    )
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout  # the installed copy, not the source tree


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it from another service", 1)
    assert len(section) == 2, "README.md has no 'Use it from another service' section"
    body = re.split(r"\n## ", section[1], maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert len(blocks) == 1, "the section should hold exactly one python block"
    return blocks[0]


def test_readme_snippet_is_short():
    code = [line for line in readme_snippet().splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 15, f"{len(code)} lines of code"


def test_readme_snippet_runs_against_a_real_server(live_server, client_python, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(readme_snippet())
    key = issue(live_server, "ws-readme", ["conversations:read", "messages:write"])

    def run(credential: str) -> str:
        out = subprocess.run(
            [str(client_python), str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_clean_env(WOES_AUTH_TARGET=live_server.target, WOES_API_KEY=credential),
        )
        assert out.returncode == 0, out.stderr
        assert credential not in out.stdout + out.stderr
        return out.stdout

    assert run(key.secret).split() == ["workspace", "ws-readme", "scopes", "conversations:read,messages:write"]
    narrow = issue(live_server, "ws-readme", ["messages:read"])
    assert run(narrow.secret).strip() == "refused: INSUFFICIENT_SCOPE"
    revoke(live_server, key.key.key_id)
    assert run(key.secret).strip() == "refused: CREDENTIAL_REVOKED"
