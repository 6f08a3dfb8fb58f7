"""SQLAlchemy storage driver: SQLite (embedded default) and PostgreSQL.

Times are stored as integer microseconds since the Unix epoch (UTC), which both
engines compare exactly. Every multi-row change is one transaction. On SQLite,
write transactions start with ``BEGIN IMMEDIATE`` so that two writers never
deadlock on a lock upgrade; readers use WAL and never block writers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from auth_service.domain.errors import StoreUnavailable
from auth_service.domain.keys.records import AuditEvent, KeyRecord, StoredState, UsageDelta
from auth_service.domain.ports import Change, CredentialStore, RequestIdTaken, RotateConflict
from auth_service.domain.tokens import KeyKind

# Named constraints: later migrations can alter them on SQLite too (batch mode needs names).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Every table of the service, including those declared in other modules; migrations target it."""

_BigInt = BigInteger().with_variant(Integer, "sqlite")

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("display_name", String(100), nullable=False, default=""),
    Column("scopes", Text, nullable=False, default="[]"),
    Column("allowed_origins", Text, nullable=False, default="[]"),
    Column("digest", LargeBinary(32), nullable=False),
    Column("pepper_id", String(32), nullable=False),
    Column("hint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("create_us", BigInteger, nullable=False),
    Column("expire_us", BigInteger),
    Column("revoke_us", BigInteger),
    Column("revoke_reason", String(200), nullable=False, default=""),
    Column("rotated_to", String(32), nullable=False, default=""),
    Column("rotated_from", String(32), nullable=False, default=""),
    Column("grace_expire_us", BigInteger),
    Column("request_id", String(64), unique=True),
    Column("request_fingerprint", String(64), nullable=False, default=""),
    Column("created_by", String(64), nullable=False, default=""),
    Column("last_used_us", BigInteger),
    Column("use_count", BigInteger, nullable=False, default=0),
    Column("last_caller", String(64), nullable=False, default=""),
)
Index("ix_keys_workspace_create", keys.c.workspace_id, keys.c.create_us, keys.c.key_id)
Index("ix_keys_create", keys.c.create_us, keys.c.key_id)

changes = Table(
    "key_changes",
    metadata,
    Column("seq", _BigInt, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=False),
    Column("change", String(16), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    # Never reuse a sequence number on SQLite, even after pruning empties the table:
    # followers remember the last number they saw. On PostgreSQL the sequence hands numbers out
    # in order (no per-session CACHE): followers rely on a number drawn later being higher.
    sqlite_autoincrement=True,
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", _BigInt, primary_key=True, autoincrement=True),
    Column("time_us", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("key_id", String(32), nullable=False, default=""),
    Column("workspace_id", String(64), nullable=False, default=""),
    Column("request_id", String(64), nullable=False, default=""),
    Column("detail", String(500), nullable=False, default=""),
)
Index("ix_audit_key", audit_events.c.key_id, audit_events.c.id)
Index("ix_audit_workspace", audit_events.c.workspace_id, audit_events.c.id)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


# The usage update with positional parameters: use count delta, last used (twice), caller (twice), key id.
_USAGE_SQL = (
    "UPDATE keys SET use_count = use_count + ?, "
    "last_used_us = CASE WHEN last_used_us IS NULL OR last_used_us < ? THEN ? ELSE last_used_us END, "
    "last_caller = CASE WHEN ? <> '' THEN ? ELSE last_caller END "
    "WHERE key_id = ?"
)


def _usage_sql(paramstyle: str) -> str:
    return _USAGE_SQL if paramstyle == "qmark" else _USAGE_SQL.replace("?", "%s")


def to_us(value: datetime | None) -> int | None:
    if value is None:
        return None
    return (value - _EPOCH) // _MICRO


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + int(value) * _MICRO


T = TypeVar("T")

CHANGE_CHANNEL = "woes_auth_key_changes"
"""PostgreSQL NOTIFY channel: a transaction that adds to ``key_changes`` notifies it (at commit)."""

# libpq settings so that nothing waits forever on a database that went away (a dropped
# connection, a partition, a stuck server). Any of them given in the URL's query wins.
PG_CONNECT_DEFAULTS: dict[str, object] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
    "options": "-c statement_timeout=5000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=60000",
}

_OUTAGE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)

# PostgreSQL: the oldest transaction still running (xmin of the statement's snapshot), and with
# the mark an id given to this transaction now, which is above every id given before.
_OLDEST = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_HORIZON_SQL = text(f"SELECT {_OLDEST}, NULL")
_HORIZON_MARK_SQL = text(f"SELECT {_OLDEST}, pg_current_xact_id()::text::bigint")


