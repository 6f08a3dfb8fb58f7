"""CredentialManager.authenticate_cached, the hot path, against the full rule (authenticate).

The probe may only ever grant what ``authenticate`` grants, and when it declines it must leave no
trace (no counter, no usage, no cache change), since the full path runs right after it. The
negative cache answers a repeated unknown credential from its digest alone, before the parse,
and still never hides a key issued after the miss.
"""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from auth_service.app.services import credential_manager
from auth_service.cache.verified import VerifiedCache
from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import AuthError, CredentialUnknown
from auth_service.domain.keys.hot_path import KNOWN_UNKNOWN
from auth_service.domain.keys.records import CachedKey
from auth_service.domain.keys.rules import MAX_CALLER, MAX_REQUIRED_SCOPES, IssueSpec
from auth_service.domain.tokens import KeyKind
from auth_service.store import SqlStore
from tests.support.keys import ACTOR, ShiftedClock, record_issued_elsewhere, shift_clock


@pytest.fixture
def hot(sqlite_url, pepper, monkeypatch):
    clock = ShiftedClock()
    shift_clock(monkeypatch, clock)
    store = SqlStore(sqlite_url)
    manager = credential_manager(store, pepper)
    manager.clock = clock
    yield manager
    store.close()


def _issue(manager, kind=KeyKind.SERVER, scopes=("conversations:write", "messages:read"), **kw):
    return manager.issue_key(
        ACTOR, IssueSpec("ws-1", kind, scopes=tuple(scopes) if kind is KeyKind.SERVER else (), **kw)
    )


def _trace(manager) -> tuple:
    cache = manager.cache
    return (cache.hits, cache.misses, cache.negative_hits, len(cache), manager.usage.pending(), manager.store_reads)


def _repeat(manager, wire: bytes):
    """``probe_wire`` of the request of ``wire`` (its fingerprint, as the transport computes it)."""
    return manager.probe_wire(manager.cache.memo.fingerprint(wire))


def _full(manager, token, scopes, caller):
    try:
        return manager.authenticate(token, scopes, caller)
    except AuthError as error:
        return error


def _agrees(manager, token, scopes=(), caller=""):
    """Probe, then the full rule; the probe's answer (when it gives one) must be the full rule's."""
    before = _trace(manager)
    fast = manager.authenticate_cached(token, scopes, caller)
    if fast is None:
        assert _trace(manager) == before, "a declining probe changed or counted something"
    full = _full(manager, token, scopes, caller)
    if isinstance(fast, AuthError):
        assert isinstance(full, AuthError), f"the probe refused what authenticate grants: {full!r}"
        assert (fast.reason, fast.message, fast.metadata) == (full.reason, full.message, full.metadata)
    elif fast is not None:
        assert full == fast, f"the probe granted what authenticate answers with {full!r}"
    return fast, full


def test_a_cached_valid_key_is_granted_by_the_probe_alone(hot):
    issued = _issue(hot)
    fast, full = _agrees(hot, issued.secret)  # not cached yet: the probe declines, the full path caches
    assert fast is None and full.key_id == issued.key.key_id
    for scopes in ((), ("conversations:read",), ("conversations:write", "messages:read"), ["messages:read"] * 3):
        hits, grants = hot.cache.hits, hot.cache.probe_grants
        fast, full = _agrees(hot, issued.secret, scopes, "svc-a")
        assert fast is not None and fast.key_id == issued.key.key_id
        assert hot.cache.hits == hits + 2  # one hit for the probe, one for the full rule after it
        assert hot.cache.probe_grants == grants + 1  # the probe's, counted once


@pytest.mark.parametrize(
    "scopes, caller",
    [
        (("webhooks:write",), ""),  # held by nobody here: insufficient scope
        (("messages:write",), ""),  # read held, write asked
        (("nonsense:read",), ""),  # not a registered scope
        (("conversations:read",) * (MAX_REQUIRED_SCOPES + 1), ""),  # too many, though all held
        ((), "c" * (MAX_CALLER + 1)),  # caller too long
    ],
)
def test_the_probe_declines_what_the_full_rule_refuses(hot, scopes, caller):
    issued = _issue(hot)
    hot.authenticate(issued.secret)
    fast, full = _agrees(hot, issued.secret, scopes, caller)
    assert fast is None and isinstance(full, AuthError)


