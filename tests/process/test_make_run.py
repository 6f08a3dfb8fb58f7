"""`make run`, the README's first command, serves and answers the operators' grpcurl health check."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests import conftest
from tests.support.grpcurl import GRPCURL
from tests.support.paths import ROOT
from tests.support.process import base_env


def test_make_run_serves_and_grpcurl_health_says_serving(tmp_path):
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    port = conftest.free_port()
    env = base_env(tmp_path, WOES_AUTH_LISTEN=f"127.0.0.1:{port}", WOES_AUTH_WORKERS="1")
    log_path = conftest.server_log_path("make-run")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and the server it starts, one process group
        )
    try:
        answer = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            out = subprocess.run(
                [str(GRPCURL), "-plaintext", f"127.0.0.1:{port}", "grpc.health.v1.Health/Check"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if out.returncode == 0:
                answer = out.stdout
                break
            time.sleep(0.3)
        assert proc.poll() is None, f"make run exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
        assert answer is not None and '"status": "SERVING"' in answer, log_path.read_text()[-2000:]
        assert (tmp_path / "woes-auth.db").exists(), "make run did not use the configured data folder"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
