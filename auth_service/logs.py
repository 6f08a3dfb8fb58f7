"""Logging: one JSON object per line, with every credential-shaped string scrubbed.

The redaction runs on the fully formatted record (message, arguments and
exception text alike), so a secret that reaches a log call by accident is
still replaced by its display hint. The hint (prefix, key id, last four
characters) identifies the key without revealing it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from .tokens import KEY_ID_LEN, is_key_id

# Anything that starts like a woes credential, whatever follows (also truncated or mangled ones,
# e.g. with the separator before the secret lost).
_CREDENTIAL_RE = re.compile(r"woes_[a-z]{2}_[0-9A-Za-z_]+")
# Redaction runs on JSON text, where a quote may be escaped (\"): the optional quote may carry a
# backslash, and a value stops at a backslash, so the escaped closing quote stays intact.
_QUOTE = r"(?:\\?['\"])?"
_VALUE = r"[^\s'\"\\,]+"
_BEARER_RE = re.compile(r"(?i)(bearer\s+" + _QUOTE + ")" + _VALUE)
_PEPPERISH_RE = re.compile(r"(?i)(pepper|kek|secret|password)(" + _QUOTE + r"\s*[:=]\s*" + _QUOTE + ")" + _VALUE)


def _hint(match: re.Match) -> str:
    text = match.group(0)
    head = text[: 8 + KEY_ID_LEN]
    if len(text) <= len(head):
        return f"{head}[redacted]"
    if text[len(head)] == "_" and is_key_id(head[8:]):
        return f"{head}_...[redacted]"
    # Mangled: what follows the prefix may be part of the secret, so keep the prefix only.
    return f"{text[:8]}...[redacted]"


def redact(text: str) -> str:
    text = _CREDENTIAL_RE.sub(_hint, text)
    text = _BEARER_RE.sub(r"\1[redacted]", text)
    return _PEPPERISH_RE.sub(r"\1\2[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attr in ("method", "code", "key_id", "duration_ms", "worker"):
            value = getattr(record, attr, None)
            if value is not None:
                out[attr] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, ensure_ascii=False))


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
