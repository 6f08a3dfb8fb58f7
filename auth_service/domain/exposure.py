"""Exposed server keys, and the workspace settings that decide what happens to them.

A server API credential presented at ``VerifyWidgetKey`` or
``VerifyConversationSecret`` was shipped to a browser. The guard refuses it
(the caller gets the usual wrong-kind refusal, with ``exposed=true`` in the
error metadata), records the exposure (shown by ``GetKey``), audits it, and
revokes the key at once when the workspace's ``auto_revoke_exposed`` setting
is on (off by default).

Only a credential that really verifies is marked: a made-up ``woes_sk_``
string cannot get someone else's key marked or revoked. The guard runs on the
refusal path only, never for a valid widget key, and writes once per key and
process, so presenting an exposed key in a loop costs no database writes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from auth_service.domain import tokens
from auth_service.domain.audit import AuditEvent
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import AuthError, CredentialUnknown, Violations
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import StoredState
from auth_service.domain.ports import ExposureStore
from auth_service.domain.tokens import KeyKind
from auth_service.domain.validation import WORKSPACE_ID_RE


@dataclass(frozen=True)
class Exposure:
    """A server key seen where only browser credentials belong."""

    key_id: str
    workspace_id: str
    first_time: datetime
    last_time: datetime
    where: str
    auto_revoked: bool = False


@dataclass(frozen=True)
class WorkspaceSettings:
    workspace_id: str
    auto_revoke_exposed: bool = False
    update_time: datetime | None = None
    updated_by: str = ""


log = logging.getLogger(__name__)


class WorkspacePolicy:
    """The small per-workspace settings store (admin RPCs Get/UpdateWorkspaceSettings)."""

    def __init__(self, store: ExposureStore):
        self.store = store

    @staticmethod
    def _check(workspace_id: str) -> None:
        if not WORKSPACE_ID_RE.fullmatch(workspace_id):
            v = Violations()
            v.add("workspace_id", "required, 1 to 64 characters of A-Z a-z 0-9 _ -")
            v.raise_if_any()

    def get(self, workspace_id: str) -> WorkspaceSettings:
        self._check(workspace_id)
        return self.store.get_workspace_settings(workspace_id)

    def update(
        self, actor: str, workspace_id: str, auto_revoke_exposed: bool, request_id: str = ""
    ) -> WorkspaceSettings:
        self._check(workspace_id)
        now = utcnow()
        settings = WorkspaceSettings(workspace_id, bool(auto_revoke_exposed), now, actor)
        audit = AuditEvent(
            action="workspace_settings.update",
            actor=actor,
            outcome="ok",
            workspace_id=workspace_id,
            request_id=request_id,
            detail=f"auto_revoke_exposed={str(settings.auto_revoke_exposed).lower()}",
            time=now,
        )
        return self.store.put_workspace_settings(settings, audit)


class ExposureGuard:
    def __init__(self, manager: CredentialManager, store: ExposureStore, policy: WorkspacePolicy):
        self.manager = manager
        self.store = store
        self.policy = policy
        self._lock = threading.Lock()
        self._handled: set[str] = set()

    def check_browser_credential(self, token: str, where: str, refusal: AuthError) -> AuthError:
        """Called when ``token`` was refused at a browser-facing RPC with ``refusal``.

        If it is a real server key, handles the exposure and returns ``refusal``
        with ``exposed=true`` metadata; otherwise returns ``refusal`` unchanged.
        """
        try:
            cred = tokens.parse(token)
        except AuthError:
            return refusal
        if cred.kind is not KeyKind.SERVER:
            return refusal
        try:
            entry = self.manager.lookup(cred)  # cached, constant-time; refuses made-up secrets
        except CredentialUnknown:
            return refusal
        self._handle(entry.key_id, entry.workspace_id, entry.stored_state, where)
        refusal.metadata.update({"exposed": "true", "key_id": entry.key_id})
        refusal.message = (
            "a server API credential was presented to a browser-facing RPC: it has been marked exposed; "
            "rotate or revoke it and never ship server credentials to browsers"
        )
        refusal.args = (refusal.message,)
        return refusal

    def _handle(self, key_id: str, workspace_id: str, stored_state: StoredState, where: str) -> None:
        with self._lock:
            if key_id in self._handled:
                return
            self._handled.add(key_id)
        now = utcnow()
        try:
            first = self.store.mark_exposed(
                key_id,
                workspace_id,
                where,
                now,
                AuditEvent(
                    action="key.exposed",
                    actor=f"system:{where}",
                    outcome="refused",
                    key_id=key_id,
                    workspace_id=workspace_id,
                    detail=f"server key presented at {where}",
                    time=now,
                ),
            )
            log.warning("server key %s was presented at %s: marked exposed", key_id, where, extra={"key_id": key_id})
            if not first or stored_state is StoredState.REVOKED:
                return
            if self.policy.store.get_workspace_settings(workspace_id).auto_revoke_exposed:
                self.manager.revoke(f"system:{where}", key_id, f"exposed: presented at {where}")
                self.store.set_auto_revoked(key_id)
                log.warning("revoked exposed server key %s (workspace policy auto_revoke_exposed)", key_id)
        except AuthError:
            with self._lock:  # let a later presentation try again
                self._handled.discard(key_id)
            raise

    def exposure(self, key_id: str) -> Exposure | None:
        return self.store.get_exposure(key_id)


__all__ = ["ExposureGuard", "WorkspacePolicy"]