def _row_to_record(row) -> KeyRecord:
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


def _record_to_row(record: KeyRecord) -> dict:
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


def _audit_row(event: AuditEvent) -> dict:
    return {
        "time_us": to_us(event.time),
        "actor": event.actor[:64],
        "action": event.action,
        "outcome": event.outcome,
        "key_id": event.key_id,
        "workspace_id": event.workspace_id,
        "request_id": event.request_id[:64],
        "detail": event.detail[:500],
    }


def _change_row(key_id: str, change: str, now: datetime) -> dict:
    return {"key_id": key_id, "change": change, "time_us": to_us(now)}


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=8,
        max_overflow=8,
        pool_pre_ping=False,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class SqlStore(CredentialStore):
    """The SQLAlchemy driver. ``url`` is any SQLAlchemy URL (sqlite or postgresql+psycopg)."""

    def __init__(self, url: str, *, create_schema: bool = True):
        """Open the store. With ``create_schema`` the migrations are applied up to the newest
        revision (for tools and tests); ``serve`` passes ``False`` and checks the revision instead
        (see :mod:`auth_service.store.migrate`)."""
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        self._count_lock = threading.Lock()
        self._queries = 0
        if self.dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._read = _sqlite_engine(url, immediate=False)
            self._write = _sqlite_engine(url, immediate=True)
        else:
            connect_args: dict = {}
            if self.dialect == "postgresql":
                connect_args = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in parsed.query}
            self._read = create_engine(
                url,
                pool_size=8,
                max_overflow=8,
                pool_pre_ping=True,
                pool_timeout=5,
                connect_args=connect_args,
            )
            self._write = self._read
        for engine in {self._read, self._write}:
            event.listen(engine, "before_cursor_execute", self._count)
        if create_schema:
            self.upgrade_schema()

    # -- schema -----------------------------------------------------------

    def upgrade_schema(self) -> None:
        """Apply the migrations up to the newest revision."""
        from auth_service.store import migrate

        self._guard(lambda: migrate.upgrade(self._write))

    def schema_status(self):
        """Where the database's schema is against the code (:class:`migrate.SchemaStatus`)."""
        from auth_service.store import migrate

        return self._guard(lambda: migrate.status(self._write))

    def prepare_schema(self):
        """Create the schema in a new embedded database, or check that it is current.

        Raises :class:`migrate.SchemaNotCurrent` with a message naming ``woes-auth db upgrade``.
        """
        from auth_service.store import migrate

        return self._guard(lambda: migrate.prepare(self._write))

    def change_listener(self):
        if self.dialect != "postgresql":
            return None
        from auth_service.store.listen import PgChangeListener

        return PgChangeListener(self.url, CHANGE_CHANNEL)

    # -- plumbing ---------------------------------------------------------

    def _count(self, *_args, **_kwargs) -> None:
        with self._count_lock:
            self._queries += 1

    @property
    def query_count(self) -> int:
        return self._queries

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except _OUTAGE_ERRORS as exc:
            if isinstance(exc, sa_exc.OperationalError) and _is_locked(exc):
                raise StoreUnavailable("the credential store is busy; retry later") from None
            raise StoreUnavailable() from None
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable() from None
            raise

    def _reading(self, fn: Callable[[Connection], T]) -> T:
        def run():
            with self._read.connect() as conn:
                result = fn(conn)
                conn.rollback()
                return result

        return self._guard(run)

    def _writing(self, fn: Callable[[Connection], T]) -> T:
        def run():
            with self._write.begin() as conn:
                return fn(conn)

        return self._guard(run)

    def _announce(self, conn: Connection) -> None:
        """Call before a transaction adds to ``key_changes``. On PostgreSQL: wake the followers
        listening (delivered when, and only if, the transaction commits), and give the transaction
        its id now, before it draws a sequence number, so that a follower that sees a gap can tell
        from the database when every transaction that may fill it has ended
        (:meth:`change_horizon`)."""
        if self.dialect == "postgresql":
            conn.execute(select(func.pg_notify(CHANGE_CHANNEL, ""), func.pg_current_xact_id()))

    def close(self) -> None:
        self._read.dispose()
        if self._write is not self._read:
            self._write.dispose()

    # -- keys -------------------------------------------------------------

    def get_key(self, key_id: str) -> KeyRecord | None:
        stmt = select(keys).where(keys.c.key_id == key_id)

        def run(conn: Connection):
            row = conn.execute(stmt).first()
            return _row_to_record(row) if row else None

        return self._reading(run)

    def key_by_request_id(self, request_id: str) -> KeyRecord | None:
        stmt = select(keys).where(keys.c.request_id == request_id)

        def run(conn: Connection):
            row = conn.execute(stmt).first()
            return _row_to_record(row) if row else None

        return self._reading(run) if request_id else None

    def insert_key(self, record: KeyRecord, audit: AuditEvent) -> KeyRecord:
        def run(conn: Connection):
            if record.request_id:
                row = conn.execute(select(keys).where(keys.c.request_id == record.request_id)).first()
                if row is not None:
                    return RequestIdTaken(_row_to_record(row))
            conn.execute(insert(keys).values(**_record_to_row(record)))
            self._announce(conn)
            conn.execute(insert(changes).values(**_change_row(record.key_id, "issued", record.create_time)))
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return record

        try:
            result = self._writing(run)
        except sa_exc.IntegrityError:
            # A concurrent insert with the same request_id won the race.
            existing = self._reading(
                lambda conn: conn.execute(select(keys).where(keys.c.request_id == record.request_id)).first()
            )
            if record.request_id and existing is not None:
                raise RequestIdTaken(_row_to_record(existing)) from None
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
                return RotateConflict(_row_to_record(row))
            conn.execute(insert(keys).values(**_record_to_row(new)))
            self._announce(conn)
            conn.execute(insert(changes).values(**_change_row(key_id, "rotated", new.create_time)))
            conn.execute(insert(changes).values(**_change_row(new.key_id, "issued", new.create_time)))
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return _row_to_record(row), new

        result = self._writing(run)
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
            row_audit = {**_audit_row(audit), "workspace_id": audit.workspace_id or row.workspace_id}
            conn.execute(insert(audit_events).values(**row_audit))
            return _row_to_record(row), changed

        return self._writing(run)

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
        return self._reading(lambda conn: [_row_to_record(r) for r in conn.execute(stmt)])

    # -- change feed ------------------------------------------------------

    def latest_change(self) -> int:
        return self._reading(lambda conn: conn.execute(select(func.max(changes.c.seq))).scalar() or 0)

    def changes_since(self, seq: int, also: tuple[tuple[int, int], ...] = (), limit: int = 1000) -> list[Change]:
        cond = changes.c.seq > seq
        if also:
            cond = or_(cond, *(changes.c.seq.between(lo, hi) for lo, hi in also))
        stmt = select(changes.c.seq, changes.c.key_id, changes.c.change).where(cond).order_by(changes.c.seq)
        stmt = stmt.limit(limit)
        return self._reading(lambda conn: [Change(r.seq, r.key_id, r.change) for r in conn.execute(stmt)])

    def missing_changes(self, seq: int) -> list[tuple[int, int]]:
        if self.dialect == "sqlite":
            return []  # writers are serialised: nothing below the end can still appear
        present = select(changes.c.seq, func.lag(changes.c.seq, 1, 0).over(order_by=changes.c.seq).label("prev"))
        present = present.where(changes.c.seq <= seq).subquery()
        stmt = select(present.c.prev + 1, present.c.seq - 1).where(present.c.seq > present.c.prev + 1)
        return self._reading(lambda conn: [(int(lo), int(hi)) for lo, hi in conn.execute(stmt)])

    def change_horizon(self, mark: bool = False) -> tuple[int, int | None] | None:
        if self.dialect == "sqlite":
            return None
        # Transaction ids as xid8 (64 bits: they never wrap). The mark costs this read a transaction
        # id, which it gives back at once (rolled back); every writer of key_changes has its id
        # before it draws a sequence number (see _announce).
        row = self._reading(lambda conn: conn.execute(_HORIZON_MARK_SQL if mark else _HORIZON_SQL).one())
        return int(row[0]), None if row[1] is None else int(row[1])

    def prune_changes(self, older_than: datetime) -> int:
        stmt = delete(changes).where(changes.c.time_us < to_us(older_than))
        return self._writing(lambda conn: conn.execute(stmt).rowcount)

    # -- usage ------------------------------------------------------------

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
        self._writing(lambda conn: conn.exec_driver_sql(sql, params))

    # -- audit ------------------------------------------------------------

    def write_audit(self, event_: AuditEvent) -> None:
        self._writing(lambda conn: conn.execute(insert(audit_events).values(**_audit_row(event_))))

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

        return self._reading(run)


def _is_locked(exc: sa_exc.OperationalError) -> bool:
    return "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()
