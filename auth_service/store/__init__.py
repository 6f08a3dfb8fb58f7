"""Credential storage: an interface and its SQLAlchemy driver."""

from .interface import Change, CredentialStore, RequestIdTaken, RotateConflict
from .sql import SqlStore

__all__ = ["Change", "CredentialStore", "RequestIdTaken", "RotateConflict", "SqlStore", "open_store"]


def open_store(url: str) -> CredentialStore:
    return SqlStore(url)
