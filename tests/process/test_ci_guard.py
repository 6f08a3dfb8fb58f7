"""Under CI=true a PostgreSQL test may not skip: the run fails, whatever made it skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

SKIPPING_TESTS = """
import pytest


@pytest.mark.postgres
def test_marked_and_skipped():
    pytest.skip("pretend PostgreSQL is missing")


def test_uses_the_fixture(postgres_url):
    assert postgres_url


def test_plain():
    assert True
"""


def _run(tmp_path: Path, ci: str, pg_url: str | None = None) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_guarded.py"
    test_file.write_text(SKIPPING_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "WOES_AUTH_TEST_PG_URL", "PYTEST_ADDOPTS")}
    env["CI"] = ci
    env["WOES_AUTH_TEST_LOG_DIR"] = str(tmp_path / "logs")  # never the suite's own log folder
    if pg_url:
        env["WOES_AUTH_TEST_PG_URL"] = pg_url
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            "-p",
            "no:cacheprovider",
            "-q",
            str(test_file),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skipped_postgres_test_fails_the_run_under_ci(tmp_path):
    done = _run(tmp_path, ci="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CI=true but" in done.stdout and "PostgreSQL test(s) were skipped" in done.stdout
    assert "test_marked_and_skipped" in done.stdout


def test_the_same_skip_is_only_a_skip_outside_ci(tmp_path):
    done = _run(tmp_path, ci="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" in done.stdout