def test_revoked_expired_and_rotated_keys(hot):
    revoked = _issue(hot)
    expiring = _issue(hot, expire_time=utcnow() + timedelta(hours=1))
    rotating = _issue(hot)
    for issued in (revoked, expiring, rotating):
        hot.authenticate(issued.secret)
    hot.revoke(ACTOR, revoked.key.key_id, "test")
    fast, full = _agrees(hot, revoked.secret)
    assert fast is None and full.reason == "CREDENTIAL_REVOKED"
    # Within its validity the expiring key is granted by the probe; past it, by neither.
    assert _agrees(hot, expiring.secret)[0] is not None
    hot.clock.advance(3601)
    fast, full = _agrees(hot, expiring.secret)
    assert fast is None and full.reason == "CREDENTIAL_EXPIRED"
    # A rotated key within its grace period is still granted; after it, no more.
    new, _ = hot.rotate(ACTOR, rotating.key.key_id, timedelta(hours=2))
    hot.authenticate(rotating.secret)  # re-cached in its rotated state
    assert _agrees(hot, rotating.secret)[0].key_id == rotating.key.key_id
    hot.clock.advance(2 * 3600 + 1)
    fast, full = _agrees(hot, rotating.secret)
    assert fast is None and full.reason == "CREDENTIAL_EXPIRED"
    assert _agrees(hot, new.secret)[1].key_id == new.key.key_id


def test_other_kinds_are_never_granted(hot):
    widget = _issue(hot, kind=KeyKind.WIDGET)
    hot.verify_widget_key(widget.secret, "")  # cached by its own RPC
    fast, full = _agrees(hot, widget.secret)
    assert fast is None and full.reason == "WIDGET_KEY_NOT_API_CREDENTIAL"
    admin = hot.bootstrap_admin("ops")
    hot.authenticate_admin(admin.secret)
    fast, full = _agrees(hot, admin.secret)
    assert fast is None and full.reason == "CREDENTIAL_KIND_NOT_ACCEPTED"


def test_a_stale_change_feed_stops_the_probe(hot):
    issued = _issue(hot)
    hot.authenticate(issued.secret)
    hot.follow(SimpleNamespace(last_success=time.monotonic() - hot.outage_window - 1))
    fast, full = _agrees(hot, issued.secret)
    assert fast is None and full.reason == "STORE_UNAVAILABLE"
    hot.follow(SimpleNamespace(last_success=time.monotonic()))
    assert _agrees(hot, issued.secret)[0] is not None


def test_usage_from_the_probe_is_counted_once_per_call(hot):
    issued = _issue(hot)
    hot.authenticate(issued.secret, (), "svc-a")
    for _ in range(5):
        assert hot.authenticate_cached(issued.secret, (), "svc-b") is not None
    assert hot.usage.flush() == 1
    key = hot.get_key(issued.key.key_id)
    assert key.use_count == 6
    assert key.last_caller == "svc-b"


def test_the_probe_folds_its_usage_once_the_deque_is_full(hot):
    """The probe appends to the usage deque itself; past ``fold_at`` calls it folds them into the
    tally, so the deque stays bounded between flushes however long the interval."""
    issued = _issue(hot)
    hot.authenticate(issued.secret, (), "svc-a")
    hot.usage.fold_at = 4
    for n in range(10):
        assert hot.probe(issued.secret, (), f"svc-{n}") is not None
        assert len(hot.usage.calls) < 4
    assert hot.usage.flush() == 1
    key = hot.get_key(issued.key.key_id)
    assert (key.use_count, key.last_caller) == (11, "svc-9")


def test_a_key_invalidated_during_the_probe_is_still_answered_once_and_then_not(hot, monkeypatch):
    """An entry dropped between the probe's lookup and its LRU move (a revocation through the
    feed, on another thread) does not fail the call the lookup already decided, and is not put
    back: the next call reads the store and is refused."""
    issued = _issue(hot)
    hot.authenticate(issued.secret)
    real_touch = hot._touch

    def revoked_meanwhile(digest):
        hot.revoke(ACTOR, issued.key.key_id, "test")  # drops the entry from the cache at once
        real_touch(digest)  # the entry is gone: KeyError, which the probe must absorb

    monkeypatch.setattr(hot, "_touch", revoked_meanwhile)
    assert hot.probe(issued.secret) is not None
    monkeypatch.setattr(hot, "_touch", real_touch)
    assert hot.probe(issued.secret) is None  # not cached any more
    assert _full(hot, issued.secret, (), "").reason == "CREDENTIAL_REVOKED"


