"""Alembic migrations: they build exactly the declared schema on both engines, and `serve` insists on them."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, create_engine, inspect, text

from auth_service.store import SqlStore, migrate
from tests import conftest
from tests.support.cluster import ServerProcess, clean_env, run_cli


def _diff(store: SqlStore, metadata: MetaData) -> list:
    with store._write.connect() as conn:
        context = MigrationContext.configure(conn, opts=migrate.configure_context_options(metadata))
        diff = compare_metadata(context, metadata)
        conn.rollback()
    return diff


def test_migrations_build_exactly_the_declared_schema(database_url):
    store = SqlStore(database_url)  # applies the migrations
    try:
        assert store.schema_status().up_to_date
        assert _diff(store, migrate.target_metadata()) == []
    finally:
        store.close()


def test_the_schema_comparison_notices_a_missing_migration(database_url):
    """The test above can fail: a table declared without a migration shows up as a difference."""
    store = SqlStore(database_url)
    try:
        declared = MetaData()
        for table in migrate.target_metadata().tables.values():
            table.to_metadata(declared)
        from sqlalchemy import Table

        Table("not_migrated", declared, Column("id", Integer, primary_key=True))
        diff = _diff(store, declared)
        assert [op[0] for op in diff] == ["add_table"]
        assert diff[0][1].name == "not_migrated"
    finally:
        store.close()


def test_downgrade_to_empty_and_upgrade_again(database_url):
    store = SqlStore(database_url)
    try:
        from alembic import command

        with store._write.begin() as conn:
            command.downgrade(migrate._config(conn), "base")
        with store._write.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {migrate.VERSION_TABLE}
        state = store.schema_status()
        assert state.current is None and state.behind
        store.upgrade_schema()
        assert store.schema_status().up_to_date
        assert _diff(store, migrate.target_metadata()) == []
    finally:
        store.close()


def test_concurrent_upgrades_of_one_postgres_database(postgres_url):
    """Replicas or deploy jobs started together: the advisory lock makes the second wait, then find nothing to do."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def upgrade():
        engine = create_engine(postgres_url)
        try:
            barrier.wait(10)
            migrate.upgrade(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    engine = create_engine(postgres_url)
    try:
        assert migrate.status(engine).up_to_date
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {migrate.VERSION_TABLE}")).scalar() == 1
    finally:
        engine.dispose()


def test_prepare_creates_the_schema_only_in_a_new_sqlite_database(sqlite_url, postgres_url):
    sqlite = SqlStore(sqlite_url, create_schema=False)
    postgres = SqlStore(postgres_url, create_schema=False)
    try:
        assert sqlite.schema_status().empty
        assert sqlite.prepare_schema().up_to_date
        assert postgres.schema_status().empty
        with pytest.raises(migrate.SchemaNotCurrent, match="woes-auth db upgrade"):
            postgres.prepare_schema()
        assert postgres.schema_status().empty  # nothing was created behind the operator's back
    finally:
        sqlite.close()
        postgres.close()


def test_a_database_at_a_newer_revision_is_accepted_with_a_warning(sqlite_url, caplog):
    store = SqlStore(sqlite_url)
    try:
        with store._write.begin() as conn:
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
        state = store.prepare_schema()
        assert not state.known and not state.behind
        assert any("9999" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


# -- the command line --------------------------------------------------------------


def test_serve_refuses_an_unmigrated_postgres_database_until_db_upgrade(postgres_url, tmp_path):
    env = clean_env(
        database_url=postgres_url, data_dir=tmp_path, pepper=conftest.new_pepper_text(), kek=conftest.new_kek_text()
    )
    server = ServerProcess("serve-unmigrated", env)
    refused = run_cli(["serve", "--listen", server.target, "--workers", "1"], env, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "woes-auth db upgrade" in refused.stderr
    assert "no woes-auth schema" in refused.stderr

    status = run_cli(["db", "status"], env)
    assert status.returncode == 1 and "no woes-auth schema" in status.stdout
    upgraded = run_cli(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"to revision {migrate.head_revision()}" in upgraded.stdout
    assert "postgres@127.0.0.1" in upgraded.stdout  # the URL is shown (without any password)
    again = run_cli(["db", "upgrade"], env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert run_cli(["db", "status"], env).returncode == 0

    server.start()
    try:
        assert server.health() is not None
    finally:
        server.stop()


def test_serve_refuses_a_sqlite_database_older_than_the_code(sqlite_url, tmp_path):
    store = SqlStore(sqlite_url)
    from alembic import command

    with store._write.begin() as conn:
        command.downgrade(migrate._config(conn), "base")  # leaves only the (empty) version table
    store.close()
    env = clean_env(database_url=sqlite_url, data_dir=tmp_path, pepper=conftest.new_pepper_text())
    port = conftest.free_port()
    refused = run_cli(["serve", "--listen", f"127.0.0.1:{port}", "--workers", "1"], env, timeout=60)
    assert refused.returncode == 2
    assert "run 'woes-auth db upgrade'" in refused.stderr


def test_serve_on_a_bare_machine_creates_the_embedded_database(tmp_path):
    """`make run`'s promise: no database, no configuration, one command."""
    env = clean_env(data_dir=tmp_path / "data")
    server = ServerProcess("serve-bare", env).start()
    try:
        assert (tmp_path / "data" / "woes-auth.db").exists()
    finally:
        server.stop()
    assert server.proc.returncode == 0
    status = run_cli(["db", "status"], env)
    assert status.returncode == 0, status.stdout + status.stderr


def test_db_upgrade_sql_prints_the_ddl_without_touching_anything(tmp_path):
    env = clean_env(data_dir=tmp_path)
    done = run_cli(["db", "upgrade", "--sql", "--database-url", "postgresql+psycopg://nobody@db.invalid/woes"], env)
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE keys" in done.stdout
    assert "CREATE TABLE key_changes" in done.stdout
    assert not any(tmp_path.iterdir())
