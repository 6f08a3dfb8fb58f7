"""The grpcurl binary installed next to the interpreter (``make venv``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    if not GRPCURL.exists():
        pytest.fail(f"grpcurl is not installed next to the interpreter ({GRPCURL.name}); run 'make venv'")
    return subprocess.run(
        [str(GRPCURL), "-plaintext", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