# -- the negative cache by digest -------------------------------------------------------


def test_a_repeated_unknown_credential_is_refused_before_the_parse(hot, monkeypatch):
    token = tokens.mint(KeyKind.SERVER).token
    with pytest.raises(CredentialUnknown):
        hot.authenticate(token)
    reads = hot.store_reads
    parsed = []
    real_parse = tokens.parse
    monkeypatch.setattr(tokens, "parse", lambda t: parsed.append(t) or real_parse(t))
    for _ in range(3):
        with pytest.raises(CredentialUnknown):
            hot.authenticate(token)
    assert parsed == [] and hot.store_reads == reads
    # A new secret under the same unknown key id is parsed, then refused by the key-id entry.
    body = token[:21] + tokens.mint(KeyKind.SERVER).token[21:-6]
    sibling = body + tokens.checksum(body)
    with pytest.raises(CredentialUnknown):
        hot.authenticate(sibling)
    assert parsed == [sibling] and hot.store_reads == reads


def test_a_wrong_secret_is_refused_before_the_parse(hot, monkeypatch):
    issued = _issue(hot)
    body = issued.secret[:21] + tokens.mint(KeyKind.SERVER).token[21:-6]
    forged = body + tokens.checksum(body)
    with pytest.raises(CredentialUnknown):
        hot.authenticate(forged)
    parsed = []
    real_parse = tokens.parse
    monkeypatch.setattr(tokens, "parse", lambda t: parsed.append(t) or real_parse(t))
    with pytest.raises(CredentialUnknown):
        hot.authenticate(forged)
    assert parsed == []
    assert hot.authenticate(issued.secret).key_id == issued.key.key_id


def test_the_digest_entry_never_hides_a_key_issued_after_the_miss(hot, pepper):
    cred = tokens.mint(KeyKind.SERVER)
    for _ in range(2):
        with pytest.raises(CredentialUnknown):
            hot.authenticate(cred.token)
    assert hot.cache.is_unknown_digest(pepper.digest(cred.token))
    # Another process issues exactly this credential; the change feed announces it here.
    hot.store.insert_key(record_issued_elsewhere(cred, pepper), AuditEvent(action="key.issue", actor="t", outcome="ok"))
    hot.cache.forget_unknown(cred.key_id)
    assert not hot.cache.is_unknown_digest(pepper.digest(cred.token))
    assert hot.authenticate(cred.token).key_id == cred.key_id


def test_widget_shaped_strings_keep_their_own_refusal(hot):
    """A widget key refused at VerifyWidgetKey (wrong secret) is still 'a widget key' to Authenticate."""
    widget = _issue(hot, kind=KeyKind.WIDGET)
    body = widget.secret[:21] + tokens.mint(KeyKind.WIDGET).token[21:-6]
    forged = body + tokens.checksum(body)
    with pytest.raises(CredentialUnknown):
        hot.verify_widget_key(forged, "")
    with pytest.raises(AuthError) as info:
        hot.authenticate(forged)
    assert info.value.reason == "WIDGET_KEY_NOT_API_CREDENTIAL"


def test_unknown_digests_follow_their_key_id_and_stay_bounded():
    cache = VerifiedCache(max_entries=10, negative_max_entries=5, negative_ttl=60)
    for n in range(8):
        cache.remember_unknown_key_id(f"{n:012d}", cache.generation(), bytes([n]) * 32)
    assert not cache.is_unknown_digest(bytes([0]) * 32)  # pushed out by the bound
    assert cache.is_unknown_digest(bytes([7]) * 32)
    cache.forget_unknown(f"{7:012d}")
    assert not cache.is_unknown_digest(bytes([7]) * 32)
    cache.invalidate(f"{6:012d}")
    assert not cache.is_unknown_digest(bytes([6]) * 32)
    expired = VerifiedCache(negative_ttl=0)
    expired.remember_unknown_key_id("k" * 12, expired.generation(), b"d" * 32)
    assert not expired.is_unknown_digest(b"d" * 32)


