"""Schema migrations (Alembic), run from Python: no ``alembic.ini`` is needed or shipped.

- :func:`upgrade` brings a database to the newest revision. On PostgreSQL the
  whole upgrade is one transaction under an advisory lock, so two upgraders
  started at once run one after the other and the second finds nothing to do.
- :func:`status` tells which revision a database is at, against the code's head.
- :func:`prepare` is what ``serve`` and ``bootstrap-admin`` run before using a
  database: an empty embedded SQLite database gets the schema created (so a bare
  ``woes-auth serve`` works on a new machine); anything else older than the code
  is refused with a message naming ``woes-auth db upgrade``.

For developers, ``python -m auth_service.store.migrate revision "what changed"``
writes the next revision by comparing a scratch database at the current head
with the tables the code declares (review it before committing).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Engine

from auth_service.store import schema

log = logging.getLogger(__name__)
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

SCRIPT_LOCATION = "auth_service.store:migrations"
VERSION_TABLE = "alembic_version"
UPGRADE_COMMAND = "woes-auth db upgrade"
_PG_LOCK_ID = 0x776F_6573  # "woes": serialises concurrent upgrades of one PostgreSQL database


class SchemaNotCurrent(Exception):
    """The database schema is not the one this code needs; the message names the command to run."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  # revision recorded in the database (None: never migrated)
    head: str  # newest revision this code knows
    known: bool  # whether ``current`` is one of this code's revisions
    has_tables: bool  # whether the database holds any table at all

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def empty(self) -> bool:
        return self.current is None and not self.has_tables

    @property
    def behind(self) -> bool:
        """Older than the code (including never migrated)."""
        return not self.up_to_date and self.known


def target_metadata() -> MetaData:
    """The metadata holding every table of the service (:mod:`auth_service.store.schema`)."""
    return schema.metadata


def configure_context_options(metadata: MetaData) -> dict:
    """Options for ``context.configure`` shared by migrations, autogenerate and the schema test."""
    return {
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        "compare_type": True,
        # SQLite cannot ALTER most things: autogenerate renders batch operations, which
        # rebuild the table on SQLite and are plain ALTERs on PostgreSQL.
        "render_as_batch": True,
    }


def _config(connection=None, url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "the package ships no migration"
    return head


def status(engine: Engine) -> SchemaStatus:
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    with engine.connect() as conn:
        current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        has_tables = bool(inspect(conn).get_table_names())
        conn.rollback()
    script = _script()
    known = True
    if current is not None:
        try:
            known = script.get_revision(current) is not None
        except CommandError:
            known = False
    return SchemaStatus(current=current, head=head_revision(), known=known, has_tables=has_tables)


def upgrade(engine: Engine, target: str = "head") -> None:
    """Apply every missing revision up to ``target`` in one transaction."""
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})"))
            # The service's sessions have short statement timeouts; DDL may wait for locks longer.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL lock_timeout = 0"))
        command.upgrade(_config(conn), target)


def upgrade_sql(url: str, target: str = "head") -> None:
    """Print the SQL of the upgrade from an empty database to ``target`` (for review by a DBA)."""
    from alembic import command

    command.upgrade(_config(url=url), target, sql=True)


def describe(state: SchemaStatus) -> str:
    if state.up_to_date:
        return f"the schema is up to date (revision {state.head})"
    if state.empty:
        return f"the database has no woes-auth schema yet; this version needs revision {state.head}"
    if state.current is None:
        return f"the database has tables but no schema revision; this version needs revision {state.head}"
    if not state.known:
        return (
            f"the database is at revision {state.current}, which this version does not know "
            f"(newer code has migrated it); this version's newest revision is {state.head}"
        )
    return f"the database is at revision {state.current}; this version needs revision {state.head}"


def prepare(engine: Engine, *, create_if_empty_sqlite: bool = True) -> SchemaStatus:
    """Make sure the schema can be used by this code, or raise :class:`SchemaNotCurrent`.

    - up to date: nothing to do;
    - an empty SQLite database (the embedded default): the schema is created;
    - at a revision newer than the code (a rolling deploy): a warning, and go on;
    - anything else: refused, naming ``woes-auth db upgrade``.
    """
    state = status(engine)
    if state.up_to_date:
        return state
    if state.empty and create_if_empty_sqlite and engine.dialect.name == "sqlite":
        upgrade(engine)
        log.info("created the schema (revision %s) in the new embedded database", state.head)
        return status(engine)
    if state.current is not None and not state.known:
        log.warning("%s; starting anyway: migrations keep the previous version working", describe(state))
        return state
    raise SchemaNotCurrent(f"{describe(state)}: run '{UPGRADE_COMMAND}' with the same database URL, then start again")


# -- for developers: write the next revision -------------------------------------


def _next_revision_id() -> str:
    head = _script().get_current_head()
    number = int(head.split("_")[0]) if head else 0
    return f"{number + 1:04d}"


def write_revision(message: str, url: str | None = None) -> Path:
    """Autogenerate the next revision against ``url`` (default: a scratch SQLite database) at head."""
    from alembic import command

    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(url or f"sqlite:///{Path(scratch) / 'scratch.db'}")
        try:
            upgrade(engine)
            with engine.begin() as conn:
                script = command.revision(_config(conn), message=message, autogenerate=True, rev_id=_next_revision_id())
        finally:
            engine.dispose()
    scripts = script if isinstance(script, list) else [script]
    return Path(scripts[0].path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_service.store.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate the next revision from the declared tables")
    rev.add_argument("message")
    rev.add_argument("--database-url", help="compare against this database (default: a scratch SQLite file)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    path = write_revision(args.message, args.database_url)
    print(f"wrote {path}; review it, run `make fmt`, then the schema test (tests/test_migrations.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
