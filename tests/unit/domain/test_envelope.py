"""Envelope encryption, KEK configuration and `woes-auth kek rotate` (interrupted and resumed)."""

import os
import stat
import subprocess
import sys

import pytest

from auth_service.app.config import Settings
from auth_service.app.services import build_test_credentials, load_ring
from auth_service.domain import envelope
from auth_service.domain.crypto import Keyring
from auth_service.domain.envelope import KekRing, load_kek_ring
from auth_service.domain.errors import ConfigError, KeyEncryptionKeyMissing, TestCredentialUnreadable
from auth_service.store import SqlAuditStore, SqlKekStore, SqlStore, SqlTestCredentialStore
from tests import conftest
from tests.conftest import new_kek_text
from tests.support.services import new_plaintext


def _ring(*entries) -> KekRing:
    ring = Keyring.parse(",".join(entries))
    return KekRing(lambda: ring)


def test_seal_open_and_bindings():
    k1 = new_kek_text("k1")
    ring = _ring(k1)
    secret = new_plaintext().encode()
    sealed = ring.seal("p", "ws", "rec1", secret)
    assert secret not in sealed.ciphertext and sealed.kek_id == "k1"
    assert ring.open("p", "ws", "rec1", sealed) == secret
    for args in (("p", "ws", "rec2"), ("p", "ws2", "rec1"), ("q", "ws", "rec1")):
        with pytest.raises(TestCredentialUnreadable):
            ring.open(*args, sealed)
    # two seals of one plaintext share nothing
    again = ring.seal("p", "ws", "rec1", secret)
    assert again.ciphertext != sealed.ciphertext and again.wrapped_key != sealed.wrapped_key


def test_rewrap_and_old_keys_decrypt_until_removed():
    k1, k2 = new_kek_text("k1"), new_kek_text("k2")
    secret = new_plaintext().encode()
    old = _ring(k1).seal("p", "ws", "r", secret)
    both = _ring(k2, k1)
    assert both.open("p", "ws", "r", old) == secret  # the old key still decrypts
    new = both.rewrap("p", "ws", "r", old)
    assert new.kek_id == "k2" and new.ciphertext == old.ciphertext
    assert _ring(k2).open("p", "ws", "r", new) == secret
    with pytest.raises(KeyEncryptionKeyMissing) as info:
        _ring(k2).open("p", "ws", "r", old)
    assert "k1" in info.value.message
    with pytest.raises(TestCredentialUnreadable):  # a wrapped key relabelled with another key id
        both.open("p", "ws", "r", envelope.Sealed("k2", old.wrapped_key, old.ciphertext))


def test_dev_kek_file_created_0600_and_reused(tmp_path):
    ring, note = load_kek_ring(dev_dir=tmp_path, create=True)
    path = tmp_path / envelope.DEV_KEK_FILE
    conftest.OTHER_SECRETS.add(path.read_text().strip().split(":", 1)[1])
    assert "DEVELOPMENT" in note and stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = ring.seal("p", "w", "r", b"x")
    ring2, note2 = load_kek_ring(dev_dir=tmp_path, create=True)
    assert "using" in note2 and ring2.open("p", "w", "r", sealed) == b"x"
    os.chmod(path, 0o644)
    with pytest.raises(envelope.KekConfigError):
        load_kek_ring(dev_dir=tmp_path)
    with pytest.raises(envelope.KekConfigError):
        load_kek_ring(dev_dir=None)
    with pytest.raises(envelope.KekConfigError) as info:
        load_kek_ring(kek="k1:notbase64!!")
    assert "notbase64" not in str(info.value)


def test_passphrase_kek_salt_and_parameters_stored(tmp_path, sqlite_url):
    passphrase = new_plaintext("passphrase")
    sql = SqlStore(sqlite_url)
    try:
        store = SqlKekStore(sql)
        settings = Settings(database_url=sqlite_url, data_dir=tmp_path, kek_passphrase=passphrase)
        ring, note = load_ring(settings, store, create=False)
        assert "argon2id" in note and ring.primary_id == envelope.PASSPHRASE_KEK_ID
        sealed = ring.seal("p", "w", "r", b"data")
        salt, params = store.kek_derivation(envelope.PASSPHRASE_KEK_ID, b"other salt", {}, None)
        assert len(salt) == 16 and params == envelope.PASSPHRASE_PARAMS
        again, _ = load_ring(settings, store, create=False)
        assert again.open("p", "w", "r", sealed) == b"data"
        wrong, _ = load_ring(
            Settings(database_url=sqlite_url, data_dir=tmp_path, kek_passphrase=passphrase + "x"), store, create=False
        )
        with pytest.raises(TestCredentialUnreadable):
            wrong.open("p", "w", "r", sealed)
        with pytest.raises(ConfigError):
            load_ring(Settings(database_url=sqlite_url, data_dir=tmp_path, production=True), store, create=False)
    finally:
        sql.close()


def _fill(database_url, kek_text, n):
    sql = SqlStore(database_url)
    store = SqlTestCredentialStore(sql)
    lab = build_test_credentials(sql, _ring(kek_text))
    plaintexts = {}
    for i in range(n):
        material = new_plaintext()
        record, _ = lab.put("admin:test", "ws", f"cred-{i}", "bearer_token", material, "https://api.example")
        plaintexts[record.credential_id] = material
    return sql, store, plaintexts


