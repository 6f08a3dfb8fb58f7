"""The SQL driver of :class:`~auth_service.domain.ports.KeyStore`: keys, the change feed, usage, audit rows."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import and_, case, delete, func, insert, or_, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from auth_service.domain.audit import AuditEvent
from auth_service.domain.keys.records import KeyRecord, StoredState, UsageDelta
from auth_service.domain.ports import Change, KeyStore, RequestIdTaken, RotateConflict
from auth_service.domain.tokens import KeyKind
from auth_service.store.engine import SqlDatabase
from auth_service.store.listen import CHANGE_CHANNEL, PgChangeListener
from auth_service.store.schema import audit_events, audit_row, changes, from_us, keys, to_us

# The usage update with positional parameters: use count delta, last used (twice), caller (twice), key id.
_USAGE_SQL = (
    "UPDATE keys SET use_count = use_count + ?, "
    "last_used_us = CASE WHEN last_used_us IS NULL OR last_used_us < ? THEN ? ELSE last_used_us END, "
    "last_caller = CASE WHEN ? <> '' THEN ? ELSE last_caller END "
    "WHERE key_id = ?"
)


def _usage_sql(paramstyle: str) -> str:
    return _USAGE_SQL if paramstyle == "qmark" else _USAGE_SQL.replace("?", "%s")


# PostgreSQL: the oldest transaction still running (xmin of the statement's snapshot), and with
# the mark an id given to this transaction now, which is above every id given before.
_OLDEST = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


_HORIZON_SQL = text(f"SELECT {_OLDEST}, NULL")


_HORIZON_MARK_SQL = text(f"SELECT {_OLDEST}, pg_current_xact_id()::text::bigint")


def row_to_record(row) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        workspace_id=row.workspace_id,
        kind=KeyKind(row.kind),
        display_name=row.display_name,
        scopes=tuple(json.loads(row.scopes)),
        allowed_origins=tuple(json.loads(row.allowed_origins)),
        digest=bytes(row.digest),
        pepper_id=row.pepper_id,
        hint=row.hint,
        stored_state=StoredState(row.state),
        create_time=from_us(row.create_us),
        expire_time=from_us(row.expire_us),
        revoke_time=from_us(row.revoke_us),
        revoke_reason=row.revoke_reason,
        rotated_to=row.rotated_to,
        rotated_from=row.rotated_from,
        grace_expire_time=from_us(row.grace_expire_us),
        request_id=row.request_id or "",
        request_fingerprint=row.request_fingerprint,
        created_by=row.created_by,
        last_used_time=from_us(row.last_used_us),
        use_count=row.use_count,
        last_caller=row.last_caller,
    )


def record_to_row(record: KeyRecord) -> dict:
    return {
        "key_id": record.key_id,
        "workspace_id": record.workspace_id,
        "kind": record.kind.value,
        "display_name": record.display_name,
        "scopes": json.dumps(list(record.scopes)),
        "allowed_origins": json.dumps(list(record.allowed_origins)),
        "digest": record.digest,
        "pepper_id": record.pepper_id,
        "hint": record.hint,
        "state": record.stored_state.value,
        "create_us": to_us(record.create_time),
        "expire_us": to_us(record.expire_time),
        "revoke_us": to_us(record.revoke_time),
        "revoke_reason": record.revoke_reason,
        "rotated_to": record.rotated_to,
        "rotated_from": record.rotated_from,
        "grace_expire_us": to_us(record.grace_expire_time),
        "request_id": record.request_id or None,
        "request_fingerprint": record.request_fingerprint,
        "created_by": record.created_by,
        "last_used_us": to_us(record.last_used_time),
        "use_count": record.use_count,
        "last_caller": record.last_caller,
    }


def _change_row(key_id: str, change: str, now: datetime) -> dict:
    return {"key_id": key_id, "change": change, "time_us": to_us(now)}


class SqlStore(SqlDatabase, KeyStore):
    """The key store on one database (any SQLAlchemy URL: sqlite or postgresql+psycopg). Its engines
    are shared by the other drivers (:class:`SqlDatabase`), so that every change and its audit event
    are written in one transaction."""

    def change_listener(self):
        if self.dialect != "postgresql":
            return None

        return PgChangeListener(self.url, CHANGE_CHANNEL)

    def _announce(self, conn: Connection) -> None:
        """Call before a transaction adds to ``key_changes``. On PostgreSQL: wake the followers
        listening (delivered when, and only if, the transaction commits), and give the transaction
        its id now, before it draws a sequence number, so that a follower that sees a gap can tell
        from the database when every transaction that may fill it has ended
        (:meth:`change_horizon`)."""
        if self.dialect == "postgresql":
            conn.execute(select(func.pg_notify(CHANGE_CHANNEL, ""), func.pg_current_xact_id()))

    def get_key(self, key_id: str) -> KeyRecord | None:
        stmt = select(keys).where(keys.c.key_id == key_id)

        def run(conn: Connection):
            row = conn.execute(stmt).first()
            return row_to_record(row) if row else None

        return self.reading(run)

    def key_by_request_id(self, request_id: str) -> KeyRecord | None:
        stmt = select(keys).where(keys.c.request_id == request_id)

        def run(conn: Connection):
            row = conn.execute(stmt).first()
            return row_to_record(row) if row else None

        return self.reading(run) if request_id else None

    def insert_key(self, record: KeyRecord, audit: AuditEvent) -> KeyRecord:
        def run(conn: Connection):
            if record.request_id:
                row = conn.execute(select(keys).where(keys.c.request_id == record.request_id)).first()
                if row is not None:
                    return RequestIdTaken(row_to_record(row))
            conn.execute(insert(keys).values(**record_to_row(record)))
            self._announce(conn)
            conn.execute(insert(changes).values(**_change_row(record.key_id, "issued", record.create_time)))
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return record

        try:
            result = self.writing(run)
        except sa_exc.IntegrityError:
            # A concurrent insert with the same request_id won the race.
            existing = self.reading(
                lambda conn: conn.execute(select(keys).where(keys.c.request_id == record.request_id)).first()
            )
            if record.request_id and existing is not None:
                raise RequestIdTaken(row_to_record(existing)) from None
            raise
        if isinstance(result, RequestIdTaken):
            raise result
        return result

    def rotate(
        self, key_id: str, new: KeyRecord, grace_expire_time: datetime, audit: AuditEvent
    ) -> tuple[KeyRecord, KeyRecord]:
        def run(conn: Connection):
            # Never extend the old key past its own expiry.
            grace_us = to_us(grace_expire_time)
            done = conn.execute(
                update(keys)
                .where(keys.c.key_id == key_id, keys.c.state == StoredState.ACTIVE.value)
                .values(
                    state=StoredState.ROTATED.value,
                    rotated_to=new.key_id,
                    grace_expire_us=case(
                        (
                            and_(keys.c.expire_us.is_not(None), keys.c.expire_us < grace_us),
                            keys.c.expire_us,
                        ),
                        else_=grace_us,
                    ),
                )
            )
            row = conn.execute(select(keys).where(keys.c.key_id == key_id)).first()
            if row is None:
                raise LookupError(key_id)
            if done.rowcount != 1:
                return RotateConflict(row_to_record(row))
            conn.execute(insert(keys).values(**record_to_row(new)))
            self._announce(conn)
            conn.execute(insert(changes).values(**_change_row(key_id, "rotated", new.create_time)))
            conn.execute(insert(changes).values(**_change_row(new.key_id, "issued", new.create_time)))
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return row_to_record(row), new

        result = self.writing(run)
        if isinstance(result, RotateConflict):
            raise result
        return result

    def revoke(self, key_id: str, reason: str, now: datetime, audit: AuditEvent) -> tuple[KeyRecord, bool]:
        def run(conn: Connection):
            done = conn.execute(
                update(keys)
                .where(keys.c.key_id == key_id, keys.c.state != StoredState.REVOKED.value)
                .values(state=StoredState.REVOKED.value, revoke_us=to_us(now), revoke_reason=reason)
            )
            row = conn.execute(select(keys).where(keys.c.key_id == key_id)).first()
            if row is None:
                raise LookupError(key_id)
            changed = done.rowcount == 1
            if changed:
                self._announce(conn)
                conn.execute(insert(changes).values(**_change_row(key_id, "revoked", now)))
            # The caller knows only the key id: the audit row names the key's workspace too.
            row_audit = {**audit_row(audit), "workspace_id": audit.workspace_id or row.workspace_id}
            conn.execute(insert(audit_events).values(**row_audit))
            return row_to_record(row), changed

        return self.writing(run)

    def list_keys(
        self,
        workspace_id: str,
        limit: int,
        after: tuple[datetime, str] | None,
        kinds: tuple[KeyKind, ...] | None = None,
    ) -> list[KeyRecord]:
        stmt = select(keys)
        if workspace_id:
            stmt = stmt.where(keys.c.workspace_id == workspace_id)
        if kinds is not None:
            stmt = stmt.where(keys.c.kind.in_([kind.value for kind in kinds]))
        if after is not None:
            create_us, key_id = to_us(after[0]), after[1]
            stmt = stmt.where(
                or_(keys.c.create_us < create_us, and_(keys.c.create_us == create_us, keys.c.key_id < key_id))
            )
        stmt = stmt.order_by(keys.c.create_us.desc(), keys.c.key_id.desc()).limit(limit)
        return self.reading(lambda conn: [row_to_record(r) for r in conn.execute(stmt)])

    def latest_change(self) -> int:
        return self.reading(lambda conn: conn.execute(select(func.max(changes.c.seq))).scalar() or 0)

    def changes_since(self, seq: int, also: tuple[tuple[int, int], ...] = (), limit: int = 1000) -> list[Change]:
        cond = changes.c.seq > seq
        if also:
            cond = or_(cond, *(changes.c.seq.between(lo, hi) for lo, hi in also))
        stmt = select(changes.c.seq, changes.c.key_id, changes.c.change).where(cond).order_by(changes.c.seq)
        stmt = stmt.limit(limit)
        return self.reading(lambda conn: [Change(r.seq, r.key_id, r.change) for r in conn.execute(stmt)])

    def missing_changes(self, seq: int) -> list[tuple[int, int]]:
        if self.dialect == "sqlite":
            return []  # writers are serialised: nothing below the end can still appear
        present = select(changes.c.seq, func.lag(changes.c.seq, 1, 0).over(order_by=changes.c.seq).label("prev"))
        present = present.where(changes.c.seq <= seq).subquery()
        stmt = select(present.c.prev + 1, present.c.seq - 1).where(present.c.seq > present.c.prev + 1)
        return self.reading(lambda conn: [(int(lo), int(hi)) for lo, hi in conn.execute(stmt)])

    def change_horizon(self, mark: bool = False) -> tuple[int, int | None] | None:
        if self.dialect == "sqlite":
            return None
        # Transaction ids as xid8 (64 bits: they never wrap). The mark costs this read a transaction
        # id, which it gives back at once (rolled back); every writer of key_changes has its id
        # before it draws a sequence number (see _announce).
        row = self.reading(lambda conn: conn.execute(_HORIZON_MARK_SQL if mark else _HORIZON_SQL).one())
        return int(row[0]), None if row[1] is None else int(row[1])

    def prune_changes(self, older_than: datetime) -> int:
        stmt = delete(changes).where(changes.c.time_us < to_us(older_than))
        return self.writing(lambda conn: conn.execute(stmt).rowcount)

    def record_usage(self, deltas: list[UsageDelta]) -> None:
        if not deltas:
            return
        # One statement for the whole batch, handed to the driver's executemany with plain tuples:
        # a flush can carry every key used in the interval (tens of thousands), and building
        # SQLAlchemy's per-row parameter dictionaries cost twice the database work, on the
        # serving process's CPU.
        sql = _usage_sql(self._write.dialect.paramstyle)
        params = [
            (d.count, t, t, d.last_caller, d.last_caller, d.key_id) for d in deltas for t in (to_us(d.last_used_time),)
        ]
        self.writing(lambda conn: conn.exec_driver_sql(sql, params))

    def write_audit(self, event_: AuditEvent) -> None:
        self.writing(lambda conn: conn.execute(insert(audit_events).values(**audit_row(event_))))

    def list_audit(self, key_id: str = "", limit: int = 100) -> list[AuditEvent]:
        stmt = select(audit_events)
        if key_id:
            stmt = stmt.where(audit_events.c.key_id == key_id)
        stmt = stmt.order_by(audit_events.c.id.desc()).limit(limit)

        def run(conn):
            return [
                AuditEvent(
                    action=r.action,
                    actor=r.actor,
                    outcome=r.outcome,
                    key_id=r.key_id,
                    workspace_id=r.workspace_id,
                    request_id=r.request_id,
                    detail=r.detail,
                    time=from_us(r.time_us),
                )
                for r in conn.execute(stmt)
            ]

        return self.reading(run)
