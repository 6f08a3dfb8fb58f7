"""The credential string format.

    woes_<kind>_<key id: 12 base62>_<secret: 43 base62><checksum: 6 base62>

* ``<kind>`` is ``sk`` (server API credential), ``pk`` (widget public key),
  ``ak`` (admin credential), ``ik`` (internal credential) or ``cs``
  (conversation history secret).
* The key id is public: it finds the stored record in one indexed lookup and
  appears in display hints and logs. For a conversation history secret it is
  the id of the workspace's history signing key.
* The secret is 43 characters drawn by :mod:`secrets` from 62 symbols:
  43 x log2(62) = 256.03 bits.
* The checksum is CRC32 of everything before it, in base62, zero padded. It is
  no authentication (anyone can compute it); it lets the service refuse typos
  and garbage before any storage access, and lets secret scanners match the
  format offline.

:data:`TOKEN_REGEX` is the published pattern.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass
from enum import Enum

from auth_service.domain.errors import CredentialMalformed

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LEN = 12
SECRET_LEN = 43
CHECKSUM_LEN = 6
MAX_CREDENTIAL_LEN = 256


class KeyKind(Enum):
    """Credential families. The value is the stored name."""

    SERVER = "server"
    WIDGET = "widget"
    ADMIN = "admin"
    INTERNAL = "internal"
    CONVERSATION = "conversation"


PREFIXES: dict[KeyKind, str] = {
    KeyKind.SERVER: "woes_sk_",
    KeyKind.WIDGET: "woes_pk_",
    KeyKind.ADMIN: "woes_ak_",
    KeyKind.INTERNAL: "woes_ik_",
    KeyKind.CONVERSATION: "woes_cs_",
}
SERVICE_KINDS: frozenset[KeyKind] = frozenset({KeyKind.ADMIN, KeyKind.INTERNAL})
"""The service's own credentials (no workspace): created, listed with their permissions and rotated
only by the ``woes-auth`` commands with database access, never through the API."""

_KIND_BY_CODE = {prefix[5:7]: kind for kind, prefix in PREFIXES.items()}

TOKEN_PATTERN = r"woes_(sk|pk|ak|ik|cs)_([0-9A-Za-z]{%d})_([0-9A-Za-z]{%d})([0-9A-Za-z]{%d})" % (
    KEY_ID_LEN,
    SECRET_LEN,
    CHECKSUM_LEN,
)
TOKEN_REGEX = re.compile(TOKEN_PATTERN)
"""Matches a whole woes credential; group 1 is the kind code, 2 the key id."""

TOKEN_LEN = len("woes_xx_") + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN


def _random(n: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def _base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def checksum(body: str) -> str:
    """Base62 CRC32 of ``body`` (the token without its checksum)."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LEN)


# Base62 value of every two-symbol string: a checksum is checked by reading its six symbols as a
# number (three lookups) rather than by writing the body's CRC32 out in base62.
_PAIR_VALUE = {a + b: i * 62 + j for i, a in enumerate(ALPHABET) for j, b in enumerate(ALPHABET)}


def _checksum_matches(token: str) -> bool:
    """Whether the last six symbols of a token of the credential shape are its body's checksum."""
    cs = token[-CHECKSUM_LEN:]
    value = (_PAIR_VALUE[cs[0:2]] * 3844 + _PAIR_VALUE[cs[2:4]]) * 3844 + _PAIR_VALUE[cs[4:6]]
    return zlib.crc32(token[:-CHECKSUM_LEN].encode("ascii")) == value


def new_key_id() -> str:
    return _random(KEY_ID_LEN)


def is_key_id(value: str) -> bool:
    """Exactly ``KEY_ID_LEN`` characters of [0-9A-Za-z]: for ASCII text ``isalnum`` is that set (a
    regular expression costs about twice as much, and the call gate asks for every refused credential)."""
    return len(value) == KEY_ID_LEN and value.isascii() and value.isalnum()


def key_id_of(token: str) -> str:
    """The key id a credential-shaped string names (``woes_xx_<key id>_...``), or ``""``; nothing
    else of it is validated. What the call gate charges a refusal to, and the grant memo records
    of a refusal (:class:`auth_service.cache.memo.GrantMemo`)."""
    if len(token) > 20 and token.startswith("woes_") and token[7] == "_" and token[20] == "_":
        key_id = token[8:20]  # KEY_ID_LEN characters: is_key_id() without its call (a refusal's path)
        if key_id.isascii() and key_id.isalnum():
            return key_id
    return ""


@dataclass(frozen=True, slots=True)
class Credential:
    """A parsed, checksum-valid credential string. ``token`` is the secret: never log it."""

    kind: KeyKind
    key_id: str
    token: str

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"Credential(kind={self.kind.value}, hint={hint(self.token)})"

    __str__ = __repr__


def mint(kind: KeyKind, key_id: str | None = None) -> Credential:
    """A new random credential of ``kind``."""
    key_id = key_id or new_key_id()
    body = f"{PREFIXES[kind]}{key_id}_{_random(SECRET_LEN)}"
    return Credential(kind, key_id, body + checksum(body))


def assemble(kind: KeyKind, key_id: str, secret_part: str) -> Credential:
    """A credential of ``kind`` whose secret part is given (a MAC, for conversation secrets)."""
    if not is_key_id(key_id) or len(secret_part) != SECRET_LEN or any(ch not in ALPHABET for ch in secret_part):
        raise ValueError("key id or secret part of the wrong shape")
    body = f"{PREFIXES[kind]}{key_id}_{secret_part}"
    return Credential(kind, key_id, body + checksum(body))


def encode_secret(value: bytes) -> str:
    """``SECRET_LEN`` base62 characters holding a 32-byte value (62**43 > 2**256)."""
    if len(value) != 32:
        raise ValueError("expected 32 bytes")
    return _base62(int.from_bytes(value, "big"), SECRET_LEN)


def problem(token: str) -> str | None:
    """Why ``token`` is not a well-formed credential (the message :func:`parse` raises with), or
    ``None`` when it is one. No I/O; the message never repeats the input."""
    if not token:
        return "the credential is empty"
    if len(token) != TOKEN_LEN or TOKEN_REGEX.fullmatch(token) is None:
        return "the credential does not have the woes credential format"
    if not _checksum_matches(token):
        return "the credential's checksum does not match"
    return None


def parse(token: str) -> Credential:
    """Check a credential's shape and checksum without any I/O.

    Raises :class:`CredentialMalformed` with a message that never repeats the input.
    """
    why = problem(token)
    if why is not None:
        raise CredentialMalformed(why)
    match = TOKEN_REGEX.fullmatch(token)
    assert match is not None, "problem() accepts only what the pattern matches"
    return Credential(_KIND_BY_CODE[match.group(1)], match.group(2), token)


def hint(token: str) -> str:
    """A display hint safe to show and log: prefix, key id and last four characters."""
    if len(token) == TOKEN_LEN and TOKEN_REGEX.fullmatch(token):
        return f"{token[: 8 + KEY_ID_LEN]}_...{token[-4:]}"
    return "<malformed>"
