"""The tables of the service, on one metadata the migrations target.

Times are stored as integer microseconds since the Unix epoch (UTC), which both engines compare
exactly (:func:`to_us`, :func:`from_us`). Constraints are named so that later migrations can alter
them on SQLite too (batch mode needs names).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from auth_service.domain.audit import AuditEvent

# Named constraints: later migrations can alter them on SQLite too (batch mode needs names).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


_BigInt = BigInteger().with_variant(Integer, "sqlite")


keys = Table(
    "keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("display_name", String(100), nullable=False, default=""),
    Column("scopes", Text, nullable=False, default="[]"),
    Column("allowed_origins", Text, nullable=False, default="[]"),
    Column("digest", LargeBinary(32), nullable=False),
    Column("pepper_id", String(32), nullable=False),
    Column("hint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("create_us", BigInteger, nullable=False),
    Column("expire_us", BigInteger),
    Column("revoke_us", BigInteger),
    Column("revoke_reason", String(200), nullable=False, default=""),
    Column("rotated_to", String(32), nullable=False, default=""),
    Column("rotated_from", String(32), nullable=False, default=""),
    Column("grace_expire_us", BigInteger),
    Column("request_id", String(64), unique=True),
    Column("request_fingerprint", String(64), nullable=False, default=""),
    Column("created_by", String(64), nullable=False, default=""),
    Column("last_used_us", BigInteger),
    Column("use_count", BigInteger, nullable=False, default=0),
    Column("last_caller", String(64), nullable=False, default=""),
)
Index("ix_keys_workspace_create", keys.c.workspace_id, keys.c.create_us, keys.c.key_id)
Index("ix_keys_create", keys.c.create_us, keys.c.key_id)


changes = Table(
    "key_changes",
    metadata,
    Column("seq", _BigInt, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=False),
    Column("change", String(16), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    # Never reuse a sequence number on SQLite, even after pruning empties the table:
    # followers remember the last number they saw. On PostgreSQL the sequence hands numbers out
    # in order (no per-session CACHE): followers rely on a number drawn later being higher.
    sqlite_autoincrement=True,
)


audit_events = Table(
    "audit_events",
    metadata,
    Column("id", _BigInt, primary_key=True, autoincrement=True),
    Column("time_us", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("key_id", String(32), nullable=False, default=""),
    Column("workspace_id", String(64), nullable=False, default=""),
    Column("request_id", String(64), nullable=False, default=""),
    Column("detail", String(500), nullable=False, default=""),
)
Index("ix_audit_key", audit_events.c.key_id, audit_events.c.id)
Index("ix_audit_workspace", audit_events.c.workspace_id, audit_events.c.id)


# -- conversation secrets, test credentials, exposure, settings, KEK derivations ---------

conversation_signing_keys = Table(
    "conversation_signing_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("pepper_id", String(32), nullable=False),
    Column("salt", LargeBinary(32), nullable=False),
    Column("create_us", BigInteger, nullable=False),
    Column("retire_us", BigInteger),
    Column("created_by", String(64), nullable=False, default=""),
)
Index("ix_conv_keys_workspace", conversation_signing_keys.c.workspace_id, conversation_signing_keys.c.create_us)


conversation_revocations = Table(
    "conversation_revocations",
    metadata,
    Column("workspace_id", String(64), nullable=False),
    Column("conversation_id", String(128), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("revoke_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "conversation_id"),
)


test_credentials = Table(
    "test_credentials",
    metadata,
    Column("credential_id", String(32), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("target_base_url", Text, nullable=False),
    Column("kek_id", String(32), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("create_us", BigInteger, nullable=False),
    Column("update_us", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False, default=""),
    Column("updated_by", String(64), nullable=False, default=""),
    Column("reveal_count", BigInteger, nullable=False, default=0),
    Column("last_reveal_us", BigInteger),
    UniqueConstraint("workspace_id", "name", name="uq_test_credentials_workspace_name"),
)
Index("ix_test_credentials_kek", test_credentials.c.kek_id)


key_exposures = Table(
    "key_exposures",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("first_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
    Column("seen_at", String(64), nullable=False),
    Column("auto_revoked", Boolean, nullable=False, default=False),
)


workspace_settings = Table(
    "workspace_settings",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("auto_revoke_exposed", Boolean, nullable=False, default=False),
    Column("update_us", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False, default=""),
)


kek_derivations = Table(
    "kek_derivations",
    metadata,
    Column("kek_id", String(32), primary_key=True),
    Column("salt", LargeBinary(32), nullable=False),
    Column("memory_kib", Integer, nullable=False),
    Column("time_cost", Integer, nullable=False),
    Column("parallelism", Integer, nullable=False),
    Column("create_us", BigInteger, nullable=False),
)


MODEL_TABLES = (
    conversation_signing_keys,
    conversation_revocations,
    test_credentials,
    key_exposures,
    workspace_settings,
    kek_derivations,
)


# Extra indexes of the core's audit table for ListAuditEvents' filters.
AUDIT_INDEXES = (
    Index("ix_audit_action", audit_events.c.action, audit_events.c.id),
    Index("ix_audit_time", audit_events.c.time_us),
)


kek_primary = Table(
    "kek_primary",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("kek_id", String(32), nullable=False),
    Column("update_us", BigInteger, nullable=False),
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_MICRO = timedelta(microseconds=1)


def to_us(value: datetime | None) -> int | None:
    if value is None:
        return None
    return (value - _EPOCH) // _MICRO


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + int(value) * _MICRO


def audit_row(event: AuditEvent) -> dict:
    return {
        "time_us": to_us(event.time),
        "actor": event.actor[:64],
        "action": event.action,
        "outcome": event.outcome,
        "key_id": event.key_id,
        "workspace_id": event.workspace_id,
        "request_id": event.request_id[:64],
        "detail": event.detail[:500],
    }