def test_the_probe_refuses_a_known_unknown_credential_as_the_full_rule_does(hot):
    token = tokens.mint(KeyKind.SERVER).token
    fast, full = _agrees(hot, token, ("messages:read",), "svc")
    assert fast is None and full.reason == "CREDENTIAL_UNKNOWN"  # first sight: the store says so
    misses, negative = hot.cache.misses, hot.cache.negative_hits
    fast = hot.authenticate_cached(token, ("messages:read",), "svc")
    assert isinstance(fast, CredentialUnknown)
    assert (hot.cache.misses, hot.cache.negative_hits) == (misses + 1, negative + 1)  # as the full rule counts
    assert _agrees(hot, token)[0].reason == "CREDENTIAL_UNKNOWN"
    # Invalid fields are the full rule's to refuse (INVALID_ARGUMENT comes first there).
    for scopes, caller in ((("nonsense:read",), ""), (("messages:read",) * 40, ""), ((), "c" * 65)):
        fast, full = _agrees(hot, token, scopes, caller)
        assert fast is None and full.reason == "INVALID_ARGUMENT"


def test_a_cached_entry_holds_the_transports_answer_made_once(hot):
    made = []

    def answer_of(principal):
        made.append(principal)
        return ("answer", principal.key_id)

    hot.answer_of = answer_of
    issued = _issue(hot)
    assert hot.probe(issued.secret) is None  # not cached yet
    hot.authenticate(issued.secret)  # the miss caches the entry, with its answer
    for _ in range(3):
        entry = hot.probe(issued.secret, ("messages:read",), "svc")
        assert entry.answer == ("answer", issued.key.key_id)
        assert entry.principal == hot.authenticate_cached(issued.secret)
    assert made == [entry.principal]  # once, when the entry was made
    widget = _issue(hot, KeyKind.WIDGET, allowed_origins=("https://shop.example",))
    hot.verify_widget_key(widget.secret, "https://shop.example")
    assert len(made) == 1  # entries that can never grant Authenticate carry no answer


def test_the_probe_refuses_what_is_no_credential_as_the_full_rule_does_and_counts_the_same(hot):
    valid = tokens.mint(KeyKind.SERVER).token
    bad_checksum = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    random_string = "x" * tokens.TOKEN_LEN
    for token in (bad_checksum, random_string, "", "woes_sk_short", "y" * 300, valid.replace("_", "-")):
        before = _trace(hot)
        fast = hot.authenticate_cached(token, ("messages:read",), "svc")
        probed = tuple(b - a for a, b in zip(before, _trace(hot), strict=True))
        assert isinstance(fast, AuthError) and fast.reason == "CREDENTIAL_MALFORMED", token[:12]
        before = _trace(hot)
        full = _full(hot, token, ("messages:read",), "svc")
        assert (fast.reason, fast.message, fast.metadata) == (full.reason, full.message, full.metadata)
        assert probed == tuple(b - a for a, b in zip(before, _trace(hot), strict=True))  # the same counts
        # Invalid request fields are the full rule's to refuse first: the probe declines.
        for scopes, caller in ((("nonsense:read",), ""), ((), "c" * 65)):
            assert hot.authenticate_cached(token, scopes, caller) is None
            assert _full(hot, token, scopes, caller).reason == "INVALID_ARGUMENT"
    # A well-formed credential the caches do not know is the full rule's (a store read decides).
    assert hot.authenticate_cached(tokens.mint(KeyKind.SERVER).token) is None
    # A well-formed credential of another kind too (its refusal names the kind).
    assert hot.authenticate_cached(tokens.mint(KeyKind.WIDGET).token) is None


# -- repeats by the request's bytes (the grant memo) -------------------------------------


