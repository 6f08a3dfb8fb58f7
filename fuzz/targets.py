"""The request parsers under fuzzing, and the properties each must keep.

An input is one selector byte followed by the payload. The selector picks the
parser (``TARGETS[data[0] % len(TARGETS)]``). Every target raises
``AssertionError`` when a property breaks and lets nothing else escape, so
both atheris (coverage-guided, ``make fuzz``) and the corpus replay in
``tests/integration/test_corpus.py`` treat any exception as a finding.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import message_factory
from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.api import fastpath
from auth_service.domain import tokens
from auth_service.domain.errors import CredentialMalformed
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.rules import decode_page_token, encode_page_token
from auth_service.domain.validation import normalize_origin
from auth_service.ops import logs

REQUEST_TYPES = tuple(
    message_factory.GetMessageClass(m.input_type) for m in pb.DESCRIPTOR.services_by_name["AuthService"].methods
)


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


def target_token(payload: bytes) -> None:
    """tokens.parse (and the manager's length-checked parse) only ever raise CredentialMalformed."""
    text = _text(payload)
    for parse in (tokens.parse, CredentialManager.parse):
        try:
            cred = parse(text)
        except CredentialMalformed as exc:
            assert len(text) < 16 or text not in exc.message, "an error message repeated its input"
            continue
        assert tokens.TOKEN_REGEX.fullmatch(cred.token)
        assert tokens.checksum(cred.token[: -tokens.CHECKSUM_LEN]) == cred.token[-tokens.CHECKSUM_LEN :]
        assert cred.token not in repr(cred)


def target_origin(payload: bytes) -> None:
    """normalize_origin never raises; what it returns is an origin it keeps as is."""
    origin = normalize_origin(_text(payload))
    if origin is not None:
        assert normalize_origin(origin) == origin, "normalisation is not idempotent"
        assert origin.startswith(("http://", "https://"))


def target_page_token(payload: bytes) -> None:
    """Page tokens decode to None or a (timezone-aware time, key id) pair; never raise."""
    text = _text(payload)
    workspace, _, token = text.partition("\n")
    decoded = decode_page_token(token, workspace)
    if decoded is not None:
        when, key_id = decoded
        assert when.tzinfo is not None and tokens.is_key_id(key_id)


def target_redact(payload: bytes) -> None:
    """Redaction never raises and never leaves a whole credential behind."""
    out = logs.redact(_text(payload))
    assert tokens.TOKEN_REGEX.search(out) is None


def _deserializer_target(message_cls) -> Callable[[bytes], None]:
    deserialize = fastpath.safe_deserializer(message_cls)

    def target(payload: bytes) -> None:
        message = deserialize(payload)
        assert message is fastpath.UNDECODABLE or isinstance(message, message_cls)

    target.__name__ = f"target_decode_{message_cls.__name__}"
    return target


TARGETS: tuple[Callable[[bytes], None], ...] = (
    target_token,
    target_origin,
    target_page_token,
    target_redact,
    *(_deserializer_target(cls) for cls in REQUEST_TYPES),
)
TARGET_NAMES = tuple(t.__name__.removeprefix("target_") for t in TARGETS)


def one_input(data: bytes) -> None:
    if not data:
        return
    TARGETS[data[0] % len(TARGETS)](data[1:])


def selector(name: str) -> int:
    return TARGET_NAMES.index(name)


__all__ = ["one_input", "selector", "TARGETS", "TARGET_NAMES", "REQUEST_TYPES", "encode_page_token"]
