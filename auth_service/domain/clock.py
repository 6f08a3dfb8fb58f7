"""The domain's wall clock: aware UTC datetimes (records, audit rows, expiry)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)
