"""The hot path of ``Authenticate``: what the caches alone decide, without the full rule's steps.

:meth:`KeyHotPath.probe` grants a call from the verified cache (or refuses it from the negative
cache, or as malformed) exactly as :meth:`KeyAuthenticator.authenticate` would, and otherwise
answers ``None`` having changed and counted nothing; :meth:`KeyHotPath.probe_wire` repeats an
answer the probe gave before for the same request bytes (the grant memo). The differential tests
hold every fast answer to the full rule's.
"""

from __future__ import annotations

import hmac
import time

from auth_service.domain import tokens
from auth_service.domain.errors import CredentialMalformed, CredentialUnknown
from auth_service.domain.keys.authenticate import SERVER_PREFIX, TOO_LONG, KeyAuthenticator
from auth_service.domain.keys.records import CachedKey, Principal
from auth_service.domain.keys.rules import MAX_CALLER, MAX_REQUIRED_SCOPES, scopes_invalid
from auth_service.domain.tokens import KeyKind

KEY_ID_AT = len(SERVER_PREFIX)
KEY_ID_END = KEY_ID_AT + tokens.KEY_ID_LEN
# The refusal the hot path returns for a credential the negative cache knows: one shared instance,
# never raised and never changed (it carries no detail of the credential), so that a flood of
# made-up credentials builds no exception per call.
KNOWN_UNKNOWN = CredentialUnknown("unknown credential")


# The same refusal found against a key id's record (a secret other than the key's): the same
# answer, apart only so that the request is not remembered by its bytes (the grant memo's refusal
# records follow the negative cache, which does not hold such a digest; a guess is rarely repeated).
WRONG_SECRET = CredentialUnknown("unknown credential")

# The probe's refusals of strings that are no credential, one shared instance per message (the
# messages of tokens.problem and TOO_LONG: a handful), never raised, never changed.
_MALFORMED: dict[str, CredentialMalformed] = {}


class KeyHotPath(KeyAuthenticator):
    """:class:`KeyAuthenticator` with the cache-only answers of the hot path."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mac = self.pepper.primary_mac.digest
        # The probe's steps in the cache and the usage recorder, bound once (see probe()).
        self._cached, self._touch, self._count_grant = self.cache.hot_path()
        self._uses = self.usage.calls
        self._memo = self.cache.memo
        _, self._memo_lookup, self._refusal_lookup = self._memo.hot_path()
        self._unknown_digest = self.cache.is_unknown_digest
        self._count_probe_refusal = self.cache.probe_refusal_counter()

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
        return found.principal if isinstance(found, CachedKey) else found

    def probe_wire(self, fingerprint: bytes) -> CachedKey | str | None:
        """A repeat of a request :meth:`probe` answered before, answered again from its bytes alone.

        ``fingerprint`` is the memo's keyed hash of a request's exact bytes
        (:meth:`auth_service.cache.memo.GrantMemo.fingerprint`; the caller computes it from
        :meth:`new_fingerprint`, and gives it to :meth:`probe` with the fields decoded from the
        bytes when it was answered: see :class:`auth_service.cache.memo.GrantMemo`).

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
        HMAC of its credential; a refused one, the same and the probe's refusal checks
        (``bench/instructions.py`` counts what each costs)."""
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
        in between), where every Python call fewer counts (``bench/handler_time.py`` measures a
        call so).

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
        if len(token) != tokens.TOKEN_LEN or not token.startswith(SERVER_PREFIX):
            return False
        if len(caller) > MAX_CALLER or scopes_invalid(required_scopes):
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
        if len(caller) > MAX_CALLER or scopes_invalid(required_scopes):
            return None
        if digest is not None and token.startswith(SERVER_PREFIX):
            if self.cache.is_unknown_digest(digest, True, now_monotonic):
                return KNOWN_UNKNOWN
        why = TOO_LONG if len(token) > tokens.MAX_CREDENTIAL_LEN else tokens.problem(token)
        if why is None:
            if digest is not None and token.startswith(SERVER_PREFIX):
                # A well-formed server credential naming a key id whose record the cache holds:
                # a secret other than the record's is refused here, as _load() would refuse it.
                known = self.cache.record_of(token[KEY_ID_AT:KEY_ID_END], now_monotonic)
                if (
                    known is not None
                    and (known.pepper_id is None or known.pepper_id == self.pepper.primary_id)
                    and (known.kind is not KeyKind.SERVER or not hmac.compare_digest(known.digest, digest))
                ):
                    self._count_probe_refusal()  # a miss and a negative hit, as the full rule counts
                    return WRONG_SECRET
            return None
        if digest is not None:
            self.cache.count_miss()  # the full rule looked the digest up first
        error = _MALFORMED.get(why)
        if error is None:
            error = _MALFORMED.setdefault(why, CredentialMalformed(why))
        return error
