"""Key records and a clock the key tests share."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.crypto import Pepper
from auth_service.domain.keys import authenticate, hot_path
from auth_service.domain.keys import manager as manager_mod
from auth_service.domain.keys.records import KeyRecord
from auth_service.domain.tokens import KeyKind

ACTOR = "admin:test"


class ShiftedClock:
    """Moves the manager's notion of 'now' forward (wall clock only) without sleeping."""

    def __init__(self):
        self.offset = 0.0

    # stands in for the ``time`` module of the key rules (see shift_clock)
    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return utcnow() + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def shift_clock(monkeypatch, clock: ShiftedClock) -> None:
    """Make ``clock`` the key rules' notion of now: wall-clock time and ``utcnow``."""
    for module in (authenticate, hot_path):
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(manager_mod, "utcnow", clock.utcnow)


def make_record(key_id: str | None = None, **kw) -> KeyRecord:
    fields = dict(
        key_id=key_id or tokens.new_key_id(),
        workspace_id="ws-1",
        kind=KeyKind.SERVER,
        display_name="name",
        scopes=("messages:read",),
        allowed_origins=(),
        digest=bytes(range(32)),
        pepper_id="p1",
        hint="woes_sk_xxxxxxxxxxxx_...abcd",
        create_time=utcnow(),
    )
    fields.update(kw)
    return KeyRecord(**fields)


def audit(action: str = "key.issue", key_id: str = "", **kw) -> AuditEvent:
    return AuditEvent(action=action, actor="admin:test", outcome="ok", key_id=key_id, **kw)


def record_issued_elsewhere(cred: tokens.Credential, pepper: Pepper) -> KeyRecord:
    """The stored record of exactly ``cred``, as another process of the deployment issues it."""
    return KeyRecord(
        key_id=cred.key_id,
        workspace_id="ws-late",
        kind=cred.kind,
        display_name="issued after the miss",
        scopes=("messages:read",),
        allowed_origins=(),
        digest=pepper.digest(cred.token),
        pepper_id=pepper.primary_id,
        hint=tokens.hint(cred.token),
        create_time=utcnow(),
    )
