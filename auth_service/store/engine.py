"""The engines of one SQL database: connections, transactions, schema checks, statement counts.

SQLite (the embedded default) and PostgreSQL. Every multi-row change is one transaction. On
SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a
lock upgrade; readers use WAL and never block writers. A database that cannot be reached is
:class:`~auth_service.domain.errors.StoreUnavailable`, never anything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from auth_service.domain.errors import StoreUnavailable
from auth_service.store import migrate
from auth_service.store.listen import PG_CONNECT_DEFAULTS

T = TypeVar("T")


_OUTAGE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


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


class SqlDatabase:
    """The engines of one database; the SQL drivers of the ports (:mod:`auth_service.store`) run
    their statements through :meth:`reading` and :meth:`writing`."""

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

    def upgrade_schema(self) -> None:
        """Apply the migrations up to the newest revision."""

        self._guard(lambda: migrate.upgrade(self._write))

    def schema_status(self):
        """Where the database's schema is against the code (:class:`migrate.SchemaStatus`)."""

        return self._guard(lambda: migrate.status(self._write))

    def prepare_schema(self):
        """Create the schema in a new embedded database, or check that it is current.

        Raises :class:`migrate.SchemaNotCurrent` with a message naming ``woes-auth db upgrade``.
        """

        return self._guard(lambda: migrate.prepare(self._write))

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

    def reading(self, fn: Callable[[Connection], T]) -> T:
        def run():
            with self._read.connect() as conn:
                result = fn(conn)
                conn.rollback()
                return result

        return self._guard(run)

    def writing(self, fn: Callable[[Connection], T]) -> T:
        def run():
            with self._write.begin() as conn:
                return fn(conn)

        return self._guard(run)

    def close(self) -> None:
        self._read.dispose()
        if self._write is not self._read:
            self._write.dispose()


def _is_locked(exc: sa_exc.OperationalError) -> bool:
    return "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()
