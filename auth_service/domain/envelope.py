"""Envelope encryption of stored secrets (API test credentials), DESIGN §3.

Each record gets its own random 256-bit data key (DEK). The secret is
encrypted with AES-256-GCM under the DEK; the DEK is encrypted ("wrapped") with
AES-256-GCM under a key-encryption key (KEK) that never enters the database.
The row stores the KEK's id, the wrapped DEK and the ciphertext, each with its
own random 96-bit nonce (a DEK encrypts exactly one message; a KEK wraps one
DEK per record, far below the 2**32 random-nonce bound of NIST SP 800-38D).

The associated data binds every ciphertext to its row: the data ciphertext to
``(purpose, workspace id, record id)``, the wrapped DEK to the same plus the
KEK id. A ciphertext or wrapped key copied to another row, a tampered byte,
or a KEK id that was edited all fail the GCM tag check, and no plaintext is
returned.

KEKs come from configuration (see :func:`load_kek_ring`): ``WOES_AUTH_KEK`` or
``WOES_AUTH_KEK_FILE`` hold ``id:base64-of-32-bytes`` entries, the first one
primary (new records and re-wraps use it; the others only decrypt); an
operator passphrase may be given instead and is stretched into a KEK with
argon2id; with nothing configured a development KEK file is used beside the
database where configuration allows development keys (the caller decides:
:meth:`auth_service.app.config.Settings.development_keys_allowed`), as for the pepper.

Which key seals new records is agreed by the whole deployment through the
database (:mod:`auth_service.store.kek`), not by each ring's first entry:
callers pass that key id to :meth:`KekRing.seal` and :meth:`KekRing.rewrap`.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auth_service.domain.crypto import (
    DevKeyFileError,
    Keyring,
    KeyringError,
    SecretFileModeError,
    ensure_dev_key_file,
    read_secret_file,
)
from auth_service.domain.errors import KeyEncryptionKeyMissing, TestCredentialUnreadable

log = logging.getLogger(__name__)

SaltFor = Callable[[str], tuple[bytes, dict]]
"""``salt_for(kek_id)``: the stored (or newly stored) salt and argon2id parameters of a passphrase key."""

NONCE_BYTES = 12
KEY_BYTES = 32
DEV_KEK_FILE = "dev-kek"
PASSPHRASE_KEK_ID = "passphrase1"

# argon2id for a key derived once per process start: RFC 9106's second
# recommended option (64 MiB, 3 passes), single lane.
PASSPHRASE_PARAMS = {"memory_kib": 65536, "time_cost": 3, "parallelism": 1}


@dataclass(frozen=True)
class Sealed:
    """What a row stores for one encrypted secret. No field is secret on its own."""

    kek_id: str
    wrapped_key: bytes  # nonce || AES-GCM(KEK, DEK)
    ciphertext: bytes  # nonce || AES-GCM(DEK, plaintext)

    def __repr__(self) -> str:
        return f"Sealed(kek_id={self.kek_id!r}, {len(self.ciphertext)} bytes)"


def derive_passphrase_key(passphrase: str, salt: bytes, memory_kib: int, time_cost: int, parallelism: int) -> bytes:
    """A 32-byte KEK from an operator passphrase with argon2id."""
    return hash_secret_raw(
        passphrase.encode(),
        salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


class KekRing:
    """The configured key-encryption keys. File-backed rings re-read their file
    when asked for a key id they do not know (after ``woes-auth kek rotate``
    added one), so running servers pick up a new primary without a restart.

    ``primary_id`` is the configured primary (the first entry): the key a deployment
    agrees on when none is agreed yet, and the one ``woes-auth kek rotate`` promotes."""

    def __init__(
        self, loader: Callable[[], Keyring], *, reloadable: bool = False, source: str = "", path: Path | None = None
    ):
        self._loader = loader
        self._reloadable = reloadable
        self.path = path  # the KEK file, when the keys come from one (``kek rotate`` adds keys there)
        self._lock = threading.Lock()
        self._ring = loader()
        self.source = source

    @property
    def primary_id(self) -> str:
        return self._ring.primary_id

    @property
    def ids(self) -> list[str]:
        return [k for k, _ in self._ring.keys]

    def _material(self, kek_id: str) -> bytes | None:
        material = self._ring.get(kek_id)
        if material is None and self._reloadable:
            self.reload()
            material = self._ring.get(kek_id)
        return material

    def reload(self) -> None:
        try:
            ring = self._loader()
        except (OSError, KeyringError) as exc:
            log.warning("could not re-read the key-encryption keys: %s", type(exc).__name__)
            return
        with self._lock:
            self._ring = ring

    # -- envelope operations ------------------------------------------------

    def seal(
        self, purpose: str, workspace_id: str, record_id: str, plaintext: bytes, kek_id: str | None = None
    ) -> Sealed:
        """Encrypt under a new data key wrapped by ``kek_id`` (default: the configured primary).

        Raises :class:`KeyEncryptionKeyMissing` when that key is not configured here."""
        kek_id = kek_id or self.primary_id
        kek = self._material(kek_id)
        dek = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = nonce + AESGCM(dek).encrypt(nonce, plaintext, _data_aad(purpose, workspace_id, record_id))
        return Sealed(kek_id, self._wrap(kek_id, kek, purpose, workspace_id, record_id, dek), ciphertext)

    def open(self, purpose: str, workspace_id: str, record_id: str, sealed: Sealed) -> bytes:
        dek = self._unwrap(purpose, workspace_id, record_id, sealed)
        try:
            nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
            return AESGCM(dek).decrypt(nonce, body, _data_aad(purpose, workspace_id, record_id))
        except (InvalidTag, ValueError):
            raise _unreadable(record_id, "the ciphertext") from None

    def rewrap(
        self, purpose: str, workspace_id: str, record_id: str, sealed: Sealed, kek_id: str | None = None
    ) -> Sealed:
        """The same ciphertext with its data key wrapped under ``kek_id`` (default: the configured primary)."""
        dek = self._unwrap(purpose, workspace_id, record_id, sealed)
        # Prove the pair still belongs together before re-wrapping it.
        self.open(purpose, workspace_id, record_id, sealed)
        kek_id = kek_id or self.primary_id
        wrapped = self._wrap(kek_id, self._material(kek_id), purpose, workspace_id, record_id, dek)
        return Sealed(kek_id, wrapped, sealed.ciphertext)

    def _wrap(
        self, kek_id: str, kek: bytes | None, purpose: str, workspace_id: str, record_id: str, dek: bytes
    ) -> bytes:
        if kek is None:
            raise KeyEncryptionKeyMissing(
                f"the primary key-encryption key {kek_id!r} is not configured on this server; "
                "add it to WOES_AUTH_KEK / WOES_AUTH_KEK_FILE",
                metadata={"kek_id": kek_id},
            )
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(kek).encrypt(nonce, dek, _wrap_aad(purpose, kek_id, workspace_id, record_id))

    def _unwrap(self, purpose: str, workspace_id: str, record_id: str, sealed: Sealed) -> bytes:
        if not sealed.kek_id:
            raise _unreadable(record_id, "the record names no key-encryption key")
        kek = self._material(sealed.kek_id)
        if kek is None:
            raise KeyEncryptionKeyMissing(
                f"record {record_id!r} is encrypted under key-encryption key {sealed.kek_id!r}, "
                "which is not configured; add it back to WOES_AUTH_KEK / WOES_AUTH_KEK_FILE",
                metadata={"kek_id": sealed.kek_id, "record_id": record_id},
            )
        try:
            nonce, body = sealed.wrapped_key[:NONCE_BYTES], sealed.wrapped_key[NONCE_BYTES:]
            dek = AESGCM(kek).decrypt(nonce, body, _wrap_aad(purpose, sealed.kek_id, workspace_id, record_id))
        except (InvalidTag, ValueError):
            raise _unreadable(record_id, "the wrapped data key") from None
        if len(dek) != KEY_BYTES:
            raise _unreadable(record_id, "the wrapped data key")
        return dek

    def __repr__(self) -> str:
        return f"KekRing(ids={self.ids}, source={self.source!r})"


def _data_aad(purpose: str, workspace_id: str, record_id: str) -> bytes:
    return f"woes-auth/{purpose}/data/v1\0{workspace_id}\0{record_id}".encode()


def _wrap_aad(purpose: str, kek_id: str, workspace_id: str, record_id: str) -> bytes:
    return f"woes-auth/{purpose}/dek/v1\0{kek_id}\0{workspace_id}\0{record_id}".encode()


def _unreadable(record_id: str, what: str) -> TestCredentialUnreadable:
    return TestCredentialUnreadable(
        f"record {record_id!r} failed its integrity check ({what}): it was altered or copied from another row; "
        "no plaintext is returned",
        metadata={"record_id": record_id},
    )


# -- configuration ------------------------------------------------------------------


class KekConfigError(ValueError):
    """The KEK configuration cannot be used. The message never holds key material."""


def _read_ring_file(path: Path) -> Keyring:
    return Keyring.parse(read_secret_file(path, "key-encryption key"), what="key-encryption key")


def load_kek_ring(
    *,
    kek: str = "",
    kek_file: str = "",
    passphrase: str = "",
    passphrase_salt: SaltFor | None = None,
    dev_dir: Path | None = None,
    create: bool = False,
) -> tuple[KekRing, str]:
    """The KEK ring and a sentence saying where it came from (never key material).

    ``passphrase_salt(kek_id)`` returns the stored (or newly stored) salt and
    argon2id parameters of a passphrase-derived KEK. With nothing configured, the
    development KEK file in ``dev_dir`` is used (made with ``create``); without
    ``dev_dir`` that is refused.
    """
    try:
        if kek:
            ring = Keyring.parse(kek, what="key-encryption key")
            ring = _with_passphrase(ring, passphrase, passphrase_salt)
            return KekRing(lambda: ring, source="env"), "key-encryption keys from WOES_AUTH_KEK"
        if kek_file:
            path = Path(kek_file)
            _read_ring_file(path)  # fail early on a bad file
            pp = _passphrase_entry(passphrase, passphrase_salt)

            def loader() -> Keyring:
                ring = _read_ring_file(path)
                return Keyring(ring.keys + pp) if pp else ring

            return KekRing(
                loader, reloadable=True, source=str(path), path=path
            ), f"key-encryption keys from file {path}"
        if passphrase:
            entry = _passphrase_entry(passphrase, passphrase_salt)
            ring = Keyring(entry)
            return (
                KekRing(lambda: ring, source="passphrase"),
                "key-encryption key derived with argon2id from WOES_AUTH_KEK_PASSPHRASE",
            )
    except OSError as exc:
        raise KekConfigError(f"cannot read the key-encryption key file: {exc.strerror}") from None
    except SecretFileModeError as exc:
        raise KekConfigError(str(exc)) from None
    except KeyringError as exc:
        raise KekConfigError(f"the configured key-encryption keys are invalid: {exc}") from None
    if dev_dir is None:
        raise KekConfigError(
            "no key-encryption key configured: set WOES_AUTH_KEK, WOES_AUTH_KEK_FILE or WOES_AUTH_KEK_PASSPHRASE"
        )
    path = dev_dir / DEV_KEK_FILE
    try:
        note = ensure_dev_key_file(path, "key-encryption key", "WOES_AUTH_KEK_FILE", create=create)
    except DevKeyFileError as exc:
        raise KekConfigError(str(exc)) from None
    try:
        return KekRing(lambda: _read_ring_file(path), reloadable=True, source=str(path), path=path), note
    except KeyringError as exc:
        raise KekConfigError(f"the development key-encryption key file {path} is invalid: {exc}") from None


def _passphrase_entry(passphrase: str, salt_for: SaltFor | None) -> tuple[tuple[str, bytes], ...]:
    if not passphrase:
        return ()
    if salt_for is None:
        raise KekConfigError("a KEK passphrase needs the database to keep its salt")
    salt, params = salt_for(PASSPHRASE_KEK_ID)
    return ((PASSPHRASE_KEK_ID, derive_passphrase_key(passphrase, salt, **params)),)


def _with_passphrase(ring: Keyring, passphrase: str, salt_for: SaltFor | None) -> Keyring:
    extra = _passphrase_entry(passphrase, salt_for)
    return Keyring(ring.keys + extra) if extra else ring


def new_kek_entry(kek_id: str) -> str:
    return f"{kek_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def prepend_to_file(path: Path, entry: str) -> None:
    """Make ``entry`` the first (primary) line of a KEK file, atomically, keeping mode 0600."""
    old = path.read_text()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(entry + "\n" + old)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
