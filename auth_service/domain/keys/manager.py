"""The credential manager: issuing, rotating, revoking and listing keys, over the verification rules.

:class:`CredentialManager` is :class:`~auth_service.domain.keys.hot_path.KeyHotPath` (the
verification rules and their hot path) with the admin operations. It takes plain Python values
and raises :mod:`auth_service.domain.errors`; it knows nothing of gRPC or protobuf, and talks to
storage only through :class:`auth_service.domain.ports.KeyStore`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import InvalidArgument, KeyNotFound, KeyNotRotatable, RequestIdReused, Violations
from auth_service.domain.keys.hot_path import KeyHotPath
from auth_service.domain.keys.records import KeyRecord
from auth_service.domain.keys.rules import (
    DEFAULT_GRACE,
    DEFAULT_PAGE_SIZE,
    ISSUABLE_KINDS,
    MAX_DISPLAY_NAME,
    MAX_GRACE,
    MAX_PAGE_SIZE,
    MAX_REASON,
    Issued,
    IssueSpec,
    Page,
    check_key_id,
    decode_page_token,
    encode_page_token,
    request_fingerprint,
    validate_issue,
)
from auth_service.domain.ports import RequestIdTaken, RotateConflict
from auth_service.domain.tokens import KeyKind
from auth_service.domain.validation import WORKSPACE_ID_RE, has_control_chars


class CredentialManager(KeyHotPath):
    """Domain operations over one key store, one pepper, one verified cache and one usage tally."""

    def new_record(self, spec: IssueSpec, now: datetime, actor: str, rotated_from: str = "") -> tuple[KeyRecord, str]:
        """A new key record for ``spec`` (already validated) and its secret; nothing is stored."""
        kind = spec.kind
        assert kind is not None, "a validated request names its kind"
        cred = tokens.mint(kind)
        record = KeyRecord(
            key_id=cred.key_id,
            workspace_id=spec.workspace_id,
            kind=kind,
            display_name=spec.display_name,
            scopes=spec.scopes,
            allowed_origins=spec.allowed_origins,
            digest=self.pepper.digest(cred.token),
            pepper_id=self.pepper.primary_id,
            hint=tokens.hint(cred.token),
            create_time=now,
            expire_time=spec.expire_time,
            request_id=spec.request_id,
            request_fingerprint=request_fingerprint(spec) if spec.request_id else "",
            created_by=actor,
            rotated_from=rotated_from,
        )
        return record, cred.token

    def issue_key(self, actor: str, spec: IssueSpec) -> Issued:
        now = utcnow()
        try:
            spec = validate_issue(spec, now)
        except InvalidArgument:
            replayed = self._replay_past_its_expiry(spec, now)
            if replayed is None:
                raise
            return replayed
        record, secret = self.new_record(spec, now, actor)
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
            checked = validate_issue(spec, now, past_expiry_ok=True)
        except InvalidArgument:
            return None  # wrong in some other way too
        existing = self.store.key_by_request_id(spec.request_id)
        if existing is None or existing.request_fingerprint != request_fingerprint(checked):
            return None
        return Issued(existing, "", replayed=True)

    def bootstrap_admin(self, display_name: str = "bootstrap admin", actor: str = "bootstrap-admin") -> Issued:
        """A new admin key, with no internal permission: those belong to internal credentials
        (:mod:`auth_service.domain.keys.service_keys`). For the local command with database access only."""
        return self.bootstrap_service_key(KeyKind.ADMIN, display_name, (), actor, "admin.bootstrap")

    def bootstrap_service_key(
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
        record, secret = self.new_record(spec, now, actor)
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
        check_key_id(key_id)
        record = self.store.get_key(key_id)
        if record is None:
            raise KeyNotFound(key_id)
        return record

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
        new, secret = self.new_record(spec, now, actor, rotated_from=key_id)
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
            current = conflict.current.state_at(now).value
            raise KeyNotRotatable(
                f"only an active key can be rotated; this key is {current}",
                metadata={"key_id": key_id, "state": current},
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
        if len(reason) > MAX_REASON or has_control_chars(reason):
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
            after = decode_page_token(page_token, workspace_id)
            if after is None:
                v.add("page_token", "not a page token of this listing")
        v.raise_if_any()
        size = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
        rows = self.store.list_keys(workspace_id, size + 1, after, kinds=ISSUABLE_KINDS)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_page_token(rows[-1], workspace_id)
        return Page(rows, token)
