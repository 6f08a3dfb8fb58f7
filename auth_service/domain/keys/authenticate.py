"""Verifying credentials: the full rule of ``Authenticate``, ``VerifyWidgetKey`` and admin calls.

A credential is parsed (shape and checksum, no I/O), looked up in the verified cache by its
peppered digest, and read from the store only on a miss (one indexed read; the negative caches
and a key id's record answer wrong secrets in memory). The entry found is then checked for
liveness, kind, scopes and origin. Everything here takes plain values and raises
:mod:`auth_service.domain.errors`; storage, the cache and the usage tally are ports
(:mod:`auth_service.domain.ports`).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable

from auth_service.domain import scopes as scope_registry
from auth_service.domain import tokens
from auth_service.domain.crypto import Pepper
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
    NotAdminCredential,
    OriginNotAllowed,
    StoreUnavailable,
    Violations,
    WidgetKeyNotApiCredential,
)
from auth_service.domain.keys.records import CachedKey, KnownRecord, Principal, StoredState
from auth_service.domain.keys.rules import MAX_CALLER, MAX_REQUIRED_SCOPES, scopes_invalid
from auth_service.domain.ports import FeedClock, KeyCache, KeyStore, UsageSink
from auth_service.domain.tokens import KeyKind
from auth_service.domain.validation import normalize_origin

SERVER_PREFIX = tokens.PREFIXES[KeyKind.SERVER]
TOO_LONG = f"the credential is longer than {tokens.MAX_CREDENTIAL_LEN} characters"


class KeyAuthenticator:
    """The verification rules over one key store, one pepper, one verified cache and one usage tally."""

    def __init__(
        self,
        store: KeyStore,
        pepper: Pepper,
        cache: KeyCache,
        usage: UsageSink,
        outage_window: float = 60.0,
    ):
        self.store = store
        self.pepper = pepper
        self.cache = cache
        self.usage = usage
        self.outage_window = outage_window
        # The change feed this process follows (see follow()): anything with a ``last_success``
        # (``time.monotonic()`` of its last successful read). None: no feed, always fresh.
        self.feed: FeedClock | None = None
        self.store_reads = 0  # store reads made by verification (cache misses), for the stats
        self._reads_lock = threading.Lock()
        # What a transport answers a granted call with, made once per cached entry from its
        # principal (CachedKey.answer); set by the transport, opaque here.
        self.answer_of: Callable[[Principal], object] | None = None

    def lookup(self, cred: tokens.Credential) -> CachedKey:
        """The cached entry of a parsed credential, loaded from the store on a miss; a credential the
        store does not know raises :class:`CredentialUnknown`. Liveness is the caller's to check
        (:meth:`check_live`)."""
        digest = self.pepper.digest(cred.token)
        entry = self.cache.get(digest)
        if entry is not None:
            self._check_feed_fresh()
            return entry
        return self._load(cred, digest)

    def follow(self, feed: FeedClock) -> None:
        """Trust the cache only while ``feed`` (a :class:`auth_service.sync.feed.ChangeFeedFollower`, or
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
    def check_live(entry: CachedKey, now: float) -> None:
        """Raise the refusal of an entry that may not authenticate at ``now`` (epoch seconds): revoked,
        expired, or past its rotation grace."""
        if entry.stored_state is StoredState.REVOKED:
            raise CredentialRevoked("the credential was revoked", metadata={"key_id": entry.key_id})
        if entry.valid_until is not None and now >= entry.valid_until:
            what = "its rotation grace period ended" if entry.stored_state is StoredState.ROTATED else "it expired"
            raise CredentialExpired(f"the credential is no longer valid: {what}", metadata={"key_id": entry.key_id})

    @staticmethod
    def parse(token: str) -> tokens.Credential:
        """The parsed credential (shape and checksum, no I/O), or :class:`CredentialMalformed`."""
        if len(token) > tokens.MAX_CREDENTIAL_LEN:
            raise CredentialMalformed(TOO_LONG)
        return tokens.parse(token)

    def authenticate(
        self, token: str, required_scopes: tuple[str, ...] | list[str] = (), caller: str = ""
    ) -> Principal:
        """Verify a server API credential and its scopes."""
        if required_scopes:
            # Once into a tuple: a request's repeated field is slow to iterate, and it is read twice.
            required_scopes = tuple(required_scopes)
        if scopes_invalid(required_scopes):
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
            if entry is None and token.startswith(SERVER_PREFIX) and self.cache.is_unknown_digest(digest):
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
            cred = self.parse(token)
            if cred.kind is not KeyKind.SERVER:
                self._refuse_kind(cred.kind)
            entry = self._load(cred, digest if digest is not None else self.pepper.digest(cred.token))
        now = time.time()
        valid_until = entry.valid_until
        if entry.stored_state is StoredState.REVOKED or (valid_until is not None and now >= valid_until):
            self.check_live(entry, now)
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
        cred = self.parse(token)
        if cred.kind is not KeyKind.WIDGET:
            raise CredentialNotWidgetKey(
                "only widget public keys are verified here", metadata={"kind": cred.kind.value}
            )
        entry = self.lookup(cred)
        now = time.time()
        self.check_live(entry, now)
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
        cred = self.parse(bearer)
        if cred.kind is not KeyKind.ADMIN:
            raise NotAdminCredential("this RPC needs an admin credential", metadata={"kind": cred.kind.value})
        entry = self.lookup(cred)
        self.check_live(entry, time.time())
        return entry.principal

    def cached_and_live(self, token: str) -> bool:
        """Whether ``token`` was verified recently and is still live: answered from the cache alone
        (a throttled caller keeps being served for such credentials, so valid traffic is not
        touched while guesses are refused)."""
        if not token or len(token) > tokens.MAX_CREDENTIAL_LEN:
            return False
        entry = self.cache.get(self.pepper.digest(token))
        if entry is None:
            return False
        try:
            self.check_live(entry, time.time())
        except AuthError:
            return False
        return True
