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
import subprocess
import sys
import time

from auth_service.domain.tokens import KEY_ID_LEN, is_key_id

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
_PACKAGE_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # where auth_service is importable from


class NativeStderrRedactor:
    """Sends file descriptor 2 through a pipe so that nothing reaches it unredacted.

    gRPC's C core (``GRPC_VERBOSITY``/``GRPC_TRACE``: HTTP/2 frames and metadata,
    including ``authorization`` values), the interpreter's last-resort error
    printing and anything else writing to fd 2 bypass Python logging. Each of
    their lines is read back, redacted and written as one JSON record (logger
    ``native``) to the original stderr, which is also where :func:`setup` points
    the regular log handler.

    The reader is a small child process (``python -m auth_service.ops.logs``), not a
    thread: a thread would need this process's GIL to drain the pipe, while a
    gRPC core thread blocked on a full pipe can hold a lock that the GIL's holder
    is waiting for. With verbose tracing that deadlocked the server; a separate
    process always drains. It ignores SIGINT and SIGTERM and exits when every
    writer (this process and its forked workers) has closed the pipe.
    """

    def __init__(self) -> None:
        self.output = None
        self._saved_fd = -1
        self._proc: subprocess.Popen | None = None

    def start(self):
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "auth_service.ops.logs"],
            stdin=subprocess.PIPE,
            stdout=self._saved_fd,
            stderr=self._saved_fd,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")))),
            },
        )
        os.dup2(self._proc.stdin.fileno(), 2)
        self._proc.stdin.close()  # fd 2 is now this process's only write end of the pipe
        self.output = os.fdopen(self._saved_fd, "w", buffering=1, encoding="utf-8", errors="replace")
        return self.output

    def stop(self) -> None:
        """Restore fd 2 and let the reader drain what is left."""
        if self._proc is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes this process's write end: the reader sees EOF once workers are gone
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


def _native_record(raw: bytes) -> str | None:
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if not text.strip():
        return None
    match = _NATIVE_PREFIX_RE.match(text)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "level": _NATIVE_LEVELS[match.group(1)] if match else "INFO",
        "logger": "native",
        "message": text,
    }
    return redact(json.dumps(record, ensure_ascii=False))


def pump_native(read_fd: int, output) -> None:
    """Read lines from ``read_fd`` until EOF and write each, redacted, as one JSON record to ``output``."""

    def emit(raw: bytes) -> None:
        line = _native_record(raw)
        if line is not None:
            try:
                output.write(line + "\n")
            except (OSError, ValueError):
                pass

    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            emit(line)
        while len(pending) > _MAX_NATIVE_LINE:
            # A line this long is cut into pieces at a point where no credential can straddle it unseen:
            # the cut is moved back before any "woes_" that starts within the last 128 bytes.
            cut = _MAX_NATIVE_LINE
            tail = pending.rfind(b"woes_", cut - 128, cut)
            if tail > 0:
                cut = tail
            emit(pending[:cut])
            pending = pending[cut:]
    if pending:
        emit(pending)
    try:
        output.flush()
    except (OSError, ValueError):
        pass


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


if __name__ == "__main__":  # the reader process of NativeStderrRedactor
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pump_native(0, os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace"))
