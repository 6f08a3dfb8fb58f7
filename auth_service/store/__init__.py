"""SQL drivers of the domain's ports (:mod:`auth_service.domain.ports`), the schema, migrations, LISTEN.

One :class:`SqlStore` per database holds the engines (:class:`~auth_service.store.engine.SqlDatabase`)
and is the driver of the key store; the drivers of the other aggregates share its engines, so
every change and its audit event are written in one transaction.
"""

from auth_service.store.audit import SqlAuditStore
from auth_service.store.conversations import SqlConversationStore
from auth_service.store.engine import SqlDatabase
from auth_service.store.exposure import SqlExposureStore
from auth_service.store.kek import SqlKekStore
from auth_service.store.keys import SqlStore
from auth_service.store.test_credentials import SqlTestCredentialStore

__all__ = [
    "SqlAuditStore",
    "SqlConversationStore",
    "SqlDatabase",
    "SqlExposureStore",
    "SqlKekStore",
    "SqlStore",
    "SqlTestCredentialStore",
]
