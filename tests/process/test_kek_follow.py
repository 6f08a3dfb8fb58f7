"""Running servers follow a KEK rotation, and ``kek rotate`` / ``kek status`` say done only when it is.

A server started before ``woes-auth kek rotate`` seals the next PutTestCredential under the new
primary (agreed in the database), and a put racing the rotation cannot leave a record under the
retiring key once the rotation reported done: removing that key as told loses nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from woes.auth.v1 import test_credentials_pb2 as tpb

from auth_service.domain.crypto import Keyring
from auth_service.domain.envelope import KekRing
from auth_service.domain.ports import PrimaryKekMoved
from auth_service.domain.test_credentials import PURPOSE
from auth_service.store import SqlAuditStore, SqlKekStore, SqlStore, SqlTestCredentialStore
from auth_service.store.kek import hold_primary
from tests import conftest
from tests.conftest import new_kek_text, start_live_server
from tests.support.cluster import ServerProcess, clean_env, run_cli
from tests.support.services import new_plaintext

URL = "https://api.customer.example/v1"
WORKSPACE = "ws-kek"


def _put(stub, md, name: str, material: str):
    request = tpb.PutTestCredentialRequest(
        workspace_id=WORKSPACE,
        name=name,
        kind=tpb.TEST_CREDENTIAL_KIND_BEARER_TOKEN,
        secret_material=material,
        target_base_url=URL,
    )
    return stub.PutTestCredential(request, metadata=md, timeout=30)


def _rows(url: str) -> list:
    sql = SqlStore(url, create_schema=False)
    try:
        return SqlTestCredentialStore(sql).list_test_credentials(WORKSPACE, 100_000, None)
    finally:
        sql.close()


def _primary(url: str) -> str:
    sql = SqlStore(url, create_schema=False)
    try:
        return SqlKekStore(sql).primary_kek_id()
    finally:
        sql.close()


def _says_done(stdout: str) -> bool:
    return any(line.startswith("done:") for line in stdout.splitlines())


def _entries(text: str) -> list[str]:
    return [e.strip() for e in text.replace("\n", ",").split(",") if e.strip()]


@dataclass
class Deployment:
    """A database, the servers' environment and the operator's (for `kek` commands)."""

    url: str
    env: dict[str, str]
    cli_env: dict[str, str]
    old_kek: str
    kek_file: Path | None = None
    admin_md: tuple = ()
    materials: dict[str, str] = field(default_factory=dict)  # credential id -> plaintext last put

    def new_key_entries(self, new_id: str) -> list[str]:
        """The new primary's entry, as the operator holds it (and registered for the log scans)."""
        source = self.kek_file.read_text() if self.kek_file else self.cli_env["WOES_AUTH_KEK"]
        entries = _entries(source)
        conftest.OTHER_SECRETS.update(e.split(":", 1)[1] for e in entries)
        return [e for e in entries if e.split(":", 1)[0] == new_id]


def _deployment(kind: str, tmp_path: Path, request) -> Deployment:
    data = tmp_path / "data"
    if kind == "sqlite-default":  # `make run`: the embedded database and its development KEK file
        env = clean_env(data_dir=data)
        dep = Deployment(f"sqlite:///{data / 'woes-auth.db'}", env, env, "dev1", kek_file=data / "dev-kek")
    else:
        url = request.getfixturevalue("postgres_url")
        base = {"database_url": url, "data_dir": data, "pepper": conftest.new_pepper_text(), "production": "1"}
        upgraded = run_cli(["db", "upgrade"], clean_env(**base))
        assert upgraded.returncode == 0, upgraded.stderr
        if kind == "postgres-file":
            kek_file = tmp_path / "kek"
            kek_file.write_text(new_kek_text("k1") + "\n")
            kek_file.chmod(0o600)
            env = clean_env(kek_file=kek_file, **base)
            dep = Deployment(url, env, env, "k1", kek_file=kek_file)
        else:  # keys from the environment: the servers hold the next key already, after the primary
            k1, k2 = new_kek_text("k1"), new_kek_text("k2")
            dep = Deployment(url, clean_env(kek=f"{k1},{k2}", **base), clean_env(kek=f"{k2},{k1}", **base), "k1")
    boot = run_cli(["bootstrap-admin", "--name", "kek test admin"], dep.env)
    assert boot.returncode == 0, boot.stderr
    secret = boot.stdout.strip().splitlines()[-1]
    conftest.MINTED.add(secret)
    dep.admin_md = (("authorization", f"Bearer {secret}"),)
    return dep


