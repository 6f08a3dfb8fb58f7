"""Wiring of the rest of the credential model: conversation secrets, test
credentials, audit listing, failure counting and exposure handling, over one
SQL store, one pepper and one KEK ring."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from auth_service.app.config import ConfigError, Settings
from auth_service.domain.audit import AuditLog, FailureCounter
from auth_service.domain.conversations import ConversationSecrets
from auth_service.domain.envelope import PASSPHRASE_PARAMS, KekConfigError, KekRing, load_kek_ring
from auth_service.domain.exposure import ExposureGuard, WorkspacePolicy
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import utcnow
from auth_service.domain.test_credentials import LabCredentials
from auth_service.store.keys import SqlStore
from auth_service.store.model_tables import ModelStore


@dataclass
class ModelServices:
    store: ModelStore
    ring: KekRing
    kek_note: str
    policy: WorkspacePolicy
    exposure: ExposureGuard
    conversations: ConversationSecrets
    lab: LabCredentials
    audit: AuditLog
    failures: FailureCounter

    def start(self) -> None:
        self.failures.start()

    def stop(self) -> None:
        self.failures.stop()


def load_ring(settings: Settings, store: ModelStore, *, create: bool) -> tuple[KekRing, str]:
    """The KEK ring from settings (see :func:`auth_service.envelope.load_kek_ring`); the development
    KEK file only where :meth:`Settings.development_keys_allowed` allows it."""
    settings.require_keys(pepper=False)

    def salt_for(kek_id: str):
        return store.kek_derivation(kek_id, secrets.token_bytes(16), PASSPHRASE_PARAMS, utcnow())

    try:
        return load_kek_ring(
            kek=settings.kek,
            kek_file=settings.kek_file,
            passphrase=settings.kek_passphrase,
            passphrase_salt=salt_for,
            dev_dir=Path(settings.dev_key_dir()) if settings.development_keys_allowed() else None,
            create=create,
        )
    except KekConfigError as exc:
        raise ConfigError(str(exc)) from None


def build_model(settings: Settings, manager: CredentialManager, sql: SqlStore, *, create: bool = True) -> ModelServices:
    store = ModelStore(sql)
    ring, note = load_ring(settings, store, create=create)
    policy = WorkspacePolicy(store)
    exposure = ExposureGuard(manager, store, policy)
    return ModelServices(
        store=store,
        ring=ring,
        kek_note=note,
        policy=policy,
        exposure=exposure,
        conversations=ConversationSecrets(manager, store, manager.pepper, exposure),
        lab=LabCredentials(store, ring),
        audit=AuditLog(store),
        failures=FailureCounter(store, interval=settings.failure_flush),
    )
