"""``woes-auth kek status|rotate``: which key wraps how many test credentials, and rotation.

A rotation makes one key the primary agreed in the database (after which every process
seals new records under it and no write under another key commits, see
:class:`auth_service.domain.ports.KekStore`), then re-wraps every record still under another key.
It reports done only when, after that, no record is under another key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from auth_service.domain.test_credentials import RewrapReport, TestCredentials

ACTOR = "cli:kek-rotate"


class RotationRefused(Exception):
    """Nothing can be rotated with this configuration; the message says what to change (no key material)."""


@dataclass(frozen=True)
class KekState:
    agreed: str  # the primary agreed in the database ("" until agreed)
    configured: str  # the first key of this process's ring
    configured_ids: tuple[str, ...]
    counts: dict[str, int]  # test credentials per key id

    @property
    def primary(self) -> str:
        return self.agreed or self.configured

    @property
    def pending(self) -> int:
        """Records under another key than the primary."""
        return sum(n for kek_id, n in self.counts.items() if kek_id != self.primary)

    def lines(self) -> list[str]:
        agreed = "agreed in the database" if self.agreed else "not agreed yet: the first configured key"
        out = [
            f"primary key-encryption key: {self.primary} ({agreed}); configured here: {', '.join(self.configured_ids)}"
        ]
        out += [f"  {kek_id}: {n} test credential(s)" for kek_id, n in sorted(self.counts.items())]
        out.append(f"{self.pending} record(s) still to re-wrap")
        if self.primary not in self.configured_ids:
            out.append(f"the primary {self.primary} is not configured here: add it to read or re-wrap records")
        if self.configured != self.primary:
            out.append(
                f"the first configured key {self.configured} is not the primary; `woes-auth kek rotate` makes it so"
            )
        if self.pending:
            out.append("not done: run `woes-auth kek rotate`; keep every key still in use configured")
        else:
            out.append(f"done: every record is under {self.primary}; other keys may be removed from the configuration")
        return out


def kek_state(credentials: TestCredentials) -> KekState:
    """Where the keys stand: the agreed primary, this ring's keys and the records under each key."""
    ring = credentials.ring
    return KekState(
        credentials.keks.primary_kek_id(),
        ring.primary_id,
        tuple(ring.ids),
        credentials.store.count_test_credentials_by_kek(),
    )


@dataclass(frozen=True)
class Rotation:
    target: str
    notes: tuple[str, ...]
    report: RewrapReport


def rotate(
    credentials: TestCredentials,
    *,
    add_key: Callable[[], str] | None,
    batch_size: int = 100,
    max_rows: int | None = None,
) -> Rotation:
    """Choose the target key, make it the agreed primary, re-wrap every record to it.

    The target: the agreed primary while records remain under other keys (an interrupted run
    resumes); else this ring's first key when it is not the primary (a key put first in the
    configuration); else a new key from ``add_key`` (which adds it to the KEK file and returns
    its id), or :class:`RotationRefused` when the keys come from the environment.
    """
    ring = credentials.ring
    state = kek_state(credentials)
    notes: list[str] = []
    if state.pending:
        target = state.primary
        notes.append(f"{state.pending} record(s) are not under the primary key {target} yet: resuming the re-wrap")
    elif state.configured != state.primary:
        target = state.configured
        notes.append(f"making the first configured key {target} the primary")
    elif add_key is not None:
        target = add_key()
        notes.append(f"new primary key-encryption key {target} added")
    else:
        raise RotationRefused(
            "the key-encryption keys come from the environment: put a new key first in WOES_AUTH_KEK "
            "(`woes-auth kek new-key` prints one), keep the old ones after it, then run `woes-auth kek rotate`"
        )
    if target not in ring.ids:
        raise RotationRefused(
            f"the primary key-encryption key {target} agreed in the database is not configured here: "
            "add it to WOES_AUTH_KEK / WOES_AUTH_KEK_FILE (keep the older keys too), then run again"
        )
    if target != state.agreed:
        credentials.keks.set_primary_kek(target, ACTOR)
    report = credentials.rewrap_all(ACTOR, batch_size, max_rows, kek_id=target)
    return Rotation(target, tuple(notes), report)