def _check_done_and_nothing_lost(dep: Deployment, new_id: str) -> None:
    """`kek status` says done; every record is under ``new_id``; the new key alone opens them all."""
    status = run_cli(["kek", "status"], dep.cli_env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"done: every record is under {new_id}" in status.stdout
    rows = _rows(dep.url)
    assert rows and {r.sealed.kek_id for r in rows} == {new_id}
    only_new = KekRing(lambda: Keyring.parse(",".join(dep.new_key_entries(new_id))))
    for r in rows:
        opened = only_new.open(PURPOSE, r.workspace_id, r.credential_id, r.sealed).decode()
        assert opened == dep.materials[r.credential_id]


KINDS = ["sqlite-default", pytest.param("postgres-file", marks=pytest.mark.postgres)]
KINDS_ENV = [*KINDS, pytest.param("postgres-env", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", KINDS_ENV)
def test_a_server_started_before_kek_rotate_seals_under_the_new_primary(kind, tmp_path, request):
    dep = _deployment(kind, tmp_path, request)
    server = ServerProcess(f"kek-follow-{kind}", dep.env).start()
    try:
        material = new_plaintext()
        before = _put(server.stub, dep.admin_md, "before", material)
        assert before.credential.kek_id == dep.old_kek
        dep.materials[before.credential.credential_id] = material

        rotated = run_cli(["kek", "rotate"], dep.cli_env)
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert _says_done(rotated.stdout)
        new_id = _primary(dep.url)
        assert new_id and new_id != dep.old_kek

        # Through the server started before the rotation: a new record and a replaced one.
        for name in ("after", "before"):
            material = new_plaintext()
            put = _put(server.stub, dep.admin_md, name, material)
            assert put.credential.kek_id == new_id, f"{name}: sealed under {put.credential.kek_id}"
            dep.materials[put.credential.credential_id] = material
    finally:
        server.stop()
    _check_done_and_nothing_lost(dep, new_id)


@pytest.mark.parametrize("kind", KINDS)
def test_puts_racing_kek_rotate_leave_no_record_under_the_old_key(kind, tmp_path, request):
    dep = _deployment(kind, tmp_path, request)
    server = ServerProcess(f"kek-race-{kind}", dep.env).start()
    stop = threading.Event()
    done: list[tuple[float, float, str]] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        i = 0
        while not stop.is_set():
            material = new_plaintext()
            start = time.monotonic()
            try:
                put = _put(server.stub, dep.admin_md, f"race-{i}", material)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return
            done.append((start, time.monotonic(), put.credential.kek_id))
            dep.materials[put.credential.credential_id] = material
            i += 1

    thread = threading.Thread(target=hammer)
    try:
        thread.start()
        time.sleep(0.5)
        began = time.monotonic()
        rotated = run_cli(["kek", "rotate"], dep.cli_env)
        ended = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)
        server.stop()
    assert not errors, errors
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert _says_done(rotated.stdout)
    new_id = _primary(dep.url)
    assert any(began < end and start < ended for start, end, _ in done), "no put overlapped the rotation"
    assert all(kek_id == new_id for start, _end, kek_id in done if start > ended)
    _check_done_and_nothing_lost(dep, new_id)


@pytest.mark.parametrize("write", ["insert_test_credential", "replace_test_credential"])
def test_a_put_sealed_before_the_rotation_and_written_after_it_is_sealed_again(database_url, pepper, tmp_path, write):
    """The race made certain: the put seals under the old key, then `kek rotate` runs to done,
    then the put's write reaches the database."""
    k1, k2 = new_kek_text("k1"), new_kek_text("k2")
    srv = start_live_server(database_url, pepper, kek=f"{k1},{k2}")
    cli_env = clean_env(database_url=database_url, data_dir=tmp_path, kek=f"{k2},{k1}")
    materials = {}
    try:
        first = new_plaintext()
        put = _put(srv.stub, srv.admin_md, "existing", first)
        assert put.credential.kek_id == "k1"
        materials[put.credential.credential_id] = first
        store = srv.runtime.services.test_credentials.store
        real = getattr(store, write)
        rotations = []

        def racing(record, audit):
            if not rotations:  # once: the record in hand is sealed under k1
                assert record.sealed.kek_id == "k1"
                rotations.append(run_cli(["kek", "rotate"], cli_env))
            return real(record, audit)

        setattr(store, write, racing)
        material = new_plaintext()
        name = "existing" if write == "replace_test_credential" else "raced"
        raced = _put(srv.stub, srv.admin_md, name, material)
        materials[raced.credential.credential_id] = material
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
    (rotated,) = rotations
    assert rotated.returncode == 0 and _says_done(rotated.stdout), rotated.stdout + rotated.stderr
    assert raced.credential.kek_id == "k2"
    dep = Deployment(database_url, cli_env, cli_env, "k1", materials=materials)
    _check_done_and_nothing_lost(dep, "k2")


def test_status_and_rotate_are_not_done_while_a_record_stays_under_another_key(database_url, pepper, tmp_path):
    from sqlalchemy import update

    from auth_service.store.schema import test_credentials

    k1, k2 = new_kek_text("k1"), new_kek_text("k2")
    srv = start_live_server(database_url, pepper, kek=k1)
    try:
        ids = [_put(srv.stub, srv.admin_md, f"c{i}", new_plaintext()).credential.credential_id for i in range(3)]
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
    sql = SqlStore(database_url, create_schema=False)
    try:  # one record whose wrapped key no longer opens: it cannot be re-wrapped
        with sql._write.begin() as conn:
            conn.execute(
                update(test_credentials)
                .where(test_credentials.c.credential_id == ids[0])
                .values(wrapped_key=b"\0" * 60)
            )
    finally:
        sql.close()
    env = clean_env(database_url=database_url, data_dir=tmp_path, kek=f"{k2},{k1}")
    rotated = run_cli(["kek", "rotate"], env)
    assert rotated.returncode == 1, rotated.stdout + rotated.stderr
    assert not _says_done(rotated.stdout) and "not done" in rotated.stdout
    assert f"unreadable, left as it was: {ids[0]}" in rotated.stderr
    status = run_cli(["kek", "status"], env)
    assert status.returncode == 3
    assert "1 record(s) still to re-wrap" in status.stdout and "not done" in status.stdout
    assert "done: every record" not in status.stdout


def test_a_change_of_primary_waits_for_writes_that_checked_the_old_one(database_url):
    sql = SqlStore(database_url)
    store = SqlKekStore(sql)
    try:
        assert store.agree_primary_kek("k1") == "k1"
        assert store.agree_primary_kek("k9") == "k1"  # agreed once; later agreements follow it
        conn = sql._write.connect()
        txn = conn.begin()
        hold_primary(conn, "k1")  # a put's transaction, between its check and its commit
        changed = threading.Event()
        changer = threading.Thread(target=lambda: (store.set_primary_kek("k2", "test"), changed.set()))
        changer.start()
        try:
            assert not changed.wait(1.0), "the primary changed under a write that checked the old one"
        finally:
            txn.commit()
            conn.close()
        assert changed.wait(30)
        changer.join(10)
        assert store.primary_kek_id() == "k2"
        with sql._write.begin() as later, pytest.raises(PrimaryKekMoved):
            hold_primary(later, "k1")
        audits = SqlAuditStore(sql).list_audit_events(action="kek.primary")
        assert [a.detail for a in audits] == ["primary=k2 previous=k1"]
    finally:
        sql.close()
