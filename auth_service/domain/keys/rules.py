"""The limits of key requests and their validation: what an ``IssueKey`` may ask for, page tokens.

Pure functions over plain values; they raise :class:`auth_service.domain.errors.InvalidArgument`
(through :class:`~auth_service.domain.errors.Violations`) and touch no storage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from auth_service.domain import scopes as scope_registry
from auth_service.domain import tokens
from auth_service.domain.errors import Violations
from auth_service.domain.keys.records import KeyRecord
from auth_service.domain.tokens import KeyKind
from auth_service.domain.validation import REQUEST_ID_RE, WORKSPACE_ID_RE, has_control_chars, normalize_origin

MAX_DISPLAY_NAME = 100


MAX_ORIGINS = 32


MAX_REASON = 200


MAX_CALLER = 64


MAX_REQUIRED_SCOPES = 32


DEFAULT_GRACE = timedelta(hours=24)


MAX_GRACE = timedelta(days=7)


DEFAULT_PAGE_SIZE = 100


MAX_PAGE_SIZE = 1000


ISSUABLE_KINDS = (KeyKind.SERVER, KeyKind.WIDGET)


@dataclass(frozen=True)
class IssueSpec:
    """What an admin asked for in ``IssueKey`` (``kind`` is ``None`` when unspecified)."""

    workspace_id: str
    kind: KeyKind | None
    display_name: str = ""
    scopes: tuple[str, ...] = ()
    expire_time: datetime | None = None
    allowed_origins: tuple[str, ...] = ()
    request_id: str = ""


@dataclass(frozen=True)
class Issued:
    key: KeyRecord
    secret: str  # empty when replayed
    replayed: bool = False


@dataclass(frozen=True)
class Page:
    keys: list[KeyRecord]
    next_page_token: str


def request_fingerprint(spec: IssueSpec) -> str:
    body = json.dumps(
        [
            spec.workspace_id,
            spec.kind.value if spec.kind else "",
            spec.display_name,
            sorted(spec.scopes),
            spec.expire_time.isoformat() if spec.expire_time else "",
            sorted(spec.allowed_origins),
        ]
    )
    return hashlib.sha256(body.encode()).hexdigest()


def scopes_invalid(required_scopes: tuple[str, ...] | list[str]) -> bool:
    """Whether a request's required scopes are too many or not all registered (INVALID_ARGUMENT)."""
    return bool(required_scopes) and (
        len(required_scopes) > MAX_REQUIRED_SCOPES or not scope_registry.ALL_SCOPES.issuperset(required_scopes)
    )


def validate_issue(spec: IssueSpec, now: datetime, past_expiry_ok: bool = False) -> IssueSpec:
    v = Violations()
    if not WORKSPACE_ID_RE.fullmatch(spec.workspace_id):
        v.add("workspace_id", "required, 1 to 64 characters of A-Z a-z 0-9 _ -")
    if spec.kind is None:
        v.add("kind", "required: KEY_KIND_SERVER or KEY_KIND_WIDGET")
    elif spec.kind not in ISSUABLE_KINDS:
        v.add("kind", "only KEY_KIND_SERVER and KEY_KIND_WIDGET keys are issued here")
    if len(spec.display_name) > MAX_DISPLAY_NAME or has_control_chars(spec.display_name):
        v.add("display_name", f"at most {MAX_DISPLAY_NAME} printable characters")
    scopes = tuple(spec.scopes)
    if spec.kind is KeyKind.WIDGET and scopes:
        v.add("scopes", "widget keys carry no scopes: they never unlock the API")
    elif spec.kind is KeyKind.SERVER:
        if not scopes:
            v.add("scopes", "a server key needs at least one scope")
        elif len(scopes) > scope_registry.MAX_SCOPES_PER_KEY:
            v.add("scopes", f"at most {scope_registry.MAX_SCOPES_PER_KEY} scopes")
        else:
            unknown = scope_registry.unknown(scopes)
            if unknown:
                v.add("scopes", "unknown scopes: " + ", ".join(repr(s[:64]) for s in unknown[:5]))
    if spec.expire_time is not None and spec.expire_time <= now and not past_expiry_ok:
        v.add("expire_time", "must be in the future")
    origins: list[str] = []
    if spec.allowed_origins:
        if spec.kind is not KeyKind.WIDGET:
            v.add("allowed_origins", "only widget keys have allowed origins")
        elif len(spec.allowed_origins) > MAX_ORIGINS:
            v.add("allowed_origins", f"at most {MAX_ORIGINS} origins")
        else:
            for n, origin in enumerate(spec.allowed_origins):
                normalized = normalize_origin(origin)
                if normalized is None:
                    v.add(f"allowed_origins[{n}]", "not an origin of the form scheme://host[:port]")
                else:
                    origins.append(normalized)
    if spec.request_id and not REQUEST_ID_RE.fullmatch(spec.request_id):
        v.add("request_id", "at most 64 characters of A-Z a-z 0-9 _ . : -")
    v.raise_if_any()
    return replace(
        spec,
        scopes=scope_registry.normalize(scopes),
        allowed_origins=tuple(sorted(set(origins))),
    )


def check_key_id(key_id: str) -> None:
    if not tokens.is_key_id(key_id):
        v = Violations()
        v.add("key_id", f"required, {tokens.KEY_ID_LEN} characters of A-Z a-z 0-9")
        v.raise_if_any()


def encode_page_token(last: KeyRecord, workspace_id: str) -> str:
    body = json.dumps({"w": workspace_id, "t": last.create_time.isoformat(), "k": last.key_id})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(token: str, workspace_id: str) -> tuple[datetime, str] | None:
    if len(token) > 512:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if body["w"] != workspace_id or not tokens.is_key_id(body["k"]):
            return None
        when = datetime.fromisoformat(body["t"])
        if when.tzinfo is None:
            return None
        return when, body["k"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
