"""Field rules shared by every aggregate: workspace and request ids, printable text, web origins."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

WORKSPACE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


MAX_ORIGIN_LEN = 253 + 20


def has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text)


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, or ``None`` if it is not an origin."""
    if not origin or len(origin) > MAX_ORIGIN_LEN or has_control_chars(origin):
        return None
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if not re.fullmatch(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]", host if ":" not in host else f"[{host}]"):
        return None
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")
