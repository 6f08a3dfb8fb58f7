"""The client installs alone: a fresh virtual environment holding only ``pip install ./clients/python``
(the session's ``client_python`` fixture, shared with ``test_readme.py``) has none of the server's
dependencies. Slow-ish (one package install per run), but part of every ``make test``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

SERVER_ONLY = {"sqlalchemy", "argon2-cffi", "argon2-cffi-bindings", "cryptography", "xds-protos", "psycopg"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


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