def test_a_repeat_of_a_granted_request_is_granted_from_its_bytes_alone(hot, monkeypatch):
    issued = _issue(hot)
    hot.authenticate(issued.secret)
    assert _repeat(hot, b"request-1") is None  # nothing granted by these bytes yet
    entry = hot.probe(issued.secret, ("messages:read",), "svc-a", fingerprint=hot.cache.memo.fingerprint(b"request-1"))
    assert entry is not None and len(hot.cache.memo) == 1
    hashed = []
    monkeypatch.setattr(hot, "_mac", lambda data: hashed.append(data))  # the repeat hashes no credential
    for _ in range(3):
        hits, grants = hot.cache.hits, hot.cache.probe_grants
        assert _repeat(hot, b"request-1") is entry
        assert (hot.cache.hits, hot.cache.probe_grants) == (hits + 1, grants + 1)  # counted as the probe's grants
    assert hashed == []
    before = _trace(hot)
    assert _repeat(hot, b"request-2") is None  # other bytes: nothing found, nothing counted
    assert _trace(hot) == before
    monkeypatch.undo()
    assert hot.usage.flush() == 1
    key = hot.get_key(issued.key.key_id)
    assert (key.use_count, key.last_caller) == (5, "svc-a")  # the full rule's call, the probe's and 3 repeats


def test_a_repeat_is_granted_only_while_the_entry_that_granted_it_would_be(hot):
    """The memo decides nothing: revocation, expiry, rotation, a reload, the cache's TTL and a
    stale change feed each stop the repeat exactly as they stop the probe, and a declined repeat
    leaves no trace (the long way runs right after it)."""

    def granted(issued, wire, **kw):
        hot.authenticate(issued.secret)
        assert hot.probe(issued.secret, (), "svc", fingerprint=hot.cache.memo.fingerprint(wire)) is not None
        assert _repeat(hot, wire) is not None

    def declined(wire):
        before = _trace(hot)
        assert _repeat(hot, wire) is None
        assert _trace(hot) == before

    revoked = _issue(hot)
    granted(revoked, b"revoked")
    hot.revoke(ACTOR, revoked.key.key_id, "test")
    declined(b"revoked")
    assert _full(hot, revoked.secret, (), "svc").reason == "CREDENTIAL_REVOKED"
    declined(b"revoked")  # cached again, now revoked: a new entry, and one that grants nothing

    expiring = _issue(hot, expire_time=utcnow() + timedelta(hours=1))
    granted(expiring, b"expiring")
    hot.clock.advance(3601)
    declined(b"expiring")

    rotating = _issue(hot)
    granted(rotating, b"rotating")
    hot.rotate(ACTOR, rotating.key.key_id, timedelta(hours=2))
    declined(b"rotating")  # the rotation dropped the entry; the reload made another

    reloaded = _issue(hot)
    granted(reloaded, b"reloaded")
    hot.cache.invalidate(reloaded.key.key_id)  # as the change feed does for a change elsewhere
    hot.authenticate(reloaded.secret)  # the same key cached again: a new entry
    declined(b"reloaded")
    assert (
        hot.probe(reloaded.secret, (), "svc", fingerprint=hot.cache.memo.fingerprint(b"reloaded")) is not None
    )  # remembered anew
    assert _repeat(hot, b"reloaded") is not None

    hot.follow(SimpleNamespace(last_success=time.monotonic() - hot.outage_window - 1))
    declined(b"reloaded")
    hot.follow(SimpleNamespace(last_success=time.monotonic()))
    assert _repeat(hot, b"reloaded") is not None

    ttl = hot.cache.ttl
    hot.cache.ttl = 0.0  # every entry past its time in the cache
    declined(b"reloaded")
    hot.cache.ttl = ttl
    assert _repeat(hot, b"reloaded") is not None

    hot.cache.clear()
    assert len(hot.cache.memo) == 0
    declined(b"reloaded")


