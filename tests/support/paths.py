"""Where the project and its tests are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The project's root."""

TESTS = ROOT / "tests"
"""The tests' root (``unit/``, ``integration/``, ``process/``, ``corpus/``)."""
