"""The end of every run scans the suite's logs (tests/conftest.py): a leaked secret fails the run,
whichever tests ran and in whatever order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

LEAKING_TEST = """
import logging

from tests import conftest


def test_logs_a_secret_it_made():
    material = "plain-material-" + "{marker}"
    conftest.OTHER_SECRETS.add(material)
    logging.getLogger("auth_service.test").warning("loaded %s", material)
"""

CLEAN_TEST = """
import logging

from tests import conftest


def test_logs_no_secret():
    conftest.OTHER_SECRETS.add("plain-material-never-logged")
    logging.getLogger("auth_service.test").warning("loaded the material")
"""


def _run(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_scanned.py"
    test_file.write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["WOES_AUTH_TEST_LOG_DIR"] = str(tmp_path / "logs")  # never the suite's own log folder
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", str(ROOT / "pyproject.toml")]
        + ["--rootdir", str(ROOT), "-p", "no:cacheprovider", "-q", str(test_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_secret_in_a_log_fails_the_run_though_every_test_passed(tmp_path):
    done = _run(tmp_path, LEAKING_TEST.replace("{marker}", "x7Kq2"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "secrets found in the logs of this run" in done.stdout and "plain-material-x7Kq" in done.stdout


def test_clean_logs_pass(tmp_path):
    done = _run(tmp_path, CLEAN_TEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "secrets found" not in done.stdout
