"""CredentialManager, the domain rules, over a real SqlStore on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from auth_service.app.services import credential_manager
from auth_service.domain import tokens
from auth_service.domain.clock import utcnow
from auth_service.domain.crypto import Keyring, Pepper
from auth_service.domain.errors import (
    AdminCredentialRequired,
    AuthError,
    CredentialExpired,
    CredentialKindNotAccepted,
    CredentialMalformed,
    CredentialNotWidgetKey,
    CredentialRevoked,
    CredentialUnknown,
    InsufficientScope,
    InvalidArgument,
    KeyNotFound,
    KeyNotRotatable,
    NotAdminCredential,
    OriginNotAllowed,
    RequestIdReused,
    StoreUnavailable,
    WidgetKeyNotApiCredential,
)
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import KeyState, StoredState
from auth_service.domain.keys.rules import DEFAULT_PAGE_SIZE, MAX_GRACE, MAX_PAGE_SIZE, IssueSpec
from auth_service.domain.tokens import KeyKind
from auth_service.domain.validation import normalize_origin
from auth_service.store import SqlStore
from tests.conftest import new_pepper_text
from tests.support.keys import ACTOR, ShiftedClock, shift_clock


@dataclass
class Env:
    url: str
    store: SqlStore
    manager: CredentialManager
    clock: ShiftedClock

    def server_key(self, scopes=("conversations:write",), **kw):
        return self.manager.issue_key(ACTOR, IssueSpec("ws-1", KeyKind.SERVER, scopes=tuple(scopes), **kw))

    def widget_key(self, origins=(), **kw):
        return self.manager.issue_key(ACTOR, IssueSpec("ws-1", KeyKind.WIDGET, allowed_origins=tuple(origins), **kw))


@pytest.fixture
def env(database_url, pepper, monkeypatch):
    clock = ShiftedClock()
    shift_clock(monkeypatch, clock)
    store = SqlStore(database_url)
    yield Env(database_url, store, credential_manager(store, pepper), clock)
    store.close()


def violations(info) -> dict[str, str]:
    return {v.field: v.description for v in info.value.violations}


def forge_secret(token: str) -> str:
    """Same kind and key id, another secret, valid checksum."""
    other = tokens.mint(tokens.parse(token).kind).token
    body = token[:21] + other[21:-6]
    return body + tokens.checksum(body)


# -- issue ------------------------------------------------------------------------------


def test_issue_server_key(env, pepper):
    before = utcnow()
    issued = env.manager.issue_key(
        ACTOR,
        IssueSpec(
            "ws-1",
            KeyKind.SERVER,
            display_name="billing sync",
            scopes=("messages:write", "conversations:read", "messages:write"),
        ),
    )
    key = issued.key
    assert not issued.replayed
    cred = tokens.parse(issued.secret)
    assert cred.kind is KeyKind.SERVER and cred.key_id == key.key_id
    assert key.workspace_id == "ws-1"
    assert key.display_name == "billing sync"
    assert key.scopes == ("conversations:read", "messages:write")
    assert key.stored_state is StoredState.ACTIVE
    assert key.created_by == ACTOR
    assert key.hint == tokens.hint(issued.secret)
    assert key.digest == pepper.digest(issued.secret)
    assert key.pepper_id == pepper.primary_id
    assert before <= key.create_time <= utcnow()
    stored = env.store.get_key(key.key_id)
    assert stored == key
    assert issued.secret.encode() not in repr(stored).encode()


def test_issue_widget_key_normalises_origins(env):
    issued = env.widget_key(
        origins=("HTTPS://App.Example.COM:443/", "https://app.example.com", "http://localhost:3000", "http://[::1]:80")
    )
    assert issued.key.scopes == ()
    assert issued.key.allowed_origins == ("http://[::1]", "http://localhost:3000", "https://app.example.com")
    assert tokens.parse(issued.secret).kind is KeyKind.WIDGET


@pytest.mark.parametrize(
    "origin,expected",
    [
        ("https://a.example", "https://a.example"),
        ("https://a.example:8443", "https://a.example:8443"),
        ("http://A.EXAMPLE:80", "http://a.example"),
        ("https://a.example/", "https://a.example"),
        ("ftp://a.example", None),
        ("https://a.example/path", None),
        ("https://a.example?x=1", None),
        ("https://a.example#f", None),
        ("https://user@a.example", None),
        ("https://", None),
        ("a.example", None),
        ("javascript:alert(1)", None),
        ("https://a.example:99999", None),
        ("https://a\u0000.example", None),
        ("https://a_b.example", None),
        ("", None),
        ("https://" + "a" * 300 + ".example", None),
    ],
)
def test_normalize_origin(origin, expected):
    assert normalize_origin(origin) == expected


def _issue_refused(env, **kw) -> dict[str, str]:
    fields = dict(workspace_id="ws-1", kind=KeyKind.SERVER, scopes=("messages:read",))
    fields.update(kw)
    with pytest.raises(InvalidArgument) as info:
        env.manager.issue_key(ACTOR, IssueSpec(**fields))
    assert info.value.reason == "INVALID_ARGUMENT"
    return violations(info)


@pytest.mark.parametrize("workspace_id", ["", "a" * 65, "ws 1", "ws/1", "wś", "ws\n"])
def test_issue_validates_workspace_id(env, workspace_id):
    assert "workspace_id" in _issue_refused(env, workspace_id=workspace_id)


def test_issue_validates_kind(env):
    assert "kind" in _issue_refused(env, kind=None)
    assert "kind" in _issue_refused(env, kind=KeyKind.ADMIN)  # admin keys come only from bootstrap


@pytest.mark.parametrize("name", ["x" * 101, "bad\x00name", "line\nbreak", "rtl\u202eoverride"])
def test_issue_validates_display_name(env, name):
    assert "display_name" in _issue_refused(env, display_name=name)


def test_issue_accepts_unicode_display_name(env):
    assert env.server_key(display_name="Zürich – 東京 ✓").key.display_name == "Zürich – 東京 ✓"


def test_issue_validates_scopes(env):
    assert "scopes" in _issue_refused(env, scopes=())
    assert "unknown" in _issue_refused(env, scopes=("messages:read", "billing:read"))["scopes"]
    assert "scopes" in _issue_refused(env, scopes=tuple(f"x{n}:read" for n in range(33)))
    assert "scopes" in _issue_refused(env, scopes=("messages:admin",))


def test_issue_unknown_scope_message_is_bounded(env):
    description = _issue_refused(env, scopes=("z" * 5000,))["scopes"]
    assert len(description) < 200


def test_widget_keys_have_no_scopes(env):
    assert "scopes" in _issue_refused(env, kind=KeyKind.WIDGET, scopes=("messages:read",))


def test_issue_validates_expire_time(env):
    assert "expire_time" in _issue_refused(env, expire_time=utcnow() - timedelta(seconds=1))
    assert "expire_time" in _issue_refused(env, expire_time=utcnow())
    future = utcnow() + timedelta(days=30)
    assert env.server_key(expire_time=future).key.expire_time == future


def test_issue_validates_allowed_origins(env):
    assert "allowed_origins" in _issue_refused(env, allowed_origins=("https://a.example",))
    got = _issue_refused(env, kind=KeyKind.WIDGET, scopes=(), allowed_origins=("https://ok.example", "ftp://no"))
    assert "allowed_origins[1]" in got
    assert "allowed_origins[0]" not in got
    too_many = tuple(f"https://a{n}.example" for n in range(33))
    assert "allowed_origins" in _issue_refused(env, kind=KeyKind.WIDGET, scopes=(), allowed_origins=too_many)


@pytest.mark.parametrize("request_id", ["a" * 65, "has space", "slash/", "é"])
def test_issue_validates_request_id(env, request_id):
    assert "request_id" in _issue_refused(env, request_id=request_id)


def test_issue_reports_every_bad_field_at_once(env):
    got = _issue_refused(env, workspace_id="", kind=KeyKind.SERVER, scopes=(), display_name="x" * 200, request_id="!")
    assert {"workspace_id", "scopes", "display_name", "request_id"} <= set(got)


def test_refused_issue_writes_nothing(env):
    _issue_refused(env, scopes=("nope:read",))
    assert env.manager.list_keys("", 0, "").keys == []


# -- idempotency ----------------------------------------------------------------------------


def test_request_id_replay_returns_the_first_key_without_its_secret(env):
    first = env.server_key(scopes=("messages:read", "conversations:write"), request_id="req-1")
    again = env.server_key(scopes=("conversations:write", "messages:read", "messages:read"), request_id="req-1")
    assert again.replayed
    assert again.secret == ""
    assert again.key.key_id == first.key.key_id
    assert [k.key_id for k in env.manager.list_keys("", 0, "").keys] == [first.key.key_id]
    # The first secret still works; nothing new was minted into the store.
    assert env.manager.authenticate(first.secret).key_id == first.key.key_id


def test_a_replay_after_the_requested_expire_time_passed_returns_the_first_key(env):
    expire = utcnow() + timedelta(seconds=0.5)
    first = env.server_key(scopes=("messages:read",), request_id="req-exp", expire_time=expire)
    time.sleep(max(0.0, (expire - utcnow()).total_seconds()) + 0.1)
    again = env.server_key(scopes=("messages:read",), request_id="req-exp", expire_time=expire)
    assert again.replayed and again.secret == ""
    assert again.key.key_id == first.key.key_id
    # Not a retry of that request: the time in the past is refused as before.
    for request_id, scopes in (
        ("req-exp", ("messages:write",)),
        ("req-other", ("messages:read",)),
        ("", ("messages:read",)),
    ):
        with pytest.raises(InvalidArgument) as info:
            env.server_key(scopes=scopes, request_id=request_id, expire_time=expire)
        assert [v.field for v in info.value.violations] == ["expire_time"]
    assert len(env.manager.list_keys("", 0, "").keys) == 1


def test_request_id_reused_for_a_different_request(env):
    env.server_key(scopes=("messages:read",), request_id="req-2")
    for changed in (
        dict(scopes=("messages:write",)),
        dict(display_name="other"),
        dict(expire_time=utcnow() + timedelta(days=1)),
    ):
        with pytest.raises(RequestIdReused) as info:
            env.server_key(request_id="req-2", **changed)
        assert info.value.metadata == {"request_id": "req-2"}
    with pytest.raises(RequestIdReused):
        env.manager.issue_key(ACTOR, IssueSpec("ws-2", KeyKind.SERVER, scopes=("messages:read",), request_id="req-2"))
    assert len(env.manager.list_keys("", 0, "").keys) == 1


def test_concurrent_issues_with_one_request_id_create_one_key(env):
    results: list = []
    barrier = threading.Barrier(4)

    def issue():
        barrier.wait(timeout=10)
        try:
            results.append(env.server_key(request_id="same-request"))
        except AuthError as exc:
            results.append(exc)

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.key.key_id for r in results}) == 1
    assert sum(1 for r in results if r.secret) == 1
    assert sum(1 for r in results if r.replayed) == 3
    assert len(env.manager.list_keys("", 0, "").keys) == 1


# -- authenticate ----------------------------------------------------------------------------


def test_authenticate(env):
    expire = utcnow() + timedelta(days=3)
    issued = env.server_key(scopes=("conversations:write", "messages:read"), expire_time=expire)
    p = env.manager.authenticate(issued.secret)
    assert p.key_id == issued.key.key_id
    assert p.workspace_id == "ws-1"
    assert p.kind is KeyKind.SERVER
    assert p.scopes == ("conversations:write", "messages:read")
    assert p.expire_time == expire


def test_authenticate_scopes(env):
    issued = env.server_key(scopes=("conversations:write", "messages:read"))
    env.manager.authenticate(issued.secret, ["conversations:read", "conversations:write", "messages:read"])
    with pytest.raises(InsufficientScope) as info:
        env.manager.authenticate(issued.secret, ["messages:write", "conversations:read", "webhooks:read"])
    assert info.value.missing == ("messages:write", "webhooks:read")
    assert info.value.metadata == {"missing_scopes": "messages:write,webhooks:read"}


def test_authenticate_unknown_required_scope_is_invalid_argument(env):
    issued = env.server_key()
    with pytest.raises(InvalidArgument) as info:
        env.manager.authenticate(issued.secret, ["conversations:read", "nope:read"])
    assert "required_scopes" in violations(info)
    with pytest.raises(InvalidArgument):
        env.manager.authenticate(issued.secret, ["messages:read"] * 33)


def test_authenticate_refuses_a_widget_key(env):
    widget = env.widget_key()
    with pytest.raises(WidgetKeyNotApiCredential) as info:
        env.manager.authenticate(widget.secret)
    assert info.value.metadata == {"kind": "widget"}


def test_authenticate_refuses_an_admin_key(env):
    admin = env.manager.bootstrap_admin()
    with pytest.raises(CredentialKindNotAccepted):
        env.manager.authenticate(admin.secret)


@pytest.mark.parametrize("bad", ["", "x" * (1 << 20), "woes_sk_nope", "Bearer woes_sk_"])
def test_authenticate_refuses_malformed_without_touching_the_store(env, bad):
    before = env.store.query_count
    with pytest.raises(CredentialMalformed):
        env.manager.authenticate(bad)
    assert env.store.query_count == before


def test_authenticate_bad_checksum_does_not_touch_the_store(env):
    issued = env.server_key()
    before = env.store.query_count
    with pytest.raises(CredentialMalformed):
        env.manager.authenticate(issued.secret[:-1] + ("a" if issued.secret[-1] != "a" else "b"))
    assert env.store.query_count == before


def test_authenticate_unknown_key_and_wrong_secret(env):
    issued = env.server_key()
    with pytest.raises(CredentialUnknown):
        env.manager.authenticate(tokens.mint(KeyKind.SERVER).token)
    with pytest.raises(CredentialUnknown):
        env.manager.authenticate(forge_secret(issued.secret))
    # The right secret is not shadowed by the cached wrong one.
    assert env.manager.authenticate(issued.secret).key_id == issued.key.key_id


def test_authenticate_a_widget_key_id_under_a_server_prefix_is_unknown(env):
    widget = env.widget_key()
    body = "woes_sk_" + widget.secret[8:-6]
    with pytest.raises(CredentialUnknown):
        env.manager.authenticate(body + tokens.checksum(body))


def test_revoked_key_is_refused_at_once_even_when_cached(env):
    issued = env.server_key()
    env.manager.authenticate(issued.secret)  # now cached
    env.manager.revoke(ACTOR, issued.key.key_id, "leaked")
    with pytest.raises(CredentialRevoked) as info:
        env.manager.authenticate(issued.secret)
    assert info.value.metadata == {"key_id": issued.key.key_id}
    env.manager.cache.clear()
    with pytest.raises(CredentialRevoked):
        env.manager.authenticate(issued.secret)


@pytest.mark.parametrize("cached", [True, False])
def test_expired_key_is_refused(env, cached):
    issued = env.server_key(expire_time=utcnow() + timedelta(hours=1))
    if cached:
        env.manager.authenticate(issued.secret)
    env.clock.advance(3600 - 120)
    env.manager.authenticate(issued.secret)
    env.clock.advance(121)
    with pytest.raises(CredentialExpired) as info:
        env.manager.authenticate(issued.secret)
    assert "expired" in info.value.message
    assert env.manager.get_key(issued.key.key_id).state_at(env.clock.utcnow()) is KeyState.EXPIRED


# -- rotation and grace -------------------------------------------------------------------------


def test_rotate_default_grace(env):
    old = env.server_key(scopes=("messages:write",), display_name="svc")
    env.manager.authenticate(old.secret)  # cached before the rotation
    now = utcnow()
    new, previous = env.manager.rotate(ACTOR, old.key.key_id, None)
    assert new.secret and new.secret != old.secret
    assert new.key.key_id != old.key.key_id
    assert new.key.rotated_from == old.key.key_id
    assert (new.key.scopes, new.key.workspace_id, new.key.display_name) == (("messages:write",), "ws-1", "svc")
    assert previous.key_id == old.key.key_id
    assert previous.rotated_to == new.key.key_id
    assert previous.stored_state is StoredState.ROTATED
    expected = now + timedelta(hours=24)
    assert abs(previous.grace_expire_time - expected) < timedelta(minutes=1)
    # Both work during the grace period.
    assert env.manager.authenticate(old.secret).key_id == old.key.key_id
    assert env.manager.authenticate(new.secret).key_id == new.key.key_id
    # The rotated key reports its grace end as its expiry.
    assert env.manager.authenticate(old.secret).expire_time == previous.grace_expire_time


@pytest.mark.parametrize("cached", [True, False])
def test_rotated_key_fails_after_its_grace(env, cached):
    old = env.server_key()
    new, _ = env.manager.rotate(ACTOR, old.key.key_id, timedelta(hours=2))
    if cached:
        env.manager.authenticate(old.secret)
    else:
        env.manager.cache.clear()
    env.clock.advance(2 * 3600 - 60)
    env.manager.authenticate(old.secret)
    env.clock.advance(61)
    with pytest.raises(CredentialExpired) as info:
        env.manager.authenticate(old.secret)
    assert "grace" in info.value.message
    assert env.manager.authenticate(new.secret).key_id == new.key.key_id


def test_rotate_with_zero_grace_ends_the_old_key_at_once(env):
    old = env.server_key()
    env.manager.authenticate(old.secret)
    new, previous = env.manager.rotate(ACTOR, old.key.key_id, timedelta(0))
    with pytest.raises(CredentialExpired):
        env.manager.authenticate(old.secret)
    env.manager.authenticate(new.secret)


def test_rotate_with_seven_days_grace(env):
    old = env.server_key()
    _, previous = env.manager.rotate(ACTOR, old.key.key_id, MAX_GRACE)
    assert previous.grace_expire_time - utcnow() > timedelta(days=6, hours=23)


@pytest.mark.parametrize("grace", [timedelta(seconds=-1), timedelta(days=7, seconds=1), timedelta(days=30)])
def test_rotate_refuses_bad_grace(env, grace):
    old = env.server_key()
    with pytest.raises(InvalidArgument) as info:
        env.manager.rotate(ACTOR, old.key.key_id, grace)
    assert "grace_period" in violations(info)
    assert env.manager.get_key(old.key.key_id).stored_state is StoredState.ACTIVE


def test_grace_never_outlives_the_keys_own_expiry(env):
    expire = utcnow() + timedelta(hours=2)
    old = env.server_key(expire_time=expire)
    new, previous = env.manager.rotate(ACTOR, old.key.key_id, timedelta(days=7))
    assert previous.grace_expire_time == expire
    # The new key keeps the old expiry: rotation does not extend a key's life.
    assert new.key.expire_time == expire
    env.clock.advance(2 * 3600 - 120)
    env.manager.authenticate(old.secret)
    env.clock.advance(121)
    with pytest.raises(CredentialExpired):
        env.manager.authenticate(old.secret)


def test_rotating_a_rotated_revoked_or_expired_key_is_refused(env):
    rotated = env.server_key()
    env.manager.rotate(ACTOR, rotated.key.key_id, None)
    revoked = env.server_key()
    env.manager.revoke(ACTOR, revoked.key.key_id, "")
    expiring = env.server_key(expire_time=utcnow() + timedelta(minutes=5))
    env.clock.advance(301)
    for issued, state in ((rotated, "rotated"), (revoked, "revoked"), (expiring, "expired")):
        with pytest.raises(KeyNotRotatable) as info:
            env.manager.rotate(ACTOR, issued.key.key_id, None)
        assert info.value.metadata == {"key_id": issued.key.key_id, "state": state}


def test_rotate_unknown_or_malformed_key_id(env):
    with pytest.raises(KeyNotFound):
        env.manager.rotate(ACTOR, tokens.new_key_id(), None)
    with pytest.raises(InvalidArgument) as info:
        env.manager.rotate(ACTOR, "short", None)
    assert "key_id" in violations(info)


class RacingStore:
    """Delegates to a store; the first two ``get_key`` calls wait for each other.

    Both rotations therefore see the key active before either writes, and the
    store's transaction alone must decide the winner.
    """

    def __init__(self, inner):
        self._inner = inner
        self._barrier = threading.Barrier(2)
        self._lock = threading.Lock()
        self._armed = 2

    def get_key(self, key_id):
        record = self._inner.get_key(key_id)
        with self._lock:
            wait = self._armed > 0
            self._armed -= 1
        if wait:
            self._barrier.wait(timeout=10)
        return record

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_two_concurrent_rotations_exactly_one_wins(env, pepper):
    old = env.server_key()
    manager = credential_manager(RacingStore(env.store), pepper)
    outcomes: list = []

    def rotate():
        try:
            outcomes.append(manager.rotate(ACTOR, old.key.key_id, None))
        except AuthError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 2
    wins = [o for o in outcomes if not isinstance(o, Exception)]
    losses = [o for o in outcomes if isinstance(o, Exception)]
    assert len(wins) == 1, outcomes
    assert len(losses) == 1 and isinstance(losses[0], KeyNotRotatable), outcomes
    new, _ = wins[0]
    keys = env.manager.list_keys("", 0, "").keys
    assert sorted(k.key_id for k in keys) == sorted([old.key.key_id, new.key.key_id])
    assert env.store.get_key(old.key.key_id).rotated_to == new.key.key_id


# -- revoke ---------------------------------------------------------------------------------


def test_revoke_is_idempotent(env):
    issued = env.server_key()
    first = env.manager.revoke(ACTOR, issued.key.key_id, "leaked")
    assert first.stored_state is StoredState.REVOKED
    assert first.revoke_reason == "leaked"
    assert first.revoke_time is not None
    again = env.manager.revoke(ACTOR, issued.key.key_id, "again")
    assert again.stored_state is StoredState.REVOKED
    assert again.revoke_time == first.revoke_time
    assert again.revoke_reason == "leaked"


def test_revoke_ends_a_rotated_keys_grace(env):
    old = env.server_key()
    env.manager.rotate(ACTOR, old.key.key_id, timedelta(days=1))
    env.manager.authenticate(old.secret)
    env.manager.revoke(ACTOR, old.key.key_id, "")
    with pytest.raises(CredentialRevoked):
        env.manager.authenticate(old.secret)


def test_revoke_validation(env):
    with pytest.raises(KeyNotFound):
        env.manager.revoke(ACTOR, tokens.new_key_id(), "")
    issued = env.server_key()
    with pytest.raises(InvalidArgument) as info:
        env.manager.revoke(ACTOR, issued.key.key_id, "r" * 201)
    assert "reason" in violations(info)
    with pytest.raises(InvalidArgument):
        env.manager.revoke(ACTOR, "", "")
    assert env.manager.get_key(issued.key.key_id).stored_state is StoredState.ACTIVE


def test_get_key(env):
    issued = env.server_key()
    assert env.manager.get_key(issued.key.key_id) == issued.key
    with pytest.raises(KeyNotFound) as info:
        env.manager.get_key(tokens.new_key_id())
    assert "key_id" in info.value.metadata
    with pytest.raises(InvalidArgument):
        env.manager.get_key("../../etc")


# -- widget keys --------------------------------------------------------------------------------


def test_verify_widget_key_without_origins_accepts_any_origin(env):
    widget = env.widget_key()
    p = env.manager.verify_widget_key(widget.secret, "https://anywhere.example")
    assert (p.key_id, p.workspace_id, p.kind) == (widget.key.key_id, "ws-1", KeyKind.WIDGET)
    assert env.manager.verify_widget_key(widget.secret, "").key_id == widget.key.key_id


def test_verify_widget_key_origins(env):
    widget = env.widget_key(origins=("https://app.example.com", "http://localhost:3000"))
    assert env.manager.verify_widget_key(widget.secret, "https://app.example.com").key_id == widget.key.key_id
    # Normalised before comparing.
    env.manager.verify_widget_key(widget.secret, "HTTPS://APP.example.com:443")
    env.manager.verify_widget_key(widget.secret, "http://localhost:3000/")
    for origin in (
        "https://evil.example",
        "http://app.example.com",
        "https://app.example.com:8443",
        "http://localhost",
    ):
        with pytest.raises(OriginNotAllowed):
            env.manager.verify_widget_key(widget.secret, origin)
    with pytest.raises(OriginNotAllowed, match="requires an origin"):
        env.manager.verify_widget_key(widget.secret, "")


def test_verify_widget_key_bad_origin_is_invalid_argument(env):
    widget = env.widget_key(origins=("https://app.example.com",))
    with pytest.raises(InvalidArgument) as info:
        env.manager.verify_widget_key(widget.secret, "https://app.example.com/path")
    assert "origin" in violations(info)


def test_verify_widget_key_refuses_server_and_admin_keys(env):
    server = env.server_key()
    with pytest.raises(CredentialNotWidgetKey):
        env.manager.verify_widget_key(server.secret, "")
    with pytest.raises(CredentialNotWidgetKey):
        env.manager.verify_widget_key(env.manager.bootstrap_admin().secret, "")


def test_verify_revoked_widget_key(env):
    widget = env.widget_key()
    env.manager.verify_widget_key(widget.secret, "")
    env.manager.revoke(ACTOR, widget.key.key_id, "")
    with pytest.raises(CredentialRevoked):
        env.manager.verify_widget_key(widget.secret, "")


# -- admin credentials ------------------------------------------------------------------------


def test_authenticate_admin(env):
    admin = env.manager.bootstrap_admin("ops")
    assert admin.key.kind is KeyKind.ADMIN
    assert admin.key.workspace_id == ""
    p = env.manager.authenticate_admin(admin.secret)
    assert (p.key_id, p.kind) == (admin.key.key_id, KeyKind.ADMIN)
    for missing in (None, ""):
        with pytest.raises(AdminCredentialRequired):
            env.manager.authenticate_admin(missing)
    with pytest.raises(NotAdminCredential):
        env.manager.authenticate_admin(env.server_key().secret)
    with pytest.raises(NotAdminCredential):
        env.manager.authenticate_admin(env.widget_key().secret)
    with pytest.raises(CredentialMalformed):
        env.manager.authenticate_admin("woes_ak_garbage")
    with pytest.raises(CredentialUnknown):
        env.manager.authenticate_admin(tokens.mint(KeyKind.ADMIN).token)
    with pytest.raises(CredentialUnknown):
        env.manager.authenticate_admin(forge_secret(admin.secret))
    env.manager.revoke(ACTOR, admin.key.key_id, "")
    with pytest.raises(CredentialRevoked):
        env.manager.authenticate_admin(admin.secret)


# -- listing ------------------------------------------------------------------------------------


def _issue_many(env, n: int, workspace: str = "ws-1") -> list[str]:
    return [
        env.manager.issue_key(ACTOR, IssueSpec(workspace, KeyKind.SERVER, scopes=("messages:read",))).key.key_id
        for _ in range(n)
    ]


def test_list_pages_cover_every_key_exactly_once(env):
    mine = _issue_many(env, 23, "ws-a")
    theirs = _issue_many(env, 5, "ws-b")
    for workspace, expected in (("ws-a", mine), ("ws-b", theirs), ("", mine + theirs)):
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = env.manager.list_keys(workspace, 7, token)
            assert len(page.keys) <= 7
            seen += [k.key_id for k in page.keys]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == sorted(expected)
        assert len(seen) == len(set(seen))
        assert pages == -(-len(expected) // 7)  # no empty last page
        # Newest first.
        created = [env.store.get_key(k).create_time for k in seen]
        assert created == sorted(created, reverse=True)


def test_list_exact_multiple_of_page_size_ends_without_empty_page(env):
    _issue_many(env, 6)
    first = env.manager.list_keys("ws-1", 3, "")
    second = env.manager.list_keys("ws-1", 3, first.next_page_token)
    assert len(first.keys) == len(second.keys) == 3
    assert second.next_page_token == ""


def test_list_page_size_zero_means_default(env):
    _issue_many(env, DEFAULT_PAGE_SIZE + 1)
    page = env.manager.list_keys("ws-1", 0, "")
    assert len(page.keys) == DEFAULT_PAGE_SIZE
    assert page.next_page_token
    rest = env.manager.list_keys("ws-1", 0, page.next_page_token)
    assert len(rest.keys) == 1 and rest.next_page_token == ""


class LimitSpy:
    def __init__(self, inner):
        self._inner = inner
        self.limits: list[int] = []

    def list_keys(self, workspace_id, limit, after, kinds=None):
        self.limits.append(limit)
        return self._inner.list_keys(workspace_id, limit, after, kinds)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_list_page_size_is_capped(env, pepper):
    spy = LimitSpy(env.store)
    manager = credential_manager(spy, pepper)
    _issue_many(env, 3)
    page = manager.list_keys("ws-1", 10**6, "")
    assert len(page.keys) == 3 and page.next_page_token == ""
    assert spy.limits == [MAX_PAGE_SIZE + 1]  # one more than a page, to know whether another follows
    manager.list_keys("ws-1", 0, "")
    assert spy.limits[-1] == DEFAULT_PAGE_SIZE + 1


def test_list_refuses_negative_page_size(env):
    with pytest.raises(InvalidArgument) as info:
        env.manager.list_keys("", -1, "")
    assert "page_size" in violations(info)


def test_list_refuses_bad_and_foreign_page_tokens(env):
    _issue_many(env, 3, "ws-a")
    _issue_many(env, 3, "ws-b")
    token_a = env.manager.list_keys("ws-a", 1, "").next_page_token
    token_all = env.manager.list_keys("", 1, "").next_page_token
    assert token_a and token_all

    def b64(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    bad_tokens = [
        ("ws-b", token_a),  # another workspace's listing
        ("", token_a),
        ("ws-a", token_all),
        ("ws-a", "garbage!"),
        ("ws-a", "x" * 600),
        ("ws-a", b64({"w": "ws-a"})),
        ("ws-a", b64({"w": "ws-a", "t": "2024-01-01T00:00:00", "k": "AAAAAAAAAAAA"})),  # naive time
        ("ws-a", b64({"w": "ws-a", "t": "not a time", "k": "AAAAAAAAAAAA"})),
        ("ws-a", b64({"w": "ws-a", "t": "2024-01-01T00:00:00+00:00", "k": "x' OR 1=1"})),
        ("ws-a", b64(["w", "t", "k"])),
        ("ws-a", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
    ]
    for workspace, token in bad_tokens:
        with pytest.raises(InvalidArgument) as info:
            env.manager.list_keys(workspace, 1, token)
        assert "page_token" in violations(info), (workspace, token)
    with pytest.raises(InvalidArgument) as info:
        env.manager.list_keys("bad workspace!", 1, "")
    assert "workspace_id" in violations(info)


def test_list_never_carries_secrets_or_digests_beyond_the_record(env):
    issued = env.server_key()
    page = env.manager.list_keys("", 0, "")
    assert issued.secret not in repr(page)


# -- store outages ----------------------------------------------------------------------------


def _take_database_away(env: Env) -> None:
    """Make the database unreachable for this store: a real outage, not a mock."""
    url = make_url(env.url)
    env.store.close()  # drop pooled connections
    if url.get_backend_name() == "sqlite":
        directory = Path(url.database).parent
        shutil.rmtree(directory)  # the next connection cannot open the file
    else:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": url.database},
            )
        admin.dispose()


def test_store_unavailable_is_not_an_authentication_failure(env):
    cached = env.server_key()
    uncached = env.server_key()
    widget = env.widget_key()
    admin = env.manager.bootstrap_admin()
    env.manager.authenticate(cached.secret)
    _take_database_away(env)
    # A verified credential keeps working from the cache during an outage (bounded by the feed's staleness).
    assert env.manager.authenticate(cached.secret).key_id == cached.key.key_id
    calls = [
        lambda: env.manager.authenticate(uncached.secret),
        lambda: env.manager.authenticate(tokens.mint(KeyKind.SERVER).token),
        lambda: env.manager.verify_widget_key(widget.secret, ""),
        lambda: env.manager.authenticate_admin(admin.secret),
        lambda: env.server_key(),
        lambda: env.manager.rotate(ACTOR, uncached.key.key_id, None),
        lambda: env.manager.revoke(ACTOR, uncached.key.key_id, ""),
        lambda: env.manager.get_key(uncached.key.key_id),
        lambda: env.manager.list_keys("", 0, ""),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert info.value.category.value == "unavailable"
    # Unknown credentials seen during the outage were not remembered as unknown.
    assert env.manager.cache.negative_size() == 0


def test_cache_is_not_trusted_once_the_feed_is_too_stale(env):
    issued = env.server_key()
    env.manager.authenticate(issued.secret)
    env.manager.outage_window = 60
    env.manager.follow(SimpleNamespace(last_success=time.monotonic() - 61.0))
    with pytest.raises(StoreUnavailable):
        env.manager.authenticate(issued.secret)
    env.manager.follow(SimpleNamespace(last_success=time.monotonic() - 1.0))
    env.manager.authenticate(issued.secret)


# -- store traffic on the hot path --------------------------------------------------------------


def _cost(env, fn) -> int:
    before = env.store.query_count
    try:
        fn()
    except AuthError:
        pass
    return env.store.query_count - before


def test_one_store_query_per_new_unknown_key_id_then_none(env):
    one_lookup = _cost(env, lambda: env.store.get_key(tokens.new_key_id()))
    assert one_lookup >= 1
    for _ in range(3):
        cred = tokens.mint(KeyKind.SERVER)
        assert _cost(env, lambda c=cred: env.manager.authenticate(c.token)) == one_lookup
        # The same key id again, with any secret: no store access at all.
        for _ in range(5):
            again = tokens.mint(KeyKind.SERVER, cred.key_id)
            assert _cost(env, lambda a=again: env.manager.authenticate(a.token)) == 0
        assert _cost(env, lambda c=cred: env.manager.authenticate(c.token)) == 0


def test_wrong_secret_for_a_real_key_costs_one_query_then_none(env):
    issued = env.server_key()
    one_lookup = _cost(env, lambda: env.store.get_key(tokens.new_key_id()))
    wrong = forge_secret(issued.secret)
    assert _cost(env, lambda: env.manager.authenticate(wrong)) == one_lookup
    assert _cost(env, lambda: env.manager.authenticate(wrong)) == 0


def test_valid_key_costs_one_query_then_none(env):
    issued = env.server_key()
    one_lookup = _cost(env, lambda: env.store.get_key(tokens.new_key_id()))
    assert _cost(env, lambda: env.manager.authenticate(issued.secret)) == one_lookup
    for _ in range(10):
        assert _cost(env, lambda: env.manager.authenticate(issued.secret, ["conversations:read"])) == 0


def test_issuing_a_key_clears_a_negative_entry_for_its_id(env, monkeypatch):
    fixed = tokens.new_key_id()
    ghost = tokens.mint(KeyKind.SERVER, fixed)
    with pytest.raises(CredentialUnknown):
        env.manager.authenticate(ghost.token)  # the key id is now cached as unknown
    real_mint = tokens.mint
    monkeypatch.setattr(tokens, "mint", lambda kind, key_id=None: real_mint(kind, key_id or fixed))
    issued = env.server_key()
    assert issued.key.key_id == fixed
    assert env.manager.authenticate(issued.secret).key_id == fixed


def test_usage_is_recorded_in_memory_and_flushed(env):
    issued = env.server_key()
    for _ in range(3):
        env.manager.authenticate(issued.secret, caller="svc-a")
    assert env.manager.usage.flush() == 1
    stored = env.store.get_key(issued.key.key_id)
    assert stored.use_count == 3
    assert stored.last_caller == "svc-a"
    assert stored.last_used_time is not None
    with pytest.raises(InvalidArgument):
        env.manager.authenticate(issued.secret, caller="c" * 65)


def test_pepper_rotation_keeps_old_keys_working(env):
    old_text, new_text = new_pepper_text("old"), new_pepper_text("new")
    before = credential_manager(env.store, Pepper(Keyring.parse(old_text)))
    after = credential_manager(env.store, Pepper(Keyring.parse(f"{new_text},{old_text}")))
    old = before.issue_key(ACTOR, IssueSpec("ws-1", KeyKind.SERVER, scopes=("messages:read",)))
    assert old.key.pepper_id == "old"
    assert after.authenticate(old.secret).key_id == old.key.key_id
    fresh = after.issue_key(ACTOR, IssueSpec("ws-1", KeyKind.SERVER, scopes=("messages:read",)))
    assert fresh.key.pepper_id == "new"
    assert after.authenticate(fresh.secret).key_id == fresh.key.key_id
    # A process that only knows the old pepper cannot verify keys digested under the new one.
    with pytest.raises(CredentialUnknown):
        before.authenticate(fresh.secret)
    # Once the old pepper is dropped, keys digested under it stop verifying (fail closed).
    dropped = credential_manager(env.store, Pepper(Keyring.parse(new_text)))
    with pytest.raises(CredentialUnknown):
        dropped.authenticate(old.secret)


class FailsAfterRotate:
    """Delegates to a store; once ``rotate`` has committed, every read fails as in an outage."""

    def __init__(self, inner):
        self._inner = inner
        self.rotated = False

    def rotate(self, *args, **kwargs):
        result = self._inner.rotate(*args, **kwargs)
        self.rotated = True
        return result

    def get_key(self, key_id):
        if self.rotated:
            raise StoreUnavailable()
        return self._inner.get_key(key_id)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_committed_rotation_always_returns_the_new_secret(env, pepper):
    """Once the store committed the rotation, the new secret must reach the caller: it exists nowhere else."""
    old = env.server_key()
    manager = credential_manager(FailsAfterRotate(env.store), pepper)
    new, previous = manager.rotate(ACTOR, old.key.key_id, timedelta(hours=1))
    assert tokens.parse(new.secret).key_id == new.key.key_id
    assert previous.stored_state is StoredState.ROTATED
    assert previous.rotated_to == new.key.key_id
    assert env.manager.authenticate(new.secret).key_id == new.key.key_id
