"""Writes the hostile-input corpus kept in tests/corpus/ (run again after changing the list).

    python -m fuzz.make_corpus tests/corpus

Each file is ``<target>--<what>``: one selector byte, then the payload (see targets.py).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.domain import tokens
from fuzz import targets


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# A token of the right shape and checksum built from a fixed (non-secret) body, so the corpus is reproducible.
_BODY = "woes_sk_AAAAAAAAAAAA_" + "B" * tokens.SECRET_LEN
SHAPED = _BODY + tokens.checksum(_BODY)

TOKENS = {
    "empty": "",
    "prefix-only": "woes_sk_",
    "overlong": "woes_sk_" + "A" * 5000,
    "one-over-limit": "x" * (tokens.MAX_CREDENTIAL_LEN + 1),
    "bad-checksum": SHAPED[:-1] + ("A" if SHAPED[-1] != "A" else "B"),
    "valid-shape": SHAPED,
    "unknown-kind": "woes_zz_" + SHAPED[8:],
    "nul-bytes": SHAPED[:30] + "\x00" + SHAPED[31:],
    "unicode-digits": SHAPED[:25] + "\u0663" + SHAPED[26:],
    "fullwidth": "\uff57oes_sk_" + SHAPED[8:],
    "trailing-newline": SHAPED + "\n",
    "bearer-prefixed": "Bearer " + SHAPED,
    "sql-injection": "woes_sk_' OR 1=1 --",
    "rtl-override": "woes_sk_\u202eAAAAAAAAAAA_" + "B" * 49,
    "lone-surrogate-bytes": "woes_sk_\udcff",
}

ORIGINS = {
    "userinfo": "https://user:pass@shop.example",
    "port-overflow": "https://shop.example:99999",
    "negative-port": "https://shop.example:-1",
    "ipv6-unclosed": "http://[::1",
    "ipv6": "http://[::1]:8080",
    "idn": "https://b\u00fccher.example",
    "path": "https://shop.example/path",
    "javascript": "javascript:alert(1)",
    "null": "null",
    "control-chars": "https://shop.example\r\nSet-Cookie: a=b",
    "zero-width": "https://shop\u200b.example",
    "very-long": "https://" + "a" * 300 + ".example",
    "backslash": "https:\\\\shop.example",
    "upper-default-port": "HTTPS://SHOP.EXAMPLE:443",
    "percent": "https://shop%2eexample",
}

PAGE_TOKENS = {
    "not-base64": "ws\n%%%%",
    "not-json": "ws\n" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "json-list": "ws\n" + _b64([1, 2, 3]),
    "wrong-workspace": "ws\n" + _b64({"w": "other", "t": "2026-01-01T00:00:00+00:00", "k": "AAAAAAAAAAAA"}),
    "naive-time": "ws\n" + _b64({"w": "ws", "t": "2026-01-01T00:00:00", "k": "AAAAAAAAAAAA"}),
    "bad-key-id": "ws\n" + _b64({"w": "ws", "t": "2026-01-01T00:00:00+00:00", "k": "../../etc"}),
    "time-number": "ws\n" + _b64({"w": "ws", "t": 12, "k": "AAAAAAAAAAAA"}),
    "huge": "ws\n" + "A" * 4000,
    "year-overflow": "ws\n" + _b64({"w": "ws", "t": "99999-01-01T00:00:00+00:00", "k": "AAAAAAAAAAAA"}),
    "valid": "ws\n" + _b64({"w": "ws", "t": "2026-01-01T00:00:00+00:00", "k": "AAAAAAAAAAAA"}),
}

REDACT = {
    "token-in-json": json.dumps({"authorization": "Bearer " + SHAPED}),
    "nested-prefix": "woes_sk_woes_sk_" + SHAPED[8:],
    "two-tokens": SHAPED + SHAPED,
    "pepper-assignment": "pepper=dGVzdA== secret: 'abc' password=\"x\"",
}

# Raw protobuf bytes, sent to every request decoder.
WIRE = {
    "empty": b"",
    "invalid-utf8-string": _field(1, 2) + _varint(2) + b"\xc3\x28",
    "truncated-length": _field(1, 2) + _varint(1000) + b"abc",
    "length-overflow": _field(1, 2) + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    "wrong-wire-type": _field(1, 0) + _varint(5),
    "field-zero": b"\x00\x01",
    "unknown-fields": _field(99, 2) + _varint(3) + b"abc" + _field(100, 5) + b"\x00\x00\x00\x00",
    "group-nesting": _field(50, 3) * 200 + _field(50, 4) * 200,
    "unterminated-group": _field(50, 3) * 5,
    "huge-varint": _field(2, 0) + b"\xff" * 11,
    "negative-enum": _field(2, 0) + _varint((1 << 64) - 5),
    "nested-timestamp-garbage": _field(5, 2) + _varint(4) + b"\x08\xff\xff\xff",
    "duration-extremes": pb.RotateRequest(key_id="AAAAAAAAAAAA").SerializeToString()
    + _field(2, 2)
    + _varint(11)
    + _field(1, 0)
    + b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
    "timestamp-max-seconds": pb.IssueKeyRequest(
        workspace_id="ws", kind=1, scopes=["conversations:read"]
    ).SerializeToString()
    + _field(5, 2)
    + _varint(10)
    + _field(1, 0)
    + b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
    "repeated-flood": (_field(4, 2) + _varint(18) + b"conversations:read") * 500,
}


def build() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for group, target, encode in (
        (TOKENS, "token", lambda s: s.encode("utf-8", "surrogatepass")),
        (ORIGINS, "origin", str.encode),
        (PAGE_TOKENS, "page_token", str.encode),
        (REDACT, "redact", str.encode),
    ):
        for what, value in group.items():
            files[f"{target}--{what}"] = bytes([targets.selector(target)]) + encode(value)
    for what, payload in WIRE.items():
        for cls in targets.REQUEST_TYPES:
            name = f"decode_{cls.__name__}"
            files[f"{name}--{what}"] = bytes([targets.selector(name)]) + payload
    return files


def main(out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in build().items():
        (folder / name).write_bytes(data)
    print(f"wrote {len(build())} corpus files to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/corpus")
