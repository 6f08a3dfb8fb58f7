"""The credential manager: every domain rule of issuing, verifying, rotating and revoking.

It takes plain Python values and raises :mod:`auth_service.errors`; it knows
nothing of gRPC or protobuf, and talks to storage only through
:class:`auth_service.store.CredentialStore`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from auth_service.cache.verified import CachedKey, KnownRecord, Principal, VerifiedCache
from auth_service.domain import scopes as scope_registry
from auth_service.domain import tokens
from auth_service.domain.crypto import Pepper
from auth_service.domain.errors import (
    AdminCredentialRequired,
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
    Violations,
    WidgetKeyNotApiCredential,
)
from auth_service.domain.keys.records import AuditEvent, KeyRecord, StoredState, utcnow
from auth_service.domain.tokens import KeyKind
from auth_service.store import CredentialStore, RequestIdTaken, RotateConflict
from auth_service.sync.usage import UsageRecorder

WORKSPACE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_DISPLAY_NAME = 100
MAX_ORIGINS = 32
MAX_ORIGIN_LEN = 253 + 20
MAX_REASON = 200
MAX_CALLER = 64
MAX_REQUIRED_SCOPES = 32
DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
ISSUABLE_KINDS = (KeyKind.SERVER, KeyKind.WIDGET)
_SERVER_PREFIX = tokens.PREFIXES[KeyKind.SERVER]
_KEY_ID_AT = len(_SERVER_PREFIX)
_KEY_ID_END = _KEY_ID_AT + tokens.KEY_ID_LEN
# The refusal the hot path returns for a credential the negative cache knows: one shared instance,
# never raised and never changed (it carries no detail of the credential), so that a flood of
# made-up credentials builds no exception per call.
KNOWN_UNKNOWN = CredentialUnknown("unknown credential")
# The same refusal found against a key id's record (a secret other than the key's): the same
# answer, apart only so that the request is not remembered by its bytes (the grant memo's refusal
# records follow the negative cache, which does not hold such a digest; a guess is rarely repeated).
WRONG_SECRET = CredentialUnknown("unknown credential")
_TOO_LONG = f"the credential is longer than {tokens.MAX_CREDENTIAL_LEN} characters"
# The probe's refusals of strings that are no credential, one shared instance per message (the
# messages of tokens.problem and _TOO_LONG: a handful), never raised, never changed.
_MALFORMED: dict[str, CredentialMalformed] = {}


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


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text)


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, or ``None`` if it is not an origin."""
    if not origin or len(origin) > MAX_ORIGIN_LEN or _has_control_chars(origin):
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


def _fingerprint(spec: IssueSpec) -> str:
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


def _scopes_invalid(required_scopes: tuple[str, ...] | list[str]) -> bool:
    """Whether a request's required scopes are too many or not all registered (INVALID_ARGUMENT)."""
    return bool(required_scopes) and (
        len(required_scopes) > MAX_REQUIRED_SCOPES or not scope_registry.ALL_SCOPES.issuperset(required_scopes)
    )


