"""Shared fixtures: real servers on ephemeral ports, real SQLite and PostgreSQL, a log of everything.

Every credential minted in this process is recorded in ``MINTED`` and every log
line of the suite (in-process and from subprocess servers started through
``server_log_path``) is written under ``LOG_DIR``; when the session ends, whichever tests ran,
``pytest_sessionfinish`` scans them all and fails the run if one holds a secret.

Helpers the tests share live in ``tests/support``; tests are in ``tests/unit`` (one module,
in-process), ``tests/integration`` (a real server over a real channel, SQLite and PostgreSQL) and
``tests/process`` (subprocesses: the CLI, ``make run``, fresh virtual environments).
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2_grpc

from auth_service.app import runtime as server_mod
from auth_service.app.config import Settings
from auth_service.domain import tokens
from auth_service.domain.crypto import Keyring, Pepper
from auth_service.domain.keys.manager import CredentialManager
from auth_service.ops import logs
from tests.support.log_scan import leaked_secrets
from tests.support.venv import client_only_venv

# -- secrets and logs of the whole run ----------------------------------------

MINTED: set[str] = set()
"""Every credential string minted in this process, plus those tests add from subprocesses."""

OTHER_SECRETS: set[str] = set()
"""Peppers, keys and plaintexts the suite used (scanned for too)."""

LOG_DIR = Path(os.environ.get("WOES_AUTH_TEST_LOG_DIR", "")) if os.environ.get("WOES_AUTH_TEST_LOG_DIR") else None

_original_mint = tokens.mint


def _recording_mint(kind, key_id=None):
    cred = _original_mint(kind, key_id)
    MINTED.add(cred.token)
    return cred


tokens.mint = _recording_mint

_original_assemble = tokens.assemble


def _recording_assemble(kind, key_id, secret_part):
    cred = _original_assemble(kind, key_id, secret_part)
    MINTED.add(cred.token)
    return cred


tokens.assemble = _recording_assemble  # conversation history secrets are MACs, not minted


def pytest_configure(config):
    global LOG_DIR
    if LOG_DIR is None:
        LOG_DIR = Path(config.rootpath) / ".pytest_cache" / "woes-auth-logs"
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(LOG_DIR / "in-process.log")
    handler.setFormatter(logs.JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def server_log_path(name: str) -> Path:
    """A file for a subprocess server's output; scanned when the session ends."""
    assert LOG_DIR is not None
    return LOG_DIR / f"{name}-{uuid.uuid4().hex[:8]}.log"


# -- small helpers -------------------------------------------------------------


def new_pepper_text(key_id: str = "t1") -> str:
    text = f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    OTHER_SECRETS.add(text.split(":", 1)[1])
    return text


def new_kek_text(key_id: str = "kek1") -> str:
    """A key-encryption key entry (``id:base64``), recorded for the secret scans."""
    text = f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    OTHER_SECRETS.add(text.split(":", 1)[1])
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


PG_SKIP_MESSAGE = (
    "PostgreSQL is not reachable at 127.0.0.1:5432; start it (trust auth, user postgres) "
    "to run these tests, or set CI=true to make its absence a failure"
)


@pytest.fixture(scope="session")
def postgres_admin_url():
    """A URL of the PostgreSQL server's `postgres` database, or skip (fail under CI=true)."""
    if not postgres_reachable():
        if _ci():
            pytest.fail("CI=true but PostgreSQL is not reachable at 127.0.0.1:5432")
        pytest.skip(PG_SKIP_MESSAGE)
    return os.environ.get("WOES_AUTH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_url(postgres_admin_url):
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"woes_auth_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


_PG_SKIPPED: list[str] = []


def pytest_collection_modifyitems(config, items):
    """Every test that uses PostgreSQL carries the ``postgres`` marker (so its skips are counted)."""
    for item in items:
        if {"postgres_url", "postgres_admin_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_runtest_logreport(report):
    if report.skipped and "postgres" in report.keywords:
        _PG_SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """The run fails if a log line of the suite holds a secret the suite made, or (under CI=true) if
    a PostgreSQL test was skipped, whatever made it skip."""
    failures: list[str] = []
    if LOG_DIR is not None and LOG_DIR.is_dir():
        leaked = leaked_secrets(LOG_DIR, MINTED | OTHER_SECRETS)
        if leaked:
            failures.append(f"secrets found in the logs of this run ({LOG_DIR}): {leaked}")
    if _ci() and _PG_SKIPPED:
        failures.append(f"CI=true but {len(_PG_SKIPPED)} PostgreSQL test(s) were skipped:")
        failures += _PG_SKIPPED[:20]
    if failures:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in failures:
            if reporter is not None:
                reporter.write_line(line, red=True)
            else:
                print(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """Parametrises a test over SQLite (a file) and PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auth.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'auth.db'}"


@pytest.fixture
def pepper() -> Pepper:
    return Pepper(Keyring.parse(new_pepper_text()))


# -- a real server ---------------------------------------------------------------


@dataclass
class LiveServer:
    """A started server on an ephemeral port with a channel, a stub and an admin credential."""

    runtime: server_mod.Runtime
    channel: grpc.Channel
    stub: auth_service_pb2_grpc.AuthServiceStub
    admin_secret: str = field(repr=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.runtime.port}"

    @property
    def admin_md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin_secret}"),)

    @property
    def manager(self) -> CredentialManager:
        return self.runtime.manager


def start_live_server(database_url: str, pepper: Pepper, **overrides) -> LiveServer:
    settings = Settings(
        listen="127.0.0.1:0", database_url=database_url, shutdown_grace=1.0, shutdown_drain=0.0, kek=new_kek_text()
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    runtime = server_mod.start(server_mod.build(settings, pepper))
    admin = runtime.manager.bootstrap_admin("test admin").secret
    channel = grpc.insecure_channel(f"127.0.0.1:{runtime.port}")
    return LiveServer(runtime, channel, auth_service_pb2_grpc.AuthServiceStub(channel), admin)


@pytest.fixture
def live_server(sqlite_url, pepper):
    """A real server on SQLite."""
    srv = start_live_server(sqlite_url, pepper)
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


@pytest.fixture
def live_server_any_db(database_url, pepper):
    """A real server, once on SQLite and once on PostgreSQL."""
    srv = start_live_server(database_url, pepper)
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


# -- a client-only environment -----------------------------------------------------


@pytest.fixture(scope="session")
def client_python(tmp_path_factory) -> Path:
    """The python of a new venv in which only the client distribution was installed (one per run)."""
    return client_only_venv(tmp_path_factory.mktemp("client-only")) / "python"
