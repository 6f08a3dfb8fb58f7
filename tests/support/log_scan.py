"""The scan of every log line the suite wrote for a secret the suite made."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def leaked_secrets(log_dir: Path, secrets: Iterable[str]) -> list[str]:
    """The secrets found in any ``*.log`` file of ``log_dir``, each shown by its first 20 characters."""
    text = "\n".join(f.read_text(errors="replace") for f in sorted(log_dir.glob("*.log")))
    return sorted(s[:20] + "..." for s in set(secrets) if s and s in text)
