"""Development keys (pepper, key-encryption key) only for the embedded SQLite database or with ``--dev``.

A replica of a shared database that made up its own pepper would refuse every key issued
elsewhere and issue keys no other replica accepts: any database but the embedded SQLite one
refuses to start without configured keys (exit 2, naming each missing variable), every
command that loads keys follows the same rule, and a development key's material is never
logged.
"""

from __future__ import annotations

import json

import pytest
from grpc_health.v1 import health_pb2

from tests import conftest
from tests.support.cluster import clean_env, run_cli
from tests.support.process import health, start_serve

PEPPER_VARS = "WOES_AUTH_PEPPER or WOES_AUTH_PEPPER_FILE"
KEK_VARS = "WOES_AUTH_KEK, WOES_AUTH_KEK_FILE or WOES_AUTH_KEK_PASSPHRASE"


def _remember_dev_keys(data_dir) -> list[str]:
    """The material of the development key files in ``data_dir``, registered for the log scans."""
    found = []
    for name in ("dev-pepper", "dev-kek"):
        path = data_dir / name
        if path.exists():
            for entry in path.read_text().split():
                found.append(entry.split(":", 1)[1])
    conftest.OTHER_SECRETS.update(found)
    return found


def _assert_dev_notes_warn_without_material(log: str, materials: list[str]) -> None:
    """Both development keys are announced at WARNING (their files), and no log line holds their material."""
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    notes = [r for r in records if "DEVELOPMENT" in r["message"]]
    assert len(notes) == 2 and {r["level"] for r in notes} == {"WARNING"}, notes
    assert not any(m in log for m in materials)


@pytest.fixture
def migrated_postgres(postgres_url, tmp_path):
    upgraded = run_cli(["db", "upgrade"], clean_env(database_url=postgres_url, data_dir=tmp_path))
    assert upgraded.returncode == 0, upgraded.stderr
    return postgres_url


@pytest.mark.parametrize(
    "configured,missing,present",
    [
        ({}, (PEPPER_VARS, KEK_VARS), ()),
        ({"pepper": "p"}, (KEK_VARS,), (PEPPER_VARS,)),
        ({"kek": "k"}, (PEPPER_VARS,), (KEK_VARS,)),
    ],
)
def test_serve_on_postgres_without_configured_keys_exits_2_naming_each_missing_variable(
    migrated_postgres, tmp_path, configured, missing, present
):
    settings = {}
    if "pepper" in configured:
        settings["pepper"] = conftest.new_pepper_text()
    if "kek" in configured:
        settings["kek"] = conftest.new_kek_text()
    env = clean_env(database_url=migrated_postgres, data_dir=tmp_path / "data", workers="1", **settings)
    out = run_cli(["serve", "--listen", f"127.0.0.1:{conftest.free_port()}"], env, timeout=60)
    assert out.returncode == 2, out.stderr
    for variables in missing:
        assert variables in out.stderr
    for variables in present:
        assert variables not in out.stderr
    assert "--dev" in out.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())  # nothing was made up


def test_serve_on_postgres_with_dev_starts_on_development_keys_and_never_logs_them(migrated_postgres, tmp_path):
    data = tmp_path / "data"
    server = start_serve(data, "--dev", WOES_AUTH_DATABASE_URL=migrated_postgres, WOES_AUTH_LOG_LEVEL="DEBUG")
    try:
        assert health(server.target) == health_pb2.HealthCheckResponse.SERVING
        materials = _remember_dev_keys(data)
        assert len(materials) == 2  # a development pepper and a development key-encryption key
    finally:
        assert server.stop() == 0
    _assert_dev_notes_warn_without_material(server.log(), materials)


def test_the_embedded_sqlite_default_starts_with_no_configuration(tmp_path):
    data = tmp_path / "data"
    server = start_serve(data)
    try:
        assert health(server.target) == health_pb2.HealthCheckResponse.SERVING
        assert (data / "woes-auth.db").exists()
        materials = _remember_dev_keys(data)
        assert len(materials) == 2
    finally:
        assert server.stop() == 0
    _assert_dev_notes_warn_without_material(server.log(), materials)


def test_every_command_that_loads_keys_follows_the_rule(migrated_postgres, tmp_path):
    data = tmp_path / "data"
    env = clean_env(database_url=migrated_postgres, data_dir=data)
    boot = run_cli(["bootstrap-admin"], env)
    assert boot.returncode == 2 and PEPPER_VARS in boot.stderr and KEK_VARS not in boot.stderr
    status = run_cli(["kek", "status"], env)
    assert status.returncode == 2 and KEK_VARS in status.stderr and PEPPER_VARS not in status.stderr
    rotate = run_cli(["kek", "rotate"], env)
    assert rotate.returncode == 2 and KEK_VARS in rotate.stderr
    assert not data.exists() or not any(data.iterdir())

    boot = run_cli(["bootstrap-admin", "--dev"], env)
    assert boot.returncode == 0, boot.stderr
    conftest.MINTED.add(boot.stdout.strip().splitlines()[-1])
    assert (data / "dev-pepper").exists()
    # kek commands read keys and never make one: the development KEK is made by `serve --dev`.
    status = run_cli(["kek", "status", "--dev"], env)
    assert status.returncode == 2 and "no development key-encryption key at" in status.stderr
    server = start_serve(data, "--dev", WOES_AUTH_DATABASE_URL=migrated_postgres)
    assert server.stop() == 0
    status = run_cli(["kek", "status", "--dev"], env)
    assert status.returncode == 0, status.stderr
    assert "done: every record is under dev1" in status.stdout
    materials = _remember_dev_keys(data)
    assert len(materials) == 2
    for out in (boot, status):
        assert not any(m in out.stdout + out.stderr for m in materials)


def test_dev_and_production_exclude_each_other(tmp_path):
    env = clean_env(data_dir=tmp_path / "data", workers="1")
    out = run_cli(["serve", "--dev", "--production", "--listen", f"127.0.0.1:{conftest.free_port()}"], env)
    assert out.returncode == 2 and "exclude each other" in out.stderr


def test_production_refuses_development_keys_even_on_sqlite(tmp_path):
    env = clean_env(data_dir=tmp_path / "data", workers="1", production="1", pepper=conftest.new_pepper_text())
    out = run_cli(["serve", "--listen", f"127.0.0.1:{conftest.free_port()}"], env)
    assert out.returncode == 2
    assert "production mode needs key-encryption keys" in out.stderr and KEK_VARS in out.stderr
    assert not (tmp_path / "data" / "dev-kek").exists()
