"""The primary key-encryption key, agreed by the whole deployment through the database.

One row names the key id every process seals new records under and re-wraps old ones to
(empty until a first process or ``woes-auth kek rotate`` sets it). Every write of a wrapped
data key checks, in its own transaction, that it was sealed under that key
(:func:`hold_primary`); a change of the primary (:meth:`SqlKekStore.set_primary_kek`)
conflicts with those checks, so once it has committed no record can be written under
another key, and a re-wrap pass started after it leaves none behind:

- PostgreSQL: the check reads the row ``FOR SHARE`` and the change updates it, so the change
  waits for every write that read the old value, and every later write reads the new one;
- SQLite: write transactions start with ``BEGIN IMMEDIATE`` and never overlap.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.ports import (
    KekStore,
    PrimaryKekMoved,
)
from auth_service.store.engine import SqlDatabase
from auth_service.store.schema import (
    audit_events,
    audit_row,
    kek_derivations,
    kek_primary,
    to_us,
)

ROW_ID = 1


def _read(conn: Connection, lock: str = "") -> str | None:
    """The agreed primary; with ``lock`` ("share" or "update") its row stays locked on PostgreSQL."""
    stmt = select(kek_primary.c.kek_id).where(kek_primary.c.id == ROW_ID)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=lock == "share")
    return conn.execute(stmt).scalar()


def hold_primary(conn: Connection, kek_id: str) -> None:
    """In a write transaction: raise :class:`PrimaryKekMoved` unless ``kek_id`` is the agreed
    primary (or none is agreed yet). Holds the row against a change until the transaction ends."""
    agreed = _read(conn, "share")
    if agreed and agreed != kek_id:
        raise PrimaryKekMoved(agreed)


class SqlKekStore(KekStore):
    """The agreed primary key-encryption key and the salts of passphrase-derived keys."""

    def __init__(self, db: SqlDatabase):
        self.db = db

    def primary_kek_id(self) -> str:
        """The agreed primary key id, or ``""`` when none is agreed yet."""
        return self.db.reading(lambda conn: _read(conn)) or ""

    def agree_primary_kek(self, kek_id: str) -> str:
        """Make ``kek_id`` the primary if none is agreed yet; returns the agreed primary either way."""

        def run(conn: Connection) -> str:
            done = conn.execute(
                update(kek_primary)
                .where(kek_primary.c.id == ROW_ID, kek_primary.c.kek_id == "")
                .values(kek_id=kek_id, update_us=to_us(utcnow()))
            )
            if done.rowcount == 0 and _read(conn) is None:
                conn.execute(insert(kek_primary).values(id=ROW_ID, kek_id=kek_id, update_us=to_us(utcnow())))
            return _read(conn) or kek_id

        try:
            return self.db.writing(run)
        except sa_exc.IntegrityError:  # a concurrent first agreement inserted the row
            return self.primary_kek_id()

    def set_primary_kek(self, kek_id: str, actor: str) -> str:
        """Make ``kek_id`` the primary (audited); returns the previous one (``""`` if none).
        Waits for writes that checked the previous primary; later writes see ``kek_id``."""

        def run(conn: Connection) -> str:
            previous = _read(conn, "update")
            if previous is None:
                conn.execute(insert(kek_primary).values(id=ROW_ID, kek_id=kek_id, update_us=to_us(utcnow())))
            else:
                conn.execute(
                    update(kek_primary)
                    .where(kek_primary.c.id == ROW_ID)
                    .values(kek_id=kek_id, update_us=to_us(utcnow()))
                )
            event = AuditEvent(
                action="kek.primary",
                actor=actor,
                outcome="ok",
                detail=f"primary={kek_id} previous={previous or '-'}",
            )
            conn.execute(insert(audit_events).values(**audit_row(event)))
            return previous or ""

        return self.db.writing(run)

    def kek_derivation(self, kek_id: str, new_salt: bytes, params: dict, now: datetime) -> tuple[bytes, dict]:
        """The stored salt and argon2id parameters of ``kek_id``, storing the given ones if none exist."""
        t = kek_derivations

        def read(conn: Connection):
            row = conn.execute(select(t).where(t.c.kek_id == kek_id)).first()
            if row is None:
                return None
            return bytes(row.salt), {
                "memory_kib": row.memory_kib,
                "time_cost": row.time_cost,
                "parallelism": row.parallelism,
            }

        found = self.db.reading(read)
        if found is not None:
            return found

        def write(conn: Connection):
            existing = read(conn)
            if existing is not None:
                return existing
            conn.execute(insert(t).values(kek_id=kek_id, salt=new_salt, create_us=to_us(now), **params))
            return new_salt, dict(params)

        try:
            return self.db.writing(write)
        except sa_exc.IntegrityError:
            return self.db.reading(read)