def _under(store):
    return store.count_test_credentials_by_kek()


def test_rewrap_interrupted_and_resumed(database_url):
    k1, k2 = new_kek_text("k1"), new_kek_text("k2")
    sql, store, plaintexts = _fill(database_url, k1, 7)
    try:
        lab = build_test_credentials(sql, _ring(k2, k1))
        store = lab.store
        SqlKekStore(sql).set_primary_kek(
            "k2", "cli:test"
        )  # what `kek rotate` does first: re-wraps go to the agreed primary
        # a crash after three rows: the fourth compare-and-set raises
        real_swap, calls = store.swap_wrapping, []

        def crashing_swap(*args):
            calls.append(1)
            if len(calls) == 4:
                raise KeyboardInterrupt("operator pressed Ctrl-C")
            return real_swap(*args)

        store.swap_wrapping = crashing_swap
        with pytest.raises(KeyboardInterrupt):
            lab.rewrap_all("cli:test", batch_size=2)
        store.swap_wrapping = real_swap
        assert _under(store) == {"k2": 3, "k1": 4}
        for cid, material in plaintexts.items():  # every row readable mid-way, under its old or new key
            assert lab.reveal("t", {"lab:test_credentials:reveal"}, "ws", cid).plaintext == material
        # a bounded run, then the rest
        report = lab.rewrap_all("cli:test", max_rows=2)
        assert (report.rewrapped, report.remaining) == (2, 2)
        report = lab.rewrap_all("cli:test")
        assert (report.rewrapped, report.remaining) == (2, 0)
        assert _under(store) == {"k2": 7}
        assert lab.rewrap_all("cli:test").rewrapped == 0  # idempotent
        only_new = build_test_credentials(sql, _ring(k2))
        for cid, material in plaintexts.items():  # the old key can now go
            assert only_new.reveal("t", {"lab:test_credentials:reveal"}, "ws", cid).plaintext == material
        audits = SqlAuditStore(sql).list_audit_events(action="kek.rotate")
        assert [a.outcome for a in audits] == ["ok", "ok", "partial"]
    finally:
        sql.close()


def _cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "auth_service.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_kek_file_open_to_other_users_is_refused_and_not_reloaded(tmp_path):
    kek_file = tmp_path / "kek"
    text = new_kek_text("k1")
    kek_file.write_text(text + "\n")
    kek_file.chmod(0o644)
    with pytest.raises(envelope.KekConfigError) as err:
        load_kek_ring(kek_file=str(kek_file))
    assert "mode 644" in str(err.value) and "chmod 600" in str(err.value)
    assert text.split(":", 1)[1] not in str(err.value)
    kek_file.chmod(0o640)
    ring, _note = load_kek_ring(kek_file=str(kek_file))
    # A later re-read of a file someone opened up keeps the keys already loaded.
    before = ring.primary_id
    kek_file.write_text(new_kek_text("k2") + "\n")
    kek_file.chmod(0o604)
    ring.reload()
    assert ring.primary_id == before
    kek_file.chmod(0o600)
    ring.reload()
    assert ring.primary_id == "k2"


def test_kek_rotate_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    kek_file = tmp_path / "kek"
    kek_file.write_text(new_kek_text("k1") + "\n")
    kek_file.chmod(0o600)
    sql, store, plaintexts = _fill(url, kek_file.read_text().strip(), 5)
    sql.close()
    env = {"WOES_AUTH_DATABASE_URL": url, "WOES_AUTH_KEK_FILE": str(kek_file), "WOES_AUTH_LOG_LEVEL": "WARNING"}
    for name in ("WOES_AUTH_KEK", "WOES_AUTH_KEK_PASSPHRASE"):
        env[name] = ""

    first = _cli("kek", "rotate", "--max-rows", "2", env=env)
    assert first.returncode == 3, first.stderr
    lines = kek_file.read_text().split()
    assert len(lines) == 2 and lines[1].startswith("k1:")
    new_id = lines[0].split(":")[0]
    conftest.OTHER_SECRETS.add(lines[0].split(":", 1)[1])
    assert f"new primary key-encryption key {new_id}" in first.stdout
    assert "re-wrapped 2" in first.stdout and "3 record(s) still under older keys" in first.stdout

    second = _cli("kek", "rotate", env=env)  # resumes: no third key
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout and len(kek_file.read_text().split()) == 2
    status = _cli("kek", "status", env=env)
    assert f"{new_id}: 5" in status.stdout and "0 record(s) still to re-wrap" in status.stdout

    sql = SqlStore(url)
    try:
        ring = KekRing(lambda: Keyring.parse(kek_file.read_text().split()[0]))
        lab = build_test_credentials(sql, ring)
        for cid, material in plaintexts.items():
            assert lab.reveal("t", {"lab:test_credentials:reveal"}, "ws", cid).plaintext == material
    finally:
        sql.close()
    for out in (first, second, status):
        assert not any(s in out.stdout + out.stderr for s in conftest.OTHER_SECRETS)
    env_only = {**env, "WOES_AUTH_KEK_FILE": "", "WOES_AUTH_KEK": kek_file.read_text().split()[0]}
    refused = _cli("kek", "rotate", env=env_only)
    assert refused.returncode == 2 and "WOES_AUTH_KEK" in refused.stderr
