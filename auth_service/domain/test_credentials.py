"""API test credentials: customer-supplied secrets for Woes' guarded live tests (the contract's
``TestCredential``).

The material is stored only as an AES-256-GCM envelope (:mod:`auth_service.domain.envelope`)
bound to its row, sealed under the primary key-encryption key the deployment agreed on in
the database (:class:`auth_service.domain.ports.KekStore`), whatever this process's ring lists first.
Listing and getting return metadata only; deleting erases the row, material included;
revealing returns the plaintext only to an internal
credential holding the internal permission ``lab:test_credentials:reveal``, and
every reveal by an internal credential, refused or not, writes an audit event
(never the material).
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlsplit

from auth_service.domain import permissions, tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.envelope import KekRing, Sealed
from auth_service.domain.errors import (
    AuthError,
    PermissionRequired,
    StoreUnavailable,
    TestCredentialNotFound,
    Violations,
)
from auth_service.domain.ports import AuditStore, KekStore, NameTaken, PrimaryKekMoved, TestCredentialStore
from auth_service.domain.validation import WORKSPACE_ID_RE, has_control_chars


@dataclass(frozen=True)
class TestCredentialRecord:
    """One stored API test credential: metadata plus the sealed material."""

    __test__ = False  # not a pytest test class

    credential_id: str
    workspace_id: str
    name: str
    kind: str
    target_base_url: str
    sealed: Sealed = field(repr=False)
    create_time: datetime
    update_time: datetime
    created_by: str = ""
    updated_by: str = ""
    reveal_count: int = 0
    last_reveal_time: datetime | None = None


PURPOSE = "test-credential"
KINDS = ("bearer_token", "api_key", "basic_auth", "oauth_client_secret", "other")
MAX_NAME = 100
MAX_MATERIAL = 8192
MAX_URL = 2048
MAX_REASON = 200
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class RevealedTestCredential:
    record: TestCredentialRecord
    plaintext: str

    def __repr__(self) -> str:  # never show the material
        return f"RevealedTestCredential({self.record.credential_id})"


@dataclass(frozen=True)
class RewrapReport:
    primary_kek_id: str
    rewrapped: int
    remaining: int
    failed: tuple[str, ...] = ()


def _check_url(url: str) -> bool:
    if not url or len(url) > MAX_URL or has_control_chars(url) or any(ch.isspace() for ch in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.hostname) and not parts.username and not parts.password


class TestCredentials:
    """The rules of API test credentials over their store, the agreed primary KEK, the audit trail
    and this process's KEK ring."""

    __test__ = False  # not a pytest test class

    def __init__(self, store: TestCredentialStore, keks: KekStore, audit: AuditStore, ring: KekRing):
        self.store = store
        self.keks = keks
        self.audit = audit
        self.ring = ring

    # -- validation ---------------------------------------------------------------

    @staticmethod
    def _ids(v: Violations, workspace_id: str, credential_id: str | None = None) -> None:
        if not WORKSPACE_ID_RE.fullmatch(workspace_id):
            v.add("workspace_id", "required, 1 to 64 characters of A-Z a-z 0-9 _ -")
        if credential_id is not None and not tokens.is_key_id(credential_id):
            v.add("credential_id", f"required, {tokens.KEY_ID_LEN} characters of A-Z a-z 0-9")

    def _get(self, workspace_id: str, credential_id: str) -> TestCredentialRecord:
        record = self.store.get_test_credential(credential_id)
        if record is None or record.workspace_id != workspace_id:
            raise TestCredentialNotFound(credential_id)
        return record

    def primary_kek_id(self) -> str:
        """The key new records are sealed under: the primary agreed in the database; when none is
        agreed yet, this ring's configured primary becomes it."""
        return self.keks.primary_kek_id() or self.keks.agree_primary_kek(self.ring.primary_id)

    # -- operations ------------------------------------------------------------------

    def put(
        self,
        actor: str,
        workspace_id: str,
        name: str,
        kind: str,
        material: str,
        target_base_url: str,
        request_id: str = "",
    ) -> tuple[TestCredentialRecord, bool]:
        """Create the workspace's test credential called ``name``, or replace its material. Returns (record, created)."""
        v = Violations()
        self._ids(v, workspace_id)
        if not name or len(name) > MAX_NAME or has_control_chars(name):
            v.add("name", f"required, at most {MAX_NAME} printable characters")
        if kind not in KINDS:
            v.add("kind", "required: one of the TestCredentialKind values")
        if not material or len(material.encode()) > MAX_MATERIAL:
            v.add("secret_material", f"required, at most {MAX_MATERIAL} bytes")
        elif any(unicodedata.category(ch) == "Cs" for ch in material):
            v.add("secret_material", "must be valid text")
        if not _check_url(target_base_url):
            v.add("target_base_url", "required: an http(s) URL with a host and no user info, at most 2048 characters")
        v.raise_if_any()
        now = utcnow()
        for _attempt in range(3):
            existing = self.store.find_test_credential(workspace_id, name)
            credential_id = existing.credential_id if existing else tokens.new_key_id()
            sealed = self.ring.seal(
                PURPOSE, workspace_id, credential_id, material.encode(), kek_id=self.primary_kek_id()
            )
            action = "test_credential.replace" if existing else "test_credential.put"
            audit = AuditEvent(
                action=action,
                actor=actor,
                outcome="ok",
                key_id=credential_id,
                workspace_id=workspace_id,
                request_id=request_id,
                detail=f"name={name[:64]} kind={kind} kek_id={sealed.kek_id}",
                time=now,
            )
            if existing is None:
                record = TestCredentialRecord(
                    credential_id=credential_id,
                    workspace_id=workspace_id,
                    name=name,
                    kind=kind,
                    target_base_url=target_base_url,
                    sealed=sealed,
                    create_time=now,
                    update_time=now,
                    created_by=actor,
                    updated_by=actor,
                )
                try:
                    self.store.insert_test_credential(record, audit)
                except NameTaken:
                    continue  # a concurrent put created it: replace that one
                except PrimaryKekMoved:
                    continue  # a rotation made another key primary since: seal again under it
                return record, True
            record = replace(
                existing,
                kind=kind,
                target_base_url=target_base_url,
                sealed=sealed,
                update_time=now,
                updated_by=actor,
            )
            try:
                if self.store.replace_test_credential(record, audit):
                    return record, False
            except PrimaryKekMoved:
                continue
        raise StoreUnavailable("the test credential changed concurrently; retry")

    def get(self, workspace_id: str, credential_id: str) -> TestCredentialRecord:
        v = Violations()
        self._ids(v, workspace_id, credential_id)
        v.raise_if_any()
        return self._get(workspace_id, credential_id)

    def list(self, workspace_id: str, page_size: int, page_token: str) -> tuple[list[TestCredentialRecord], str]:
        v = Violations()
        self._ids(v, workspace_id)
        if page_size < 0:
            v.add("page_size", "must not be negative")
        after = None
        if page_token:
            after = _decode_token(page_token, workspace_id)
            if after is None:
                v.add("page_token", "not a page token of this listing")
        v.raise_if_any()
        size = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
        rows = self.store.list_test_credentials(workspace_id, size + 1, after)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode_token(rows[-1], workspace_id)
        return rows, token

    def delete(self, actor: str, workspace_id: str, credential_id: str, request_id: str = "") -> TestCredentialRecord:
        v = Violations()
        self._ids(v, workspace_id, credential_id)
        v.raise_if_any()
        record = self._get(workspace_id, credential_id)
        audit = AuditEvent(
            action="test_credential.delete",
            actor=actor,
            outcome="ok",
            key_id=credential_id,
            workspace_id=workspace_id,
            request_id=request_id,
            detail=f"name={record.name[:64]}",
        )
        if not self.store.delete_test_credential(credential_id, audit):
            raise TestCredentialNotFound(credential_id)
        return record

    def reveal(
        self,
        actor: str,
        granted: tuple[str, ...] | frozenset[str],
        workspace_id: str,
        credential_id: str,
        reason: str = "",
        request_id: str = "",
    ) -> RevealedTestCredential:
        """The plaintext, for a caller holding ``lab:test_credentials:reveal``. Every outcome is audited."""

        def audit(outcome: str, detail: str = "") -> AuditEvent:
            return AuditEvent(
                action="test_credential.reveal",
                actor=actor,
                outcome=outcome,
                key_id=credential_id if tokens.is_key_id(credential_id) else "",
                workspace_id=workspace_id if WORKSPACE_ID_RE.fullmatch(workspace_id) else "",
                request_id=request_id,
                detail=(detail + (f" reason={reason[:MAX_REASON]}" if reason else "")).strip(),
            )

        if permissions.REVEAL_TEST_CREDENTIALS not in granted:
            self.audit.write_audit_many([audit("denied", "missing internal permission")])
            raise PermissionRequired(permissions.REVEAL_TEST_CREDENTIALS)
        v = Violations()
        self._ids(v, workspace_id, credential_id)
        if len(reason) > MAX_REASON or has_control_chars(reason):
            v.add("reason", f"at most {MAX_REASON} printable characters")
        try:
            v.raise_if_any()
            record = self._get(workspace_id, credential_id)
            plaintext = self.ring.open(PURPOSE, workspace_id, credential_id, record.sealed)
        except AuthError as error:
            self.audit.write_audit_many([audit("failed", error.reason)])
            raise
        self.store.record_reveal(credential_id, utcnow(), audit("ok", f"kek_id={record.sealed.kek_id}"))
        return RevealedTestCredential(record, plaintext.decode())

    # -- KEK rotation -------------------------------------------------------------------

    def rewrap_all(
        self, actor: str, batch_size: int = 100, max_rows: int | None = None, kek_id: str | None = None
    ) -> RewrapReport:
        """Re-wrap every record's data key under ``kek_id`` (default: the agreed primary), row by row.

        Each row is one compare-and-set update, so an interrupted run leaves
        every row readable (under its old or its new KEK) and running again
        resumes where it stopped. ``max_rows`` bounds one run (for throttled
        rotation). Rows that cannot be unwrapped are reported, never skipped
        silently, and do not stop the others. ``remaining`` counts the records
        under any other key once the run ends; a run started after ``kek_id``
        became the agreed primary that reports none left leaves none (no write
        under another key commits after that change).
        """
        primary = kek_id or self.primary_kek_id()
        done = 0
        failed: list[str] = []
        while max_rows is None or done < max_rows:
            limit = batch_size if max_rows is None else min(batch_size, max_rows - done)
            rows = [
                r
                for r in self.store.test_credentials_not_under(primary, limit + len(failed))
                if r.credential_id not in failed
            ]
            if not rows:
                break
            moved = False
            for record in rows[:limit]:
                try:
                    sealed = self.ring.rewrap(
                        PURPOSE, record.workspace_id, record.credential_id, record.sealed, kek_id=primary
                    )
                except AuthError:
                    failed.append(record.credential_id)
                    continue
                try:
                    if self.store.swap_wrapping(record.credential_id, record.sealed, sealed):
                        done += 1
                except PrimaryKekMoved:
                    moved = True  # another rotation took over: it re-wraps to its own key
                    break
            if moved:
                break
        counts = self.store.count_test_credentials_by_kek()
        remaining = sum(n for kek_id, n in counts.items() if kek_id != primary)
        self.audit.write_audit_many(
            [
                AuditEvent(
                    action="kek.rotate",
                    actor=actor,
                    outcome="ok" if remaining == 0 else ("failed" if failed else "partial"),
                    detail=f"primary={primary} rewrapped={done} remaining={remaining} unreadable={len(failed)}",
                )
            ]
        )
        return RewrapReport(primary, done, remaining, tuple(failed))


def _encode_token(last: TestCredentialRecord, workspace_id: str) -> str:
    body = json.dumps({"w": workspace_id, "t": last.create_time.isoformat(), "c": last.credential_id})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_token(token: str, workspace_id: str) -> tuple[datetime, str] | None:
    if len(token) > 512:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if body["w"] != workspace_id or not tokens.is_key_id(body["c"]):
            return None
        when = datetime.fromisoformat(body["t"])
        return (when, body["c"]) if when.tzinfo else None
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
