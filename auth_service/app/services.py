"""Wiring of the domain services: the credential manager, and conversation secrets, test
credentials, audit listing, failure counting and exposure handling over the SQL drivers of their
ports, one pepper and one KEK ring."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from auth_service.app.config import Settings
from auth_service.cache.verified import VerifiedCache
from auth_service.domain.audit import AuditLog
from auth_service.domain.clock import utcnow
from auth_service.domain.conversations import ConversationSecrets
from auth_service.domain.crypto import Pepper
from auth_service.domain.envelope import PASSPHRASE_PARAMS, KekConfigError, KekRing, load_kek_ring
from auth_service.domain.errors import ConfigError
from auth_service.domain.exposure import ExposureGuard, WorkspacePolicy
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.ports import KekStore, KeyStore
from auth_service.domain.test_credentials import TestCredentials
from auth_service.store import (
    SqlAuditStore,
    SqlConversationStore,
    SqlDatabase,
    SqlExposureStore,
    SqlKekStore,
    SqlTestCredentialStore,
)
from auth_service.sync.failures import FailureCounter
from auth_service.sync.usage import UsageRecorder


@dataclass
class Services:
    """The domain services besides keys, over the SQL drivers of their ports, one pepper and one KEK ring."""

    db: SqlDatabase
    ring: KekRing
    kek_note: str
    policy: WorkspacePolicy
    exposure: ExposureGuard
    conversations: ConversationSecrets
    test_credentials: TestCredentials
    audit: AuditLog
    failures: FailureCounter

    def start(self) -> None:
        self.failures.start()

    def stop(self) -> None:
        self.failures.stop()


def credential_manager(
    store: KeyStore,
    pepper: Pepper,
    cache: VerifiedCache | None = None,
    usage: UsageRecorder | None = None,
    outage_window: float = 60.0,
) -> CredentialManager:
    """A :class:`CredentialManager` over ``store`` with its own cache and usage tally unless given
    (the tally is flushed only if someone starts it: local commands and tests need not)."""
    # "is None", not "or": an empty cache has len() 0 and is falsy.
    return CredentialManager(
        store,
        pepper,
        cache if cache is not None else VerifiedCache(),
        usage if usage is not None else UsageRecorder(store),
        outage_window=outage_window,
    )


def build_test_credentials(db: SqlDatabase, ring: KekRing) -> TestCredentials:
    """The test credential rules over the SQL drivers of ``db``."""
    return TestCredentials(SqlTestCredentialStore(db), SqlKekStore(db), SqlAuditStore(db), ring)


def load_ring(settings: Settings, store: KekStore, *, create: bool) -> tuple[KekRing, str]:
    """The KEK ring from settings (see :func:`auth_service.domain.envelope.load_kek_ring`); the development
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


def build_services(settings: Settings, manager: CredentialManager, db: SqlDatabase, *, create: bool = True) -> Services:
    ring, note = load_ring(settings, SqlKekStore(db), create=create)
    policy = WorkspacePolicy(SqlExposureStore(db))
    exposure = ExposureGuard(manager, policy.store, policy)
    audit = SqlAuditStore(db)
    return Services(
        db=db,
        ring=ring,
        kek_note=note,
        policy=policy,
        exposure=exposure,
        conversations=ConversationSecrets(manager, SqlConversationStore(db), manager.pepper, exposure),
        test_credentials=build_test_credentials(db, ring),
        audit=AuditLog(audit),
        failures=FailureCounter(audit, interval=settings.failure_flush),
    )