def test_only_grants_and_refusals_of_the_negative_cache_are_remembered(hot):
    issued = _issue(hot)
    hot.authenticate(issued.secret)
    unknown = tokens.mint(KeyKind.SERVER)
    with pytest.raises(CredentialUnknown):
        hot.authenticate(unknown.token)
    assert (
        hot.probe(issued.secret, ("webhooks:write",), "svc", fingerprint=hot.cache.memo.fingerprint(b"not held"))
        is None
    )
    assert (
        hot.probe(issued.secret, (), "c" * (MAX_CALLER + 1), fingerprint=hot.cache.memo.fingerprint(b"caller too long"))
        is None
    )
    assert isinstance(
        hot.probe(unknown.token, (), "svc", fingerprint=hot.cache.memo.fingerprint(b"unknown")), CredentialUnknown
    )
    assert (
        hot.probe(
            unknown.token,
            (),
            "c" * (MAX_CALLER + 1),
            fingerprint=hot.cache.memo.fingerprint(b"unknown, caller too long"),
        )
        is None
    )
    assert isinstance(
        hot.probe("x" * tokens.TOKEN_LEN, (), "svc", fingerprint=hot.cache.memo.fingerprint(b"malformed")), AuthError
    )
    assert (
        hot.probe(tokens.mint(KeyKind.SERVER).token, (), "svc", fingerprint=hot.cache.memo.fingerprint(b"never seen"))
        is None
    )
    assert len(hot.cache.memo) == 0
    assert hot.cache.memo.refusals() == 1
    for wire in (b"not held", b"caller too long", b"unknown, caller too long", b"malformed", b"never seen"):
        assert _repeat(hot, wire) is None
    assert _repeat(hot, b"unknown") == unknown.key_id


def test_a_repeat_of_a_negative_refusal_is_refused_from_its_bytes_alone(hot, monkeypatch):
    """The refusal's repeat: the key id it names, counted exactly as the probe counts the refusal
    (a miss and a negative hit), without hashing the credential and without a store read."""
    unknown = tokens.mint(KeyKind.SERVER)
    with pytest.raises(CredentialUnknown):
        hot.authenticate(unknown.token)  # first sight: the store says no such key
    before = _trace(hot)
    assert (
        hot.probe(unknown.token, ("messages:read",), "svc", fingerprint=hot.cache.memo.fingerprint(b"flood-1"))
        is KNOWN_UNKNOWN
    )
    probed = tuple(b - a for a, b in zip(before, _trace(hot), strict=True))
    assert probed == (0, 1, 1, 0, 0, 0)
    hashed = []
    monkeypatch.setattr(hot, "_mac", lambda data: hashed.append(data))
    for _ in range(3):
        before = _trace(hot)
        assert _repeat(hot, b"flood-1") == unknown.key_id
        assert tuple(b - a for a, b in zip(before, _trace(hot), strict=True)) == probed
    assert hashed == []
    assert hot.cache.memo.refusals() == 1 and len(hot.cache.memo) == 0


def test_a_remembered_refusal_counts_only_while_the_negative_cache_refuses(hot, pepper):
    """Issuing the key id, an invalidation, the negative entry's age and ``clear`` each end the
    repeat's refusal; a declined repeat leaves no trace, and the long way decides."""

    def refused(cred, wire):
        with pytest.raises(CredentialUnknown):
            hot.authenticate(cred.token)
        assert hot.probe(cred.token, (), "svc", fingerprint=hot.cache.memo.fingerprint(wire)) is KNOWN_UNKNOWN
        assert _repeat(hot, wire) == cred.key_id

    def declined(wire):
        before = _trace(hot)
        assert _repeat(hot, wire) is None
        assert _trace(hot) == before

    issued_late = tokens.mint(KeyKind.SERVER)
    refused(issued_late, b"issued late")
    hot.store.insert_key(
        record_issued_elsewhere(issued_late, pepper), AuditEvent(action="key.issue", actor="t", outcome="ok")
    )
    hot.cache.forget_unknown(issued_late.key_id)  # as the change feed announces the issue
    declined(b"issued late")
    assert hot.authenticate(issued_late.token).key_id == issued_late.key_id
    assert (
        hot.probe(issued_late.token, (), "svc", fingerprint=hot.cache.memo.fingerprint(b"issued late")) is not None
    )  # a grant now
    assert type(_repeat(hot, b"issued late")) is CachedKey

    invalidated = tokens.mint(KeyKind.SERVER)
    refused(invalidated, b"invalidated")
    hot.cache.invalidate(invalidated.key_id)
    declined(b"invalidated")

    aged = tokens.mint(KeyKind.SERVER)
    refused(aged, b"aged")
    later = time.monotonic() + hot.cache.negative_ttl + 1  # the probe's monotonic clock, past the entry's age
    hot.clock.monotonic = lambda: later
    declined(b"aged")
    del hot.clock.monotonic  # the clock's own again

    cleared = tokens.mint(KeyKind.SERVER)
    refused(cleared, b"cleared")
    hot.cache.clear()
    assert hot.cache.memo.refusals() == 0
    declined(b"cleared")


