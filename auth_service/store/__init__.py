"""Credential storage: an interface and its SQLAlchemy driver."""

from auth_service.domain.ports import Change, CredentialStore, RequestIdTaken, RotateConflict
from auth_service.store.keys import SqlStore

__all__ = ["Change", "CredentialStore", "RequestIdTaken", "RotateConflict", "SqlStore", "open_store"]


def open_store(url: str) -> CredentialStore:
    return SqlStore(url)
