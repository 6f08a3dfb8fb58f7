"""Configuration: environment variables, overridden by command-line flags.

| variable | default | meaning |
| --- | --- | --- |
| WOES_AUTH_LISTEN | 127.0.0.1:50051 | address to serve gRPC on |
| WOES_AUTH_DATA_DIR | ~/.local/share/woes-auth | where the SQLite file and development keys live |
| WOES_AUTH_DATABASE_URL | sqlite:///<data dir>/woes-auth.db | SQLAlchemy URL (sqlite or postgresql+psycopg) |
| WOES_AUTH_PEPPER / WOES_AUTH_PEPPER_FILE | development file (see below) | `id:base64-of-32-bytes` entries, comma separated, first primary |
| WOES_AUTH_KEK / WOES_AUTH_KEK_FILE | development file (see below) | key-encryption keys of test credentials, `id:base64-of-32-bytes`, comma separated, first primary (until the database agrees on one: `woes-auth kek rotate`) |
| WOES_AUTH_KEK_PASSPHRASE | | an operator passphrase turned into a key-encryption key with argon2id (salt and parameters kept in the database) |
| WOES_AUTH_FAILURE_FLUSH | 60 | seconds between aggregated failed-authentication audit rows |
| WOES_AUTH_PRODUCTION | false | refuse to start without a configured pepper and key-encryption key |
| WOES_AUTH_WORKERS | number of cores | serving processes sharing the port |
| WOES_AUTH_CACHE_SIZE | 100000 | verified credentials cached per process |
| WOES_AUTH_REFUSAL_MEMO_SIZE | 10000 | requests refused as unknown remembered by their bytes per process (about 250 bytes each) |
| WOES_AUTH_CACHE_TTL | 300 | seconds a verified credential stays cached at most |
| WOES_AUTH_NEGATIVE_TTL | 60 | seconds an unknown credential stays cached |
| WOES_AUTH_FEED_INTERVAL | 0.25 | seconds between change-feed polls (the revocation bound) |
| WOES_AUTH_OUTAGE_WINDOW | 60 | seconds cached verifications keep answering while the store is unreachable |
| WOES_AUTH_USAGE_FLUSH | 5 | seconds between usage-metadata writes |
| WOES_AUTH_SHUTDOWN_DRAIN | 1 | seconds health answers NOT_SERVING after SIGTERM before new calls are refused |
| WOES_AUTH_SHUTDOWN_GRACE | 10 | seconds in-flight calls get to finish after that |
| WOES_AUTH_LOG_LEVEL | INFO | log level |
| WOES_AUTH_STATS_PORT | 0 (off) | worker i serves GET /stats (JSON counters) on 127.0.0.1:port+i |
| WOES_AUTH_TLS_CERT / _KEY / _CLIENT_CA | unset | server certificate, its key and the CA of caller certificates: mTLS, client certificates required |
| WOES_AUTH_ALLOW_REMOTE_PLAINTEXT | false | allow plaintext on a non-loopback address (behind a TLS-terminating proxy only) |
| WOES_AUTH_POLICY_FILE | unset | caller policy (JSON or TOML): which callers may call which RPC groups |
| WOES_AUTH_ACCESS_LOG | false | one INFO log line per call (request id, method, status, duration, key id) |
| WOES_AUTH_METRICS_LISTEN | unset | host:port of the Prometheus /metrics endpoint (worker N uses port + N) |
| WOES_AUTH_MAX_CONCURRENT_RPCS | 1000 | calls in progress per process; more are refused with RESOURCE_EXHAUSTED |
| WOES_AUTH_MAX_CONCURRENT_STREAMS | 100 | calls in flight per connection (HTTP/2); more wait at the client |
| WOES_AUTH_THROTTLE_CALLER | 1000/100 | failed authentications per caller the policy lists as ``throttled``: burst/refill per second |

Development keys: a pepper or key-encryption key that is not configured is made once and kept in
a 0600 file beside the database only for the embedded SQLite database, or for any database with
the ``--dev`` flag, and never in production mode. Anything else without configured keys is
refused, naming the variables to set (:meth:`Settings.key_refusal`): replicas of one shared
database must share one pepper and one ring of key-encryption keys, which a file made by each
replica cannot give.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from auth_service.domain.crypto import (
    DevelopmentKeyNote,
    DevKeyFileError,
    Keyring,
    KeyringError,
    Pepper,
    SecretFileModeError,
    ensure_dev_key_file,
    read_secret_file,
)
from auth_service.domain.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "WOES_AUTH_"
DEV_PEPPER_FILE = "dev-pepper"
PEPPER_VARIABLES = "WOES_AUTH_PEPPER or WOES_AUTH_PEPPER_FILE"
KEK_VARIABLES = "WOES_AUTH_KEK, WOES_AUTH_KEK_FILE or WOES_AUTH_KEK_PASSPHRASE"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def _env_bool(name: str) -> bool:
    return _env(name).strip().lower() in ("1", "true", "yes", "on")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "woes-auth"


@dataclass
class Settings:
    listen: str = "127.0.0.1:50051"
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str = ""
    pepper: str = field(default="", repr=False)
    pepper_file: str = ""
    production: bool = False
    dev: bool = False
    workers: int = 0
    threads: int = 2
    cache_size: int = 100_000
    refusal_memo_size: int = 10_000
    cache_ttl: float = 300.0
    negative_ttl: float = 60.0
    feed_interval: float = 0.25
    outage_window: float = 60.0
    usage_flush: float = 5.0
    shutdown_drain: float = 1.0
    shutdown_grace: float = 10.0
    log_level: str = "INFO"
    allow_remote_plaintext: bool = False
    kek: str = field(default="", repr=False)
    kek_file: str = ""
    kek_passphrase: str = field(default="", repr=False)
    failure_flush: float = 60.0
    stats_port: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    policy_file: str = ""
    access_log: bool = False
    metrics_listen: str = ""
    max_concurrent_rpcs: int = 1000
    max_concurrent_streams: int = 100
    throttle_caller: str = "1000/100"

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert or self.tls_key or self.tls_client_ca)

    @classmethod
    def from_env(cls) -> Settings:
        s = cls()
        s.listen = _env("LISTEN", s.listen)
        if _env("DATA_DIR"):
            s.data_dir = Path(_env("DATA_DIR"))
        s.database_url = _env("DATABASE_URL")
        s.pepper = _env("PEPPER")
        s.pepper_file = _env("PEPPER_FILE")
        s.production = _env_bool("PRODUCTION")
        s.kek = _env("KEK")
        s.kek_file = _env("KEK_FILE")
        s.kek_passphrase = _env("KEK_PASSPHRASE")
        s.allow_remote_plaintext = _env_bool("ALLOW_REMOTE_PLAINTEXT")
        s.log_level = _env("LOG_LEVEL", s.log_level)
        s.tls_cert = _env("TLS_CERT")
        s.tls_key = _env("TLS_KEY")
        s.tls_client_ca = _env("TLS_CLIENT_CA")
        s.policy_file = _env("POLICY_FILE")
        s.access_log = _env_bool("ACCESS_LOG")
        s.metrics_listen = _env("METRICS_LISTEN")
        s.throttle_caller = _env("THROTTLE_CALLER", s.throttle_caller)
        if _env("THROTTLE_KEY"):
            raise ConfigError(
                f"{ENV_PREFIX}THROTTLE_KEY is no longer a setting: failed authentications are not limited per "
                "key id (a stranger's guesses must not lock a key's owner out); remove it"
            )
        for name, attr, conv in (
            ("WORKERS", "workers", int),
            ("THREADS", "threads", int),
            ("CACHE_SIZE", "cache_size", int),
            ("REFUSAL_MEMO_SIZE", "refusal_memo_size", int),
            ("CACHE_TTL", "cache_ttl", float),
            ("NEGATIVE_TTL", "negative_ttl", float),
            ("FEED_INTERVAL", "feed_interval", float),
            ("OUTAGE_WINDOW", "outage_window", float),
            ("USAGE_FLUSH", "usage_flush", float),
            ("SHUTDOWN_DRAIN", "shutdown_drain", float),
            ("SHUTDOWN_GRACE", "shutdown_grace", float),
            ("MAX_CONCURRENT_RPCS", "max_concurrent_rpcs", int),
            ("MAX_CONCURRENT_STREAMS", "max_concurrent_streams", int),
            ("FAILURE_FLUSH", "failure_flush", float),
            ("STATS_PORT", "stats_port", int),
        ):
            raw = _env(name)
            if raw:
                try:
                    setattr(s, attr, conv(raw))
                except ValueError:
                    raise ConfigError(f"{ENV_PREFIX}{name} must be a number") from None
        return s

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'woes-auth.db'}"

    def effective_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def validate(self) -> None:
        if self.workers < 0:
            raise ConfigError("workers must be 0 (one per core) or more")
        if not 1 <= self.threads <= 256:
            raise ConfigError("threads must be between 1 and 256 (RPC threads per serving process)")
        if not 0 <= self.stats_port <= 65535 - self.effective_workers():
            raise ConfigError("stats port must be 0 (off) or a port that leaves room for one per worker")
        if self.cache_size < 1:
            raise ConfigError("cache size must be at least 1")
        if self.refusal_memo_size < 1:
            raise ConfigError("refusal memo size must be at least 1")
        for name in ("feed_interval", "usage_flush", "cache_ttl", "negative_ttl", "outage_window", "failure_flush"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be positive")
        host, _port = split_listen(self.listen)
        if self.tls_enabled:
            for name in ("tls_cert", "tls_key", "tls_client_ca"):
                value = getattr(self, name)
                if not value:
                    raise ConfigError(
                        "TLS needs all of WOES_AUTH_TLS_CERT, WOES_AUTH_TLS_KEY and WOES_AUTH_TLS_CLIENT_CA "
                        f"(missing {name.upper()})"
                    )
                if not Path(value).is_file():
                    raise ConfigError(f"{ENV_PREFIX}{name.upper()}: no such file {value!r}")
        if self.max_concurrent_rpcs < 1 or self.max_concurrent_streams < 1:
            raise ConfigError("max concurrent rpcs and streams must be at least 1")
        if self.metrics_listen:
            split_listen(self.metrics_listen)
        parse_rate(self.throttle_caller, ENV_PREFIX + "THROTTLE_CALLER")
        if self.dev and self.production:
            raise ConfigError("--dev (development keys) and production mode exclude each other")
        if not self.tls_enabled and not is_loopback(host) and not self.allow_remote_plaintext:
            raise ConfigError(
                f"refusing to serve plaintext gRPC on non-loopback address {self.listen!r}; "
                "bind to 127.0.0.1 or set WOES_AUTH_ALLOW_REMOTE_PLAINTEXT=1 behind a TLS-terminating proxy"
            )

    def embedded_database(self) -> bool:
        """Whether the database is the embedded SQLite one (a file, or memory, of this host)."""
        return self.resolved_database_url().startswith("sqlite:")

    def development_keys_allowed(self) -> bool:
        """The one rule of development keys (see the module docstring): never in production mode;
        otherwise for the embedded SQLite database, or for any database with ``--dev``."""
        return not self.production and (self.dev or self.embedded_database())

    def pepper_configured(self) -> bool:
        return bool(self.pepper or self.pepper_file)

    def kek_configured(self) -> bool:
        return bool(self.kek or self.kek_file or self.kek_passphrase)

    def key_refusal(self, *, pepper: bool = True, kek: bool = True) -> str | None:
        """Why the keys asked for cannot be had (naming each missing variable), or ``None`` if they can:
        each is configured, or development keys are allowed."""
        if self.development_keys_allowed():
            return None
        missing = []
        if pepper and not self.pepper_configured():
            missing.append(("a pepper", PEPPER_VARIABLES))
        if kek and not self.kek_configured():
            missing.append(("key-encryption keys", KEK_VARIABLES))
        if not missing:
            return None
        needs = " and ".join(noun for noun, _ in missing)
        variables = "; and ".join(names for _, names in missing)
        if self.production:
            return f"production mode needs {needs} from the secret manager: set {variables}"
        return (
            f"a database other than the embedded SQLite one needs {needs} configured: set {variables} "
            "(development keys are made only for the embedded SQLite database, or with --dev)"
        )

    def require_keys(self, *, pepper: bool = True, kek: bool = True) -> None:
        """Raise :class:`ConfigError` naming every missing key variable (see :meth:`key_refusal`)."""
        refusal = self.key_refusal(pepper=pepper, kek=kek)
        if refusal is not None:
            raise ConfigError(refusal)

    def dev_key_dir(self) -> Path:
        """Development keys live beside the SQLite database (or in the data dir otherwise)."""
        url = self.resolved_database_url()
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            return Path(url[len("sqlite:///") :]).expanduser().parent
        return self.data_dir


def parse_rate(text: str, what: str = "rate") -> tuple[float, float] | None:
    """``burst/per-second`` as two positive numbers (e.g. ``50/5``), or ``None`` for ``off``."""
    if text.strip().lower() == "off":
        return None
    burst, sep, rate = text.partition("/")
    try:
        values = (float(burst), float(rate))
    except ValueError:
        values = (0.0, 0.0)
    if not sep or values[0] < 1 or values[1] <= 0:
        raise ConfigError(f"{what} must be burst/rate with burst >= 1 and rate > 0 (e.g. 50/5), or off")
    return values


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"listen address {listen!r} must be host:port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_pepper(settings: Settings, *, create: bool) -> tuple[Pepper, str]:
    """The pepper and a sentence saying where it came from (no key material).

    With nothing configured, a development pepper is read from (or, with
    ``create``, written to) a 0600 file beside the database, where
    :meth:`Settings.development_keys_allowed` allows it; otherwise that is refused,
    naming the variables to set.
    """
    try:
        if settings.pepper:
            return Pepper(Keyring.parse(settings.pepper, what="pepper")), "pepper from WOES_AUTH_PEPPER"
        if settings.pepper_file:
            text = read_secret_file(Path(settings.pepper_file), "pepper")
            return Pepper(Keyring.parse(text, what="pepper")), f"pepper from file {settings.pepper_file}"
    except OSError as exc:
        raise ConfigError(f"cannot read the pepper file: {exc.strerror}") from None
    except SecretFileModeError as exc:
        raise ConfigError(str(exc)) from None
    except KeyringError as exc:
        raise ConfigError(f"the configured pepper is invalid: {exc}") from None
    settings.require_keys(kek=False)
    path = settings.dev_key_dir() / DEV_PEPPER_FILE
    try:
        note = ensure_dev_key_file(path, "pepper", "WOES_AUTH_PEPPER_FILE", create=create)
    except DevKeyFileError as exc:
        raise ConfigError(f"{exc}{'' if create else '; run woes-auth serve once'}") from None
    try:
        return Pepper(Keyring.parse(path.read_text(), what="pepper")), note
    except KeyringError as exc:
        raise ConfigError(f"the development pepper file {path} is invalid: {exc}") from None


def log_key_source(note: str, logger: logging.Logger = log) -> None:
    """Log where a key came from: a development key at WARNING, a configured one at INFO.

    A note names a variable or a file, never key material."""
    logger.log(logging.WARNING if isinstance(note, DevelopmentKeyNote) else logging.INFO, "%s", note)
