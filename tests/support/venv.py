"""A fresh virtual environment holding the client distribution alone, as a downstream service has it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

CLIENT_INSTALL = "pip install ./clients/python"
"""The one install command the README gives a downstream service; ``client_only_venv`` runs it."""


def client_only_venv(root: Path) -> Path:
    """Make ``root/venv`` and run ``CLIENT_INSTALL`` in it; return the venv's ``bin`` folder.

    The install runs from a copy of ``clients/python`` under ``root`` (pip builds in the source
    folder, and the working tree must stay clean), so ``./clients/python`` names that copy.
    """
    shutil.copytree(
        ROOT / "clients" / "python",
        root / "clients" / "python",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"),
    )
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    bin_dir = root / "venv" / "bin"
    program, *args = CLIENT_INSTALL.split()
    out = subprocess.run(
        [str(bin_dir / program), *args, "--quiet", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=800,
        cwd=root,
    )
    assert out.returncode == 0, f"{CLIENT_INSTALL} failed:\n{out.stdout}\n{out.stderr}"
    return bin_dir
