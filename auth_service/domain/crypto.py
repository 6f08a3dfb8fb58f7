"""Peppered digests of generated secrets.

The store keeps ``HMAC-SHA256(pepper, credential)`` only, never the credential.
A pepper is a 32-byte key from the secret manager with a short id; the id is
stored beside each digest, so a new pepper can become primary (used for new
keys) while keys digested under older peppers keep verifying.

A digest of a 256-bit random secret cannot be reversed or brute-forced (OWASP
ASVS 6.5.2 accepts a standard hash for secrets of at least 112 bits), and the
pepper, which never enters the database, makes a stolen dump useless for
offline guessing of any kind. Argon2id would add nothing here but cost: see
the README's security section.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

PEPPER_BYTES = 32
_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class KeyringError(ValueError):
    """A key list from configuration is malformed. The message never holds key material."""


@dataclass(frozen=True)
class Keyring:
    """Named 32-byte keys, the first one primary."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("no key configured")
        ids = [k for k, _ in self.keys]
        if len(set(ids)) != len(ids):
            raise KeyringError("a key id appears twice")

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    def get(self, key_id: str) -> bytes | None:
        for kid, material in self.keys:
            if kid == key_id:
                return material
        return None

    @classmethod
    def parse(cls, text: str, *, what: str = "key") -> Keyring:
        """Parse ``id:base64,id:base64`` (the first entry primary)."""
        entries = []
        for n, raw in enumerate(p.strip() for p in text.replace("\n", ",").split(",")):
            if not raw:
                continue
            kid, sep, b64 = raw.partition(":")
            if not sep or not _ID_RE.fullmatch(kid):
                raise KeyringError(f"{what} entry {n + 1}: expected id:base64 with an id of [A-Za-z0-9_.-]")
            try:
                material = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"{what} entry {n + 1} ({kid}): not valid base64") from None
            if len(material) != PEPPER_BYTES:
                raise KeyringError(f"{what} entry {n + 1} ({kid}): must decode to {PEPPER_BYTES} bytes")
            entries.append((kid, material))
        return cls(tuple(entries))

    def __repr__(self) -> str:  # never show key material
        return f"Keyring(ids={[k for k, _ in self.keys]})"


class SecretFileModeError(KeyringError):
    """A file of key material that users other than its owner (and its group) may read or change."""


def read_secret_file(path: str | os.PathLike[str], what: str) -> str:
    """The text of a file of key material, refused if other users may read or change it.

    Allowed: the owner alone (0600, 0400) or the owner and its group reading (0640, 0440), as a
    secret manager's file mount with a group is set up; refused: any permission for others, or
    write permission for the group (``chmod 600`` fixes either). The same rule as PostgreSQL's for
    its server key.
    """
    import stat

    with open(path, encoding="utf-8") as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)  # the mode of the file read, not of a later one
        if mode & 0o027:
            raise SecretFileModeError(
                f"the {what} file {path} is open to other users (mode {mode:o}); "
                "allow its owner alone (chmod 600) or its owner and group to read it (chmod 640)"
            )
        return fh.read()


class DevelopmentKeyNote(str):
    """A sentence for the log saying that a development key file is in use (never key material)."""


class DevKeyFileError(Exception):
    """A development key file is missing (and may not be created) or readable by others."""


def ensure_dev_key_file(path: Path, what: str, env_name: str, *, create: bool) -> DevelopmentKeyNote:
    """Make sure the development key file ``path`` exists with mode 0600 (creating a random
    ``dev1`` entry when ``create``); returns a sentence for the log, never key material."""
    import stat

    if not path.exists():
        if not create:
            raise DevKeyFileError(f"no {what} configured and no development {what} at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_keyring_entry("dev1") + "\n")
        return DevelopmentKeyNote(f"created a DEVELOPMENT {what} in {path} (0600); configure {env_name} in production")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise DevKeyFileError(f"the development {what} {path} is readable by others (mode {mode:o}); chmod 600 it")
    return DevelopmentKeyNote(f"using the DEVELOPMENT {what} in {path}; configure {env_name} in production")


def new_keyring_entry(key_id: str) -> str:
    import secrets

    return f"{key_id}:{base64.b64encode(secrets.token_bytes(PEPPER_BYTES)).decode()}"


class KeyedSha256:
    """HMAC-SHA256 under one key, with the key's inner and outer pad states hashed once (RFC 2104).

    ``hmac.digest`` re-derives both pads on every call; here each call copies the two
    prepared SHA-256 states and hashes only the message and the inner digest: the same
    output (checked against ``hmac.digest`` in the tests) at about a quarter of the cost,
    which matters on the path every Woes request takes. The prepared states are never
    updated in place, only copied, so one instance serves every thread.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Pepper:
    """Computes and checks peppered digests."""

    def __init__(self, keyring: Keyring):
        self._keyring = keyring
        self.primary_id = keyring.primary_id
        self._macs = {kid: KeyedSha256(material) for kid, material in keyring.keys}
        self._primary = self._macs[self.primary_id]
        self.primary_mac = self._primary  # digest(bytes) under the primary pepper, for the hot path

    def digest(self, token: str) -> bytes:
        """Digest under the primary pepper (used for new keys and as the cache key)."""
        return self._primary.digest(token.encode())

    def digest_with(self, pepper_id: str, token: str) -> bytes | None:
        """Digest under a named pepper; ``None`` if that pepper is not configured."""
        mac = self._macs.get(pepper_id)
        if mac is None:
            return None
        return mac.digest(token.encode())

    def verify(self, pepper_id: str, token: str, stored: bytes, primary_digest: bytes | None = None) -> bool:
        """Constant-time check of ``token`` against a stored digest."""
        if pepper_id == self.primary_id and primary_digest is not None:
            return hmac.compare_digest(primary_digest, stored)
        candidate = self.digest_with(pepper_id, token)
        if candidate is None:
            return False
        return hmac.compare_digest(candidate, stored)

    def __repr__(self) -> str:
        return f"Pepper(primary={self.primary_id})"
