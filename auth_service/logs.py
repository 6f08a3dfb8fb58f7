"""Logging: one JSON object per line, with every credential-shaped string scrubbed.

The redaction runs on the fully formatted record (message, arguments and
exception text alike), so a secret that reaches a log call by accident is
still replaced by its display hint. The hint (prefix, key id, last four
characters) identifies the key without revealing it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
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
        for attr in ("request_id", "method", "code", "reason", "key_id", "caller", "peer", "duration_ms", "worker"):
            value = getattr(record, attr, None)
            if value is not None:
                out[attr] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, ensure_ascii=False))


_NATIVE_LEVELS = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "CRITICAL", "D": "DEBUG"}
_NATIVE_PREFIX_RE = re.compile(r"([IWEFD])\d{4} ")
_MAX_NATIVE_LINE = 16 * 1024


class NativeStderrRedactor:
    """Sends file descriptor 2 through a pipe so that nothing reaches it unredacted.

    gRPC's C core (``GRPC_VERBOSITY``/``GRPC_TRACE``: HTTP/2 frames and metadata,
    including ``authorization`` values), the interpreter's last-resort error
    printing and anything else writing to fd 2 bypass Python logging. Each of
    their lines is read back by a thread, redacted and written as one JSON
    record (logger ``native``) to the original stderr, which is also where
    :func:`setup` points the regular log handler.
    """

    def __init__(self) -> None:
        self.output = None
        self._read_fd = -1
        self._saved_fd = -1
        self._thread: threading.Thread | None = None

    def start(self):
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read_fd = read_fd
        self.output = os.fdopen(self._saved_fd, "w", buffering=1, encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._pump, name="woes-auth-stderr-redactor", daemon=True)
        self._thread.start()
        return self.output

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text.strip():
            return
        match = _NATIVE_PREFIX_RE.match(text)
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "level": _NATIVE_LEVELS[match.group(1)] if match else "INFO",
            "logger": "native",
            "message": text,
        }
        try:
            self.output.write(redact(json.dumps(record, ensure_ascii=False)) + "\n")
        except (OSError, ValueError):
            pass

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line)
            while len(pending) > _MAX_NATIVE_LINE:
                # A line this long is cut into pieces at a point where no credential can straddle it unseen:
                # the cut is moved back before any "woes_" that starts within the last 128 bytes.
                cut = _MAX_NATIVE_LINE
                tail = pending.rfind(b"woes_", cut - 128, cut)
                if tail > 0:
                    cut = tail
                self._emit(pending[:cut])
                pending = pending[cut:]
        if pending:
            self._emit(pending)

    def stop(self) -> None:
        """Restore fd 2 and drain what is left."""
        if self._thread is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes the pipe's last write end: the pump reads EOF
        self._thread.join(timeout=5)
        self._thread = None
        os.close(self._read_fd)


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