def test_a_refusal_of_the_full_rule_is_remembered_once_the_negative_cache_holds_it(hot):
    """``remember_refused``, after the full rule refused a request: remembered (counting nothing)
    only for what the probe would answer KNOWN_UNKNOWN; the next repeat is refused from its bytes."""
    fp = hot.cache.memo.fingerprint
    unknown = tokens.mint(KeyKind.SERVER)
    issued = _issue(hot)
    hot.authenticate(issued.secret)
    assert not hot.remember_refused(unknown.token, (), "svc", fp(b"not refused yet"))  # no negative entry
    with pytest.raises(CredentialUnknown):
        hot.authenticate(unknown.token)  # the first sight: a store read
    before = _trace(hot)
    assert not hot.remember_refused(unknown.token, ("nonsense:read",), "svc", fp(b"invalid scopes"))
    assert not hot.remember_refused(unknown.token, (), "c" * (MAX_CALLER + 1), fp(b"caller too long"))
    assert not hot.remember_refused(issued.secret, (), "svc", fp(b"cached"))
    assert not hot.remember_refused("x" * tokens.TOKEN_LEN, (), "svc", fp(b"malformed"))
    assert not hot.remember_refused(tokens.mint(KeyKind.WIDGET).token, (), "svc", fp(b"widget"))
    assert hot.remember_refused(unknown.token, ("messages:read",), "svc", fp(b"first sight"))
    assert _trace(hot) == before  # counted nothing
    assert hot.cache.memo.refusals() == 1
    assert _repeat(hot, b"first sight") == unknown.key_id
    for wire in (b"not refused yet", b"invalid scopes", b"caller too long", b"cached", b"malformed", b"widget"):
        assert _repeat(hot, wire) is None


def test_a_guess_naming_a_key_id_with_a_known_record_is_refused_by_the_probe_as_the_full_rule_does(hot):
    """Once a key id's record was read, a well-formed credential naming it with another secret is
    refused from memory: by the probe exactly as the full rule refuses it (same error, same counts,
    no store read), and the key's real credential still verifies."""
    issued = _issue(hot)
    key_id = issued.key.key_id
    first = tokens.mint(KeyKind.SERVER, key_id).token
    fast, full = _agrees(hot, first, ("messages:read",), "svc")
    assert fast is None and full.reason == "CREDENTIAL_UNKNOWN"  # first sight: the store read
    reads = hot.store_reads
    for _ in range(5):
        guess, other = tokens.mint(KeyKind.SERVER, key_id).token, tokens.mint(KeyKind.SERVER, key_id).token
        before = _trace(hot)
        fast = hot.authenticate_cached(guess, ("messages:read",), "svc")
        probed = tuple(b - a for a, b in zip(before, _trace(hot), strict=True))
        before = _trace(hot)
        full = _full(hot, other, ("messages:read",), "svc")
        assert isinstance(fast, CredentialUnknown) and full.reason == fast.reason and full.message == fast.message
        assert probed == tuple(b - a for a, b in zip(before, _trace(hot), strict=True))  # the same counts
    assert hot.store_reads == reads
    # The real credential, never seen before, verifies from the remembered record (no read either).
    assert _agrees(hot, issued.secret)[1].key_id == key_id and hot.store_reads == reads
    # Verified now: guesses are checked against its entry; a widget key's entry refuses server guesses.
    assert isinstance(hot.authenticate_cached(tokens.mint(KeyKind.SERVER, key_id).token), CredentialUnknown)
    widget = _issue(hot, KeyKind.WIDGET)
    hot.verify_widget_key(widget.secret, "")
    fast, full = _agrees(hot, tokens.mint(KeyKind.SERVER, widget.key.key_id).token)
    assert isinstance(fast, CredentialUnknown) and full.reason == "CREDENTIAL_UNKNOWN"
    # A revocation forgets the record: the next guess reads the store again.
    hot.revoke(ACTOR, key_id, "test")
    assert hot.cache.record_of(key_id) is None
    assert hot.authenticate_cached(tokens.mint(KeyKind.SERVER, key_id).token) is None