class CredentialManager:
    """Domain operations over one store, one pepper and one process-local cache."""

    def __init__(
        self,
        store: CredentialStore,
        pepper: Pepper,
        cache: VerifiedCache | None = None,
        usage: UsageRecorder | None = None,
        outage_window: float = 60.0,
    ):
        self.store = store
        self.pepper = pepper
        # "is None", not "or": an empty cache has len() 0 and is falsy.
        self.cache = cache if cache is not None else VerifiedCache()
        self.usage = usage if usage is not None else UsageRecorder(store)
        self.outage_window = outage_window
        # The change feed this process follows (see follow()): anything with a ``last_success``
        # (``time.monotonic()`` of its last successful read). None: no feed, always fresh.
        self.feed = None
        self.store_reads = 0  # store reads made by verification (cache misses), for the stats
        self._reads_lock = threading.Lock()
        self._mac = pepper.primary_mac.digest
        # The probe's steps in the cache and the usage recorder, bound once (see probe()).
        self._cached, self._touch, self._count_grant = self.cache.hot_path()
        self._uses = self.usage.calls
        self._memo = self.cache.memo
        self._new_hasher, self._memo_lookup, self._refusal_lookup = self._memo.hot_path()
        # For the transport: a copy of the memo's keyed hash, ready for a request's bytes.
        self.new_fingerprint = self._new_hasher
        self._unknown_digest = self.cache.is_unknown_digest
        # What a transport answers a granted call with, made once per cached entry from its
        # principal (CachedKey.answer); set by the transport, opaque here.
        self.answer_of: Callable[[Principal], object] | None = None

    # -- verification (hot path) -------------------------------------------

    def _lookup(self, cred: tokens.Credential) -> CachedKey:
        digest = self.pepper.digest(cred.token)
        entry = self.cache.get(digest)
        if entry is not None:
            self._check_feed_fresh()
            return entry
        return self._load(cred, digest)

    def follow(self, feed) -> None:
        """Trust the cache only while ``feed`` (a :class:`auth_service.feed.ChangeFeedFollower`, or
        anything with a ``last_success`` monotonic time) was read within :attr:`outage_window`."""
        self.feed = feed

    def feed_staleness(self) -> float:
        """Seconds since the followed feed was last read successfully (0 without a feed)."""
        feed = self.feed
        return 0.0 if feed is None else time.monotonic() - feed.last_success

    def _check_feed_fresh(self) -> None:
        if self.feed_staleness() > self.outage_window:
            # We can no longer learn about revocations: do not trust the cache.
            raise StoreUnavailable("the credential store has been unreachable too long; retry later")

    def _load(self, cred: tokens.Credential, digest: bytes) -> CachedKey:
        """A miss of the verified cache: the negative caches, then what the cache remembers of the
        key id (:meth:`VerifiedCache.record_of`), and only then one indexed store read.

        Invariant: once a key id's record was read, every credential naming it is checked in
        memory (one HMAC against the record) until the record ages out or the key changes; a
        wrong secret never reads the store again and never affects the real credential."""
        cache = self.cache
        if cache.is_known_unknown(cred.key_id, digest):
            raise CredentialUnknown("unknown credential")
        generation = cache.generation()
        known = cache.record_of(cred.key_id)
        if known is None:
            with self._reads_lock:
                self.store_reads += 1
            record = self.store.get_key(cred.key_id)
            if record is None:
                cache.remember_unknown_key_id(cred.key_id, generation, digest)
                raise CredentialUnknown("unknown credential")
            entry = CachedKey.from_record(record, cache.stamp(), self.answer_of)
            known = KnownRecord(record.kind, record.pepper_id, record.digest, entry)
            if not self._matches(known, cred, digest):
                cache.remember_record(known, generation)
                cache.remember_wrong_secret(cred.key_id, digest, generation)
                raise CredentialUnknown("unknown credential")
        elif not self._matches(known, cred, digest):
            cache.count_negative_hit()
            cache.remember_wrong_secret(cred.key_id, digest, generation)
            raise CredentialUnknown("unknown credential")
        cache.put(digest, known.entry, generation)
        return known.entry

    def _matches(self, known: KnownRecord, cred: tokens.Credential, digest: bytes) -> bool:
        """Whether ``cred`` (``digest``: under the primary pepper) is the credential ``known`` holds."""
        if known.kind is not cred.kind:
            return False
        if known.pepper_id is None:
            return hmac.compare_digest(known.digest, digest)
        return self.pepper.verify(known.pepper_id, cred.token, known.digest, digest)

    @staticmethod
    def _check_live(entry: CachedKey, now: float) -> None:
        if entry.stored_state is StoredState.REVOKED:
            raise CredentialRevoked("the credential was revoked", metadata={"key_id": entry.key_id})
        if entry.valid_until is not None and now >= entry.valid_until:
            what = "its rotation grace period ended" if entry.stored_state is StoredState.ROTATED else "it expired"
            raise CredentialExpired(f"the credential is no longer valid: {what}", metadata={"key_id": entry.key_id})

    @staticmethod
    def _parse(token: str) -> tokens.Credential:
        if len(token) > tokens.MAX_CREDENTIAL_LEN:
            raise CredentialMalformed(_TOO_LONG)
        return tokens.parse(token)

    def authenticate_cached(
        self, token: str, required_scopes: tuple[str, ...] | list[str] = (), caller: str = ""
    ) -> Principal | CredentialUnknown | CredentialMalformed | None:
        """The hot path: what the caches alone decide, or ``None`` for :meth:`authenticate` to decide.

        * The principal, when the verified cache grants the call: a cached server credential,
          live now, the change feed fresh, the request's scopes within the key's and its fields
          within their limits (exactly what :meth:`authenticate` would grant).
        * A :class:`CredentialUnknown`, *returned, not raised*, when the negative cache knows this
          exact server credential as refused lately and the request's fields are valid (exactly
          what :meth:`authenticate` would raise): the caller answers it once its own checks
          (the throttle) let the call through. Likewise a :class:`CredentialMalformed` for a
          string that is no well-formed credential (random strings, typos, wrong checksums).
        * ``None`` in every other case, having changed and counted nothing.
        """
        found = self.probe(token, required_scopes, caller)
        return found.principal if type(found) is CachedKey else found

    def probe_wire(self, fingerprint: bytes) -> CachedKey | str | None:
        """A repeat of a request :meth:`probe` answered before, answered again from its bytes alone.

        ``fingerprint`` is the memo's keyed hash of a request's exact bytes
        (:meth:`auth_service.cache.GrantMemo.fingerprint`; the caller computes it from
        :meth:`new_fingerprint`, and gives it to :meth:`probe` with the fields decoded from the
        bytes when it was answered: see :class:`auth_service.cache.GrantMemo`).

        * The grant's entry, counted and recorded as :meth:`probe` does, when the memo holds a
          grant of these bytes and the entry that made it is still the one cached for the
          credential's digest, within the cache TTL, able to grant until now and the change feed
          fresh. Scopes and the caller are not checked again: they are the same bytes' fields,
          checked against the same entry when the grant was made.
        * The key id the credential names (a ``str``, maybe empty), when the memo holds a refusal
          of these bytes by the negative cache and :meth:`probe` would refuse them so now: the
          verified cache does not hold the credential's digest and the negative cache still
          refuses it (and counts it, as for the probe). The caller answers it as
          :data:`KNOWN_UNKNOWN`.
        * ``None`` otherwise, having changed and counted nothing (the caller then decodes the
          request and asks :meth:`probe`).

        What this saves a granted call: decoding the request, reading its three fields and the
        HMAC of its credential (about 19,000 of the 30,000 instructions a granted call cost
        beyond the benchmark's baseline, counted by ``bench/instructions.py``); a refused one, the
        same and the probe's refusal checks."""
        record = self._memo_lookup(fingerprint)
        if record is None:
            refusal = self._refusal_lookup(fingerprint)
            if refusal is None:
                return None
            digest, key_id = refusal
            if self._cached(digest) is None and self._unknown_digest(digest, True, time.monotonic()):
                return key_id
            return None
        digest, entry, caller = record
        now_monotonic = time.monotonic()
        if self._cached(digest) is not entry or now_monotonic - entry.cached_at > self.cache.ttl:
            return None  # invalidated, evicted, reloaded or too old: the long way decides
        feed = self.feed
        if feed is not None and now_monotonic - feed.last_success > self.outage_window:
            return None
        now = time.time()
        if now >= entry.grants_until:
            return None
        # From here on as probe() grants, written out in both: a method of their own would cost
        # every granted call one more Python call.
        try:
            self._touch(digest)
        except KeyError:
            pass  # invalidated since the lookup, which decided this call before the change
        self._count_grant()
        uses = self._uses
        uses.append((entry.key_id, caller, now))
        if len(uses) >= self.usage.fold_at:
            self.usage.fold()
        return entry

    def probe(
        self,
        token: str,
        required_scopes: tuple[str, ...] | list[str] = (),
        caller: str = "",
        fingerprint: bytes | None = None,
    ) -> CachedKey | CredentialUnknown | CredentialMalformed | None:
        """:meth:`authenticate_cached` with the granting cache entry instead of its principal (its
        ``answer`` is what the transport sends).

        A grant takes as few Python calls as it can: the cache's lookup and LRU move and the usage
        deque's append are C methods bound once (:meth:`VerifiedCache.hot_path`,
        :attr:`UsageRecorder.calls`), and the feed's freshness is an attribute read. In a serving
        process a call finds its code and data out of the processor's caches (gRPC's own work ran
        in between), and there a Python call costs about a microsecond: with the caches emptied
        before each call (as ``bench/handler_time.py`` measures), a warm call took about 21 us
        through the separate cache, usage, feed and counter methods and 18 us so; in a serving
        process, about 4 us less server CPU per call.

        ``fingerprint``: the memo's keyed hash of the request these fields were decoded from, if
        the caller has its bytes; a grant is then remembered for :meth:`probe_wire` to repeat,
        and so is a refusal of the negative cache."""
        if len(token) != tokens.TOKEN_LEN:
            return self._probe_refusal(token, required_scopes, caller, None, 0.0)
        digest = self._mac(token.encode())
        now_monotonic = time.monotonic()
        entry = self._cached(digest)
        if entry is None or now_monotonic - entry.cached_at > self.cache.ttl:
            found = self._probe_refusal(token, required_scopes, caller, digest, now_monotonic)
            if found is KNOWN_UNKNOWN and fingerprint is not None and entry is None:
                self._memo.remember_refusal(fingerprint, digest, tokens.key_id_of(token))
            return found
        now = time.time()
        if now >= entry.grants_until or len(caller) > MAX_CALLER:
            return None  # revoked, expired, past its grace, not a server key; or a field too long
        if required_scopes and (
            len(required_scopes) > MAX_REQUIRED_SCOPES or not entry.grantable.issuperset(required_scopes)
        ):
            return None
        feed = self.feed  # read, not called: the feed is fresh if read within the outage window
        if feed is not None and now_monotonic - feed.last_success > self.outage_window:
            return None
        try:
            self._touch(digest)
        except KeyError:
            pass  # invalidated since the lookup, which decided this call before the change
        self._count_grant()
        uses = self._uses
        uses.append((entry.key_id, caller, now))
        if len(uses) >= self.usage.fold_at:
            self.usage.fold()
        if fingerprint is not None:
            self._memo.remember(fingerprint, digest, entry, caller)
        return entry

    def remember_refused(
        self, token: str, required_scopes: tuple[str, ...] | list[str], caller: str, fingerprint: bytes
    ) -> bool:
        """After the full rule refused a request (these its fields, ``fingerprint`` the memo's hash
        of its bytes, as for :meth:`probe`): remember the refusal by the request's bytes if the
        negative cache now refuses this credential, so that the next repeat is refused from its
        bytes (:meth:`probe_wire`) rather than by the probe.
        Only for what :meth:`probe` would answer :data:`KNOWN_UNKNOWN`: a server credential's
        string, the request's other fields valid, not in the verified cache. Counts nothing;
        ``True`` if it remembered. This is the first sight of a flood's credential: one HMAC
        more after a store read."""
        if len(token) != tokens.TOKEN_LEN or not token.startswith(_SERVER_PREFIX):
            return False
        if len(caller) > MAX_CALLER or _scopes_invalid(required_scopes):
            return False
        digest = self._mac(token.encode())
        if self._cached(digest) is not None or not self.cache.refuses_digest(digest):
            return False
        self._memo.remember_refusal(fingerprint, digest, tokens.key_id_of(token))
        return True

    def _probe_refusal(
        self,
        token: str,
        required_scopes: tuple[str, ...] | list[str],
        caller: str,
        digest: bytes | None,
        now_monotonic: float,
    ) -> CredentialUnknown | CredentialMalformed | None:
        """The probe's refusals, for a credential the verified cache does not hold, given only when
        the request's other fields are valid (the full rule answers INVALID_ARGUMENT first): a
        server credential the negative cache knows by its digest, or a string that is no
        credential at all (the parse and checksum gate, no I/O), with the full rule's own error
        and counts. ``None`` for everything else (a well-formed credential not known yet)."""
        if len(caller) > MAX_CALLER or _scopes_invalid(required_scopes):
            return None
        if digest is not None and token.startswith(_SERVER_PREFIX):
            if self.cache.is_unknown_digest(digest, True, now_monotonic):
                return KNOWN_UNKNOWN
        why = _TOO_LONG if len(token) > tokens.MAX_CREDENTIAL_LEN else tokens.problem(token)
        if why is None:
            if digest is not None and token.startswith(_SERVER_PREFIX):
                # A well-formed server credential naming a key id whose record the cache holds:
                # a secret other than the record's is refused here, as _load() would refuse it.
                known = self.cache.record_of(token[_KEY_ID_AT:_KEY_ID_END], now_monotonic)
                if (
                    known is not None
                    and (known.pepper_id is None or known.pepper_id == self.pepper.primary_id)
                    and (known.kind is not KeyKind.SERVER or not hmac.compare_digest(known.digest, digest))
                ):
                    self.cache.count_miss()
                    self.cache.count_negative_hit()
                    return WRONG_SECRET
            return None
        if digest is not None:
            self.cache.count_miss()  # the full rule looked the digest up first
        error = _MALFORMED.get(why)
        if error is None:
            error = _MALFORMED.setdefault(why, CredentialMalformed(why))
        return error

    def authenticate(
        self, token: str, required_scopes: tuple[str, ...] | list[str] = (), caller: str = ""
    ) -> Principal:
        """Verify a server API credential and its scopes."""
        if required_scopes:
            # Once into a tuple: a request's repeated field is slow to iterate, and it is read twice.
            required_scopes = tuple(required_scopes)
        if _scopes_invalid(required_scopes):
            v = Violations()
            if len(required_scopes) > MAX_REQUIRED_SCOPES:
                v.add("required_scopes", f"at most {MAX_REQUIRED_SCOPES} scopes")
            unknown = scope_registry.unknown(required_scopes)
            if unknown:
                v.add("required_scopes", "unknown scopes: " + ", ".join(repr(s[:64]) for s in unknown[:5]))
            v.raise_if_any()
        if len(caller) > MAX_CALLER:
            v = Violations()
            v.add("caller", f"at most {MAX_CALLER} characters")
            v.raise_if_any()
        entry = None
        digest = None
        if len(token) == tokens.TOKEN_LEN:
            digest = self.pepper.digest(token)
            entry = self.cache.get(digest)
            if entry is None and token.startswith(_SERVER_PREFIX) and self.cache.is_unknown_digest(digest):
                # Refused lately as this exact string, which then parsed as a server credential: a
                # flood of made-up credentials ends here, before the parse and the checksum.
                raise CredentialUnknown("unknown credential")
        if entry is not None:
            # Hot path. Only a credential that parsed (shape and checksum) and
            # matched its stored digest is ever cached under that digest, so
            # a hit needs no second parse, and entry.kind is the token's kind.
            if entry.kind is not KeyKind.SERVER:
                self._refuse_kind(entry.kind)
            self._check_feed_fresh()
        else:
            cred = self._parse(token)
            if cred.kind is not KeyKind.SERVER:
                self._refuse_kind(cred.kind)
            entry = self._load(cred, digest if digest is not None else self.pepper.digest(cred.token))
        now = time.time()
        valid_until = entry.valid_until
        if entry.stored_state is StoredState.REVOKED or (valid_until is not None and now >= valid_until):
            self._check_live(entry, now)
        if required_scopes and not entry.effective_scopes.issuperset(required_scopes):
            raise InsufficientScope(scope_registry.missing(required_scopes, entry.effective_scopes))
        self.usage.record(entry.key_id, caller, now)
        return entry.principal

    @staticmethod
    def _refuse_kind(kind: KeyKind) -> None:
        if kind is KeyKind.WIDGET:
            raise WidgetKeyNotApiCredential(
                "a widget public key cannot authenticate API calls; use a server API credential",
                metadata={"kind": "widget"},
            )
        raise CredentialKindNotAccepted(
            "only server API credentials authenticate API calls", metadata={"kind": kind.value}
        )

    def verify_widget_key(self, token: str, origin: str) -> Principal:
        """Verify a widget public key used from ``origin``."""
        normalized = ""
        if origin:
            normalized = normalize_origin(origin) or ""
            if not normalized:
                v = Violations()
                v.add("origin", "not an origin of the form scheme://host[:port]")
                v.raise_if_any()
        cred = self._parse(token)
        if cred.kind is not KeyKind.WIDGET:
            raise CredentialNotWidgetKey(
                "only widget public keys are verified here", metadata={"kind": cred.kind.value}
            )
        entry = self._lookup(cred)
        now = time.time()
        self._check_live(entry, now)
        if entry.allowed_origins and normalized not in entry.allowed_origins:
            raise OriginNotAllowed(
                "the widget key is not allowed from this origin" if normalized else "the widget key requires an origin",
                metadata={"key_id": entry.key_id},
            )
        self.usage.record(entry.key_id, "", now)
        return entry.principal

    def authenticate_admin(self, bearer: str | None) -> Principal:
        """Verify the admin credential of an admin RPC."""
        if not bearer:
            raise AdminCredentialRequired("this RPC needs 'authorization: Bearer <admin credential>' metadata")
        cred = self._parse(bearer)
        if cred.kind is not KeyKind.ADMIN:
            raise NotAdminCredential("this RPC needs an admin credential", metadata={"kind": cred.kind.value})
        entry = self._lookup(cred)
        self._check_live(entry, time.time())
        return entry.principal

    # -- admin operations --------------------------------------------------

    def _validate_issue(self, spec: IssueSpec, now: datetime, past_expiry_ok: bool = False) -> IssueSpec:
        v = Violations()
        if not WORKSPACE_ID_RE.fullmatch(spec.workspace_id):
            v.add("workspace_id", "required, 1 to 64 characters of A-Z a-z 0-9 _ -")
        if spec.kind is None:
            v.add("kind", "required: KEY_KIND_SERVER or KEY_KIND_WIDGET")
        elif spec.kind not in ISSUABLE_KINDS:
            v.add("kind", "only KEY_KIND_SERVER and KEY_KIND_WIDGET keys are issued here")
        if len(spec.display_name) > MAX_DISPLAY_NAME or _has_control_chars(spec.display_name):
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

    def _new_record(self, spec: IssueSpec, now: datetime, actor: str, **extra) -> tuple[KeyRecord, str]:
        cred = tokens.mint(spec.kind)
        record = KeyRecord(
            key_id=cred.key_id,
            workspace_id=spec.workspace_id,
            kind=spec.kind,
            display_name=spec.display_name,
            scopes=spec.scopes,
            allowed_origins=spec.allowed_origins,
            digest=self.pepper.digest(cred.token),
            pepper_id=self.pepper.primary_id,
            hint=tokens.hint(cred.token),
            create_time=now,
            expire_time=spec.expire_time,
            request_id=spec.request_id,
            request_fingerprint=_fingerprint(spec) if spec.request_id else "",
            created_by=actor,
            **extra,
        )
        return record, cred.token

    def issue_key(self, actor: str, spec: IssueSpec) -> Issued:
        now = utcnow()
        try:
            spec = self._validate_issue(spec, now)
        except InvalidArgument:
            replayed = self._replay_past_its_expiry(spec, now)
            if replayed is None:
                raise
            return replayed
        record, secret = self._new_record(spec, now, actor)
        audit = AuditEvent(
            action="key.issue",
            actor=actor,
            outcome="ok",
            key_id=record.key_id,
            workspace_id=record.workspace_id,
            request_id=spec.request_id,
            detail=f"kind={record.kind.value} scopes={' '.join(record.scopes)}",
            time=now,
        )
        try:
            stored = self.store.insert_key(record, audit)
        except RequestIdTaken as taken:
            existing = taken.existing
            if existing.request_fingerprint != record.request_fingerprint:
                raise RequestIdReused(
                    "request_id was already used for a different IssueKey request",
                    metadata={"request_id": spec.request_id},
                ) from None
            return Issued(existing, "", replayed=True)
        self.cache.invalidate(stored.key_id)  # drop any negative entry for this key id
        return Issued(stored, secret)

    def _replay_past_its_expiry(self, spec: IssueSpec, now: datetime) -> Issued | None:
        """A retry (same ``request_id``, same request) of an ``IssueKey`` whose ``expire_time`` has
        passed since it succeeded gets the first key, as every other retry does, not a complaint
        about a time that was in the future when the request was first made. ``None`` if this is
        not such a retry: then the refusal stands."""
        if not spec.request_id or spec.expire_time is None or spec.expire_time > now:
            return None
        try:
            checked = self._validate_issue(spec, now, past_expiry_ok=True)
        except InvalidArgument:
            return None  # wrong in some other way too
        existing = self.store.key_by_request_id(spec.request_id)
        if existing is None or existing.request_fingerprint != _fingerprint(checked):
            return None
        return Issued(existing, "", replayed=True)

    def bootstrap_admin(self, display_name: str = "bootstrap admin", actor: str = "bootstrap-admin") -> Issued:
        """A new admin key, with no internal permission: those belong to internal credentials
        (:mod:`auth_service.service_keys`). For the local command with database access only."""
        return self._bootstrap(KeyKind.ADMIN, display_name, (), actor, "admin.bootstrap")

    def _bootstrap(
        self, kind: KeyKind, display_name: str, permissions: tuple[str, ...], actor: str, action: str
    ) -> Issued:
        """A new service key (:data:`tokens.SERVICE_KINDS`) holding ``permissions`` (already checked), audited
        as ``action``."""
        now = utcnow()
        spec = IssueSpec(
            workspace_id="",
            kind=kind,
            display_name=display_name[:MAX_DISPLAY_NAME],
            scopes=tuple(sorted(set(permissions))),
        )
        record, secret = self._new_record(spec, now, actor)
        audit = AuditEvent(
            action=action,
            actor=actor,
            outcome="ok",
            key_id=record.key_id,
            detail=f"permissions={' '.join(spec.scopes)}" if spec.scopes else "",
            time=now,
        )
        return Issued(self.store.insert_key(record, audit), secret)

    def get_key(self, key_id: str) -> KeyRecord:
        self._check_key_id(key_id)
        record = self.store.get_key(key_id)
        if record is None:
            raise KeyNotFound(key_id)
        return record

    @staticmethod
    def _check_key_id(key_id: str) -> None:
        if not tokens.is_key_id(key_id):
            v = Violations()
            v.add("key_id", f"required, {tokens.KEY_ID_LEN} characters of A-Z a-z 0-9")
            v.raise_if_any()

    def rotate(
        self, actor: str, key_id: str, grace: timedelta | None, *, service_keys: bool = False
    ) -> tuple[Issued, KeyRecord]:
        """Replace ``key_id`` by a new key; returns the new key (with its secret) and the old one.

        Invariant: no rotation creates a credential with powers its caller lacks. The ``Rotate``
        RPC rotates workspace keys only: an admin or internal key (:data:`tokens.SERVICE_KINDS`)
        is refused with ``KEY_NOT_ROTATABLE``, or a stolen one could mint a successor that outlives
        its revocation. ``service_keys=True`` (the local command with database access, which
        creates those keys too) rotates service keys only."""
        v = Violations()
        if not tokens.is_key_id(key_id):
            v.add("key_id", f"required, {tokens.KEY_ID_LEN} characters of A-Z a-z 0-9")
        if grace is None:
            grace = DEFAULT_GRACE
        elif grace < timedelta(0) or grace > MAX_GRACE:
            v.add("grace_period", "must be between 0 and 7 days")
        v.raise_if_any()
        now = utcnow()
        old = self.store.get_key(key_id)
        if old is None:
            raise KeyNotFound(key_id)
        if (old.kind in tokens.SERVICE_KINDS) is not service_keys:
            where = (
                "is rotated only by 'woes-auth service-keys rotate' with database access"
                if not service_keys
                else "is a workspace key: rotate it through the Rotate RPC ('woes-auth keys rotate')"
            )
            raise KeyNotRotatable(
                f"this {old.kind.value} key {where}", metadata={"key_id": key_id, "kind": old.kind.value}
            )
        state = old.state_at(now)
        if state.value != "active":
            raise KeyNotRotatable(
                f"only an active key can be rotated; this key is {state.value}",
                metadata={"key_id": key_id, "state": state.value},
            )
        spec = IssueSpec(
            workspace_id=old.workspace_id,
            kind=old.kind,
            display_name=old.display_name,
            scopes=old.scopes,
            expire_time=old.expire_time,
            allowed_origins=old.allowed_origins,
        )
        new, secret = self._new_record(spec, now, actor, rotated_from=key_id)
        audit = AuditEvent(
            action="service_key.rotate" if service_keys else "key.rotate",
            actor=actor,
            outcome="ok",
            key_id=key_id,
            workspace_id=old.workspace_id,
            detail=f"new_key_id={new.key_id} grace_seconds={int(grace.total_seconds())}",
            time=now,
        )
        try:
            old_stored, new_stored = self.store.rotate(key_id, new, now + grace, audit)
        except RotateConflict as conflict:
            state = conflict.current.state_at(now).value
            raise KeyNotRotatable(
                f"only an active key can be rotated; this key is {state}",
                metadata={"key_id": key_id, "state": state},
            ) from None
        except LookupError:
            raise KeyNotFound(key_id) from None
        self.cache.invalidate(key_id)
        self.cache.invalidate(new_stored.key_id)
        # The store returns the old key as committed; reading it again could fail and lose the new secret.
        return Issued(new_stored, secret), old_stored

    def revoke(self, actor: str, key_id: str, reason: str) -> KeyRecord:
        v = Violations()
        if not tokens.is_key_id(key_id):
            v.add("key_id", f"required, {tokens.KEY_ID_LEN} characters of A-Z a-z 0-9")
        if len(reason) > MAX_REASON or _has_control_chars(reason):
            v.add("reason", f"at most {MAX_REASON} printable characters")
        v.raise_if_any()
        now = utcnow()
        audit = AuditEvent(action="key.revoke", actor=actor, outcome="ok", key_id=key_id, detail=reason, time=now)
        try:
            record, _changed = self.store.revoke(key_id, reason, now, audit)
        except LookupError:
            raise KeyNotFound(key_id) from None
        self.cache.invalidate(key_id)
        return record

    def list_keys(self, workspace_id: str, page_size: int, page_token: str) -> Page:
        """Workspaces' server and widget keys, newest first. Service keys (admin, internal) are never
        listed here, whatever the filter: they belong to no workspace, and their permissions are
        shown only by the local command with database access."""
        v = Violations()
        if workspace_id and not WORKSPACE_ID_RE.fullmatch(workspace_id):
            v.add("workspace_id", "1 to 64 characters of A-Z a-z 0-9 _ -")
        if page_size < 0:
            v.add("page_size", "must not be negative")
        after = None
        if page_token:
            after = _decode_page_token(page_token, workspace_id)
            if after is None:
                v.add("page_token", "not a page token of this listing")
        v.raise_if_any()
        size = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
        rows = self.store.list_keys(workspace_id, size + 1, after, kinds=ISSUABLE_KINDS)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode_page_token(rows[-1], workspace_id)
        return Page(rows, token)


def _encode_page_token(last: KeyRecord, workspace_id: str) -> str:
    body = json.dumps({"w": workspace_id, "t": last.create_time.isoformat(), "k": last.key_id})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_page_token(token: str, workspace_id: str) -> tuple[datetime, str] | None:
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
