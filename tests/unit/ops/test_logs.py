"""Log redaction and the JSON line format."""

from __future__ import annotations

import io
import json
import logging

import pytest

from auth_service.domain import tokens
from auth_service.domain.tokens import KeyKind
from auth_service.ops import logs
from auth_service.ops.logs import JsonFormatter, redact
from tests.conftest import new_pepper_text


def secret_part(token: str) -> str:
    return token[8 + tokens.KEY_ID_LEN + 1 :]


@pytest.mark.parametrize("kind", list(KeyKind))
def test_whole_credential_is_replaced_by_its_hint(kind):
    token = tokens.mint(kind).token
    out = redact(f"authenticating {token} now")
    assert token not in out
    assert secret_part(token)[:6] not in out
    assert out.startswith("authenticating " + token[:20])  # prefix and key id stay, to identify the key
    assert out.endswith(" now")
    assert "[redacted]" in out


@pytest.mark.parametrize("cut", [9, 15, 20, 21, 22, 30, 50, 60])
def test_truncated_credential_is_redacted(cut):
    token = tokens.mint(KeyKind.SERVER).token
    fragment = token[:cut]
    out = redact(f"got '{fragment}'")
    tail = fragment[20:]
    if len(tail) >= 4:
        assert tail not in out
    assert "[redacted]" in out


def test_mangled_credential_without_separator_is_redacted_whole():
    token = tokens.mint(KeyKind.SERVER).token
    mangled = token[:20] + token[21:]  # the underscore before the secret was lost
    out = redact(f"bad credential {mangled} refused")
    assert secret_part(token)[:8] not in out
    assert out.endswith(" refused")


def test_several_credentials_in_one_line():
    a, b = tokens.mint(KeyKind.SERVER).token, tokens.mint(KeyKind.WIDGET).token
    out = redact(f"{a},{b};{a}")
    assert a not in out and b not in out
    assert out.count("[redacted]") == 3


def test_credential_inside_json_and_repr():
    token = tokens.mint(KeyKind.SERVER).token
    for text in (
        json.dumps({"credential": token, "n": 1}),
        repr({"credential": token}),
        repr(token.encode()),
        f"AuthenticateRequest(credential={token!r})",
    ):
        out = redact(text)
        assert token not in out
        assert secret_part(token)[:6] not in out


def test_credential_inside_exception_text():
    token = tokens.mint(KeyKind.ADMIN).token
    logger = logging.getLogger("test.logs.exc")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError(f"cannot use {token}")
        except ValueError:
            logger.exception("failed for %s", token)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = stream.getvalue()
    assert token not in line
    assert secret_part(token)[:6] not in line
    record = json.loads(line)
    assert "ValueError" in record["exception"]
    assert "[redacted]" in record["exception"] and "[redacted]" in record["message"]


@pytest.mark.parametrize(
    "text,leaked",
    [
        ("authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("AUTHORIZATION: bearer s3cr3t-value", "s3cr3t-value"),
        ("metadata=(('authorization', 'Bearer tok3n'),)", "tok3n"),
        ('{"authorization": "Bearer tok3n"}', "tok3n"),
    ],
)
def test_bearer_values(text, leaked):
    out = redact(text)
    assert leaked not in out
    assert "[redacted]" in out


def test_pepper_and_similar_settings():
    pepper = new_pepper_text("p1")
    material = pepper.split(":", 1)[1]
    for text in (
        f"pepper={pepper}",
        f"WOES_AUTH_PEPPER={pepper}",
        f"pepper: {pepper}",
        f"{{'pepper': '{pepper}'}}",
        json.dumps({"pepper": pepper}),
        f"kek={material} secret={material} password: {material}",
    ):
        out = redact(text)
        assert material not in out, text
        assert material[:8] not in out, text


def test_pepper_in_double_quotes_inside_a_json_log_line():
    """The formatter redacts after JSON encoding: escaped quotes must not let the value through."""
    material = new_pepper_text("p1").split(":", 1)[1]
    line = JsonFormatter().format(
        logging.LogRecord("x", logging.INFO, __file__, 1, 'config pepper="%s" loaded', (material,), None)
    )
    assert material not in line
    assert material[:8] not in line
    assert json.loads(line)["message"].startswith("config pepper=")


def test_bearer_in_double_quotes_inside_a_json_log_line():
    line = JsonFormatter().format(
        logging.LogRecord("x", logging.INFO, __file__, 1, 'header authorization="Bearer %s"', ("tok3n-xyz",), None)
    )
    assert "tok3n-xyz" not in line
    json.loads(line)


def test_text_without_secrets_is_unchanged():
    for text in (
        "issued key AbCdEfGhIjKl for workspace ws-1",
        "woes is fine",
        'plain "quotes" and \\backslashes\\',
        "",
    ):
        assert redact(text) == text


def test_json_formatter_writes_one_object_per_line():
    formatter = JsonFormatter()
    try:
        raise RuntimeError("line one\nline two")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("auth_service.rpc", logging.WARNING, __file__, 7, "multi\nline %s", ("é",), exc_info)
    record.method = "Authenticate"
    record.code = "CREDENTIAL_UNKNOWN"
    record.key_id = "AAAAAAAAAAAA"
    record.duration_ms = 1.5
    line = formatter.format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "WARNING"
    assert obj["logger"] == "auth_service.rpc"
    assert obj["message"] == "multi\nline é"
    assert obj["method"] == "Authenticate"
    assert obj["code"] == "CREDENTIAL_UNKNOWN"
    assert obj["key_id"] == "AAAAAAAAAAAA"
    assert obj["duration_ms"] == 1.5
    assert "line two" in obj["exception"]
    assert obj["time"].endswith("Z") and "T" in obj["time"]


def test_setup_installs_one_json_handler():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.setup("warning", stream)
        logs.setup("info", stream)  # idempotent: still one handler
        assert len(root.handlers) == 1
        token = tokens.mint(KeyKind.SERVER).token
        logging.getLogger("auth_service.test").info("hello %s", token)
        logging.getLogger("auth_service.test").debug("hidden")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["message"].startswith("hello woes_sk_")
        assert token not in lines[0]
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)


def test_mangled_credential_with_a_lost_key_id_keeps_only_the_prefix():
    token = tokens.mint(KeyKind.SERVER).token
    mangled = "woes_sk__" + secret_part(token)
    out = redact(mangled)
    assert out == "woes_sk_...[redacted]"
