"""Configuration: environment, flags over environment, the development pepper, refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from auth_service.app.config import DEV_PEPPER_FILE, Settings, is_loopback, load_pepper, split_listen
from auth_service.cli.main import build_parser
from auth_service.cli.shared import settings_from as _settings
from auth_service.domain import tokens
from auth_service.domain.errors import ConfigError
from auth_service.domain.tokens import KeyKind
from tests.conftest import new_pepper_text


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("WOES_AUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


# -- environment ---------------------------------------------------------------------


def test_defaults(tmp_path):
    s = Settings.from_env()
    assert s.listen == "127.0.0.1:50051"
    assert s.data_dir == tmp_path / "xdg" / "woes-auth"
    assert s.resolved_database_url() == f"sqlite:///{tmp_path / 'xdg' / 'woes-auth' / 'woes-auth.db'}"
    assert s.production is False
    assert s.allow_remote_plaintext is False
    assert s.effective_workers() == (os.cpu_count() or 1)
    s.validate()


def test_every_variable_is_read(monkeypatch, tmp_path):
    env = {
        "LISTEN": "127.0.0.1:6000",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "postgresql+psycopg://u@db/x",
        "PEPPER": "p1:AAAA",
        "PEPPER_FILE": str(tmp_path / "pepper"),
        "PRODUCTION": "true",
        "ALLOW_REMOTE_PLAINTEXT": "1",
        "LOG_LEVEL": "DEBUG",
        "WORKERS": "3",
        "CACHE_SIZE": "42",
        "REFUSAL_MEMO_SIZE": "17",
        "CACHE_TTL": "1.5",
        "NEGATIVE_TTL": "2.5",
        "FEED_INTERVAL": "0.1",
        "OUTAGE_WINDOW": "7",
        "USAGE_FLUSH": "9",
        "SHUTDOWN_GRACE": "4",
    }
    for name, value in env.items():
        monkeypatch.setenv("WOES_AUTH_" + name, value)
    s = Settings.from_env()
    assert s.listen == "127.0.0.1:6000"
    assert s.data_dir == tmp_path / "data"
    assert s.database_url == "postgresql+psycopg://u@db/x"
    assert s.resolved_database_url() == "postgresql+psycopg://u@db/x"
    assert s.pepper == "p1:AAAA"
    assert s.pepper_file == str(tmp_path / "pepper")
    assert s.production is True
    assert s.allow_remote_plaintext is True
    assert s.log_level == "DEBUG"
    assert (s.workers, s.cache_size, s.refusal_memo_size) == (3, 42, 17)
    assert (s.cache_ttl, s.negative_ttl, s.feed_interval) == (1.5, 2.5, 0.1)
    assert (s.outage_window, s.usage_flush, s.shutdown_grace) == (7.0, 9.0, 4.0)
    assert s.effective_workers() == 3


@pytest.mark.parametrize("value,expected", [("1", True), ("yes", True), ("ON", True), ("0", False), ("no", False)])
def test_boolean_variables(monkeypatch, value, expected):
    monkeypatch.setenv("WOES_AUTH_PRODUCTION", value)
    assert Settings.from_env().production is expected


def test_data_dir_moves_the_default_database(monkeypatch, tmp_path):
    monkeypatch.setenv("WOES_AUTH_DATA_DIR", str(tmp_path / "d"))
    assert Settings.from_env().resolved_database_url() == f"sqlite:///{tmp_path / 'd' / 'woes-auth.db'}"


@pytest.mark.parametrize("name", ["WORKERS", "THREADS", "CACHE_SIZE", "CACHE_TTL", "FEED_INTERVAL"])
def test_bad_numbers_are_refused_by_name(monkeypatch, name):
    monkeypatch.setenv("WOES_AUTH_" + name, "lots")
    with pytest.raises(ConfigError, match="WOES_AUTH_" + name):
        Settings.from_env()


@pytest.mark.parametrize(
    "field,value",
    [
        ("workers", -1),
        ("threads", 0),
        ("threads", 257),
        ("cache_size", 0),
        ("refusal_memo_size", 0),
        ("feed_interval", 0),
        ("usage_flush", -1),
        ("cache_ttl", 0),
    ],
)
def test_validate_refuses_out_of_range(field, value):
    s = Settings()
    setattr(s, field, value)
    with pytest.raises(ConfigError):
        s.validate()


# -- flags over environment (the cli) ------------------------------------------------


def test_flags_override_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WOES_AUTH_LISTEN", "127.0.0.1:7000")
    monkeypatch.setenv("WOES_AUTH_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("WOES_AUTH_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("WOES_AUTH_WORKERS", "5")
    monkeypatch.setenv("WOES_AUTH_LOG_LEVEL", "ERROR")
    args = build_parser().parse_args(
        [
            "serve",
            "--listen",
            "127.0.0.1:7001",
            "--database-url",
            "sqlite:///flag.db",
            "--data-dir",
            str(tmp_path / "flag"),
            "--workers",
            "2",
            "--threads",
            "3",
            "--log-level",
            "DEBUG",
            "--production",
            "--allow-remote-plaintext",
        ]
    )
    s = _settings(args)
    assert s.listen == "127.0.0.1:7001"
    assert s.database_url == "sqlite:///flag.db"
    assert s.data_dir == tmp_path / "flag"
    assert s.workers == 2
    assert s.threads == 3
    assert s.log_level == "DEBUG"
    assert s.production is True
    assert s.allow_remote_plaintext is True


def test_environment_holds_when_no_flag_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("WOES_AUTH_LISTEN", "127.0.0.1:7000")
    monkeypatch.setenv("WOES_AUTH_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("WOES_AUTH_WORKERS", "5")
    monkeypatch.setenv("WOES_AUTH_PRODUCTION", "1")
    monkeypatch.setenv("WOES_AUTH_THREADS", "6")
    s = _settings(build_parser().parse_args(["serve"]))
    assert s.threads == 6
    assert s.listen == "127.0.0.1:7000"
    assert s.database_url == "sqlite:///env.db"
    assert s.workers == 5
    assert s.production is True  # a missing flag never turns production mode off


def test_bootstrap_admin_takes_storage_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("WOES_AUTH_DATABASE_URL", "sqlite:///env.db")
    s = _settings(build_parser().parse_args(["bootstrap-admin", "--database-url", "sqlite:///flag.db"]))
    assert s.database_url == "sqlite:///flag.db"
    assert s.listen == "127.0.0.1:50051"


# -- listen address and plaintext ----------------------------------------------------


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "localhost:1", "[::1]:50051", "127.8.9.10:0"])
def test_loopback_plaintext_is_allowed(listen):
    Settings(listen=listen).validate()


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "example.com:443"])
def test_non_loopback_plaintext_is_refused_unless_allowed(listen):
    with pytest.raises(ConfigError, match="non-loopback"):
        Settings(listen=listen).validate()
    Settings(listen=listen, allow_remote_plaintext=True).validate()


@pytest.mark.parametrize("listen", ["", "50051", "127.0.0.1", "127.0.0.1:", ":50051", "127.0.0.1:http"])
def test_malformed_listen_is_refused(listen):
    with pytest.raises(ConfigError):
        split_listen(listen)
    with pytest.raises(ConfigError):
        Settings(listen=listen).validate()


def test_split_listen_and_is_loopback():
    assert split_listen("[::1]:9") == ("::1", 9)
    assert split_listen("host:80") == ("host", 80)
    assert is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.1")
    assert not is_loopback("localhost.example.com")
    assert not is_loopback("0.0.0.0")


# -- peppers ------------------------------------------------------------------------


def _settings_with_db(tmp_path: Path, **kw) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'db' / 'auth.db'}", data_dir=tmp_path / "data", **kw)


def test_dev_pepper_is_created_0600_beside_the_sqlite_database(tmp_path):
    s = _settings_with_db(tmp_path)
    pepper, note = load_pepper(s, create=True)
    path = tmp_path / "db" / DEV_PEPPER_FILE
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "DEVELOPMENT" in note and str(path) in note
    assert not (tmp_path / "data" / DEV_PEPPER_FILE).exists()
    # The note names the file, never its content.
    assert path.read_text().strip().split(":", 1)[1] not in note
    # The next start reuses it: digests stay the same.
    again, note2 = load_pepper(s, create=False)
    token = tokens.mint(KeyKind.SERVER).token
    assert again.digest(token) == pepper.digest(token)
    assert again.primary_id == pepper.primary_id
    assert "using" in note2


def test_dev_pepper_is_not_created_without_create(tmp_path):
    with pytest.raises(ConfigError, match="no pepper configured"):
        load_pepper(_settings_with_db(tmp_path), create=False)
    assert not (tmp_path / "db" / DEV_PEPPER_FILE).exists()


def test_dev_pepper_for_a_non_sqlite_database_needs_dev_and_lives_in_the_data_dir(tmp_path):
    s = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1/x", data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="WOES_AUTH_PEPPER or WOES_AUTH_PEPPER_FILE"):
        load_pepper(s, create=True)
    assert not (tmp_path / "data" / DEV_PEPPER_FILE).exists()
    s.dev = True
    load_pepper(s, create=True)
    assert (tmp_path / "data" / DEV_PEPPER_FILE).is_file()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_dev_pepper_readable_by_others_is_refused(tmp_path, mode):
    s = _settings_with_db(tmp_path)
    load_pepper(s, create=True)
    path = tmp_path / "db" / DEV_PEPPER_FILE
    material = path.read_text().strip().split(":", 1)[1]
    path.chmod(mode)
    with pytest.raises(ConfigError, match="readable by others") as info:
        load_pepper(s, create=True)
    assert material not in str(info.value)
    path.chmod(0o400)
    load_pepper(s, create=False)  # owner-only read is fine


def test_invalid_dev_pepper_file_is_refused_without_echoing_it(tmp_path):
    s = _settings_with_db(tmp_path)
    path = tmp_path / "db" / DEV_PEPPER_FILE
    path.parent.mkdir(parents=True)
    garbage = "dev1:c2VjcmV0LW5vdC0zMi1ieXRlcw=="
    path.write_text(garbage)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_pepper(s, create=True)
    assert "c2VjcmV0" not in str(info.value)


def test_production_refuses_without_a_configured_pepper(tmp_path):
    s = _settings_with_db(tmp_path, production=True)
    with pytest.raises(ConfigError, match="production"):
        load_pepper(s, create=True)
    assert not (tmp_path / "db" / DEV_PEPPER_FILE).exists()
    # Even an existing development pepper is not good enough.
    load_pepper(_settings_with_db(tmp_path), create=True)
    with pytest.raises(ConfigError, match="production"):
        load_pepper(s, create=True)


def test_production_with_a_pepper_starts(tmp_path):
    text = new_pepper_text("prod1")
    pepper, note = load_pepper(_settings_with_db(tmp_path, production=True, pepper=text), create=True)
    assert pepper.primary_id == "prod1"
    assert "WOES_AUTH_PEPPER" in note
    assert text.split(":", 1)[1] not in note
    assert not (tmp_path / "db" / DEV_PEPPER_FILE).exists()


def test_pepper_from_file(tmp_path):
    text = new_pepper_text("f1") + "," + new_pepper_text("f0")
    path = tmp_path / "pepper"
    path.write_text(text + "\n")
    path.chmod(0o600)
    pepper, note = load_pepper(_settings_with_db(tmp_path, production=True, pepper_file=str(path)), create=False)
    assert pepper.primary_id == "f1"
    assert str(path) in note


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o666, 0o601])
def test_a_pepper_file_open_to_other_users_is_refused_without_echoing_it(tmp_path, mode):
    text = new_pepper_text("f1")
    path = tmp_path / "pepper"
    path.write_text(text + "\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as err:
        load_pepper(_settings_with_db(tmp_path, production=True, pepper_file=str(path)), create=False)
    message = str(err.value)
    assert f"mode {mode:o}" in message and "chmod 600" in message
    assert text.split(":", 1)[1] not in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_pepper_file_readable_by_its_owner_or_group_only_is_read(tmp_path, mode):
    path = tmp_path / "pepper"
    path.write_text(new_pepper_text("f1") + "\n")
    path.chmod(mode)
    pepper, _ = load_pepper(_settings_with_db(tmp_path, production=True, pepper_file=str(path)), create=False)
    assert pepper.primary_id == "f1"


def test_pepper_variable_wins_over_file(tmp_path):
    path = tmp_path / "pepper"
    path.write_text(new_pepper_text("file"))
    pepper, _ = load_pepper(
        _settings_with_db(tmp_path, pepper=new_pepper_text("env"), pepper_file=str(path)), create=False
    )
    assert pepper.primary_id == "env"


def test_unreadable_pepper_file_is_a_config_error(tmp_path):
    s = _settings_with_db(tmp_path, pepper_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_pepper(s, create=True)


def test_invalid_configured_pepper_is_refused_without_echoing_it(tmp_path):
    bad = "p1:QUJDREVGR0hJSktMTU5PUA=="  # 16 bytes
    with pytest.raises(ConfigError) as info:
        load_pepper(_settings_with_db(tmp_path, pepper=bad), create=True)
    assert "QUJDREVG" not in str(info.value)
    assert "invalid" in str(info.value)


def test_settings_repr_never_shows_key_material():
    from auth_service.app.config import Settings

    s = Settings(
        pepper="p1:c2VjcmV0LXBlcHBlci1tYXRlcmlhbA==", kek="k1:a2VrLW1hdGVyaWFs", kek_passphrase="hunter2hunter2"
    )
    text = repr(s)
    for secret in ("c2VjcmV0LXBlcHBlci1tYXRlcmlhbA", "a2VrLW1hdGVyaWFs", "hunter2hunter2"):
        assert secret not in text
