"""Tables and queries of conversation secrets, test credentials, exposure,
workspace settings, KEK derivation salts and audit listing.

They share :data:`auth_service.store.sql.metadata` and the engines of a
:class:`~auth_service.store.sql.SqlStore`, so every change and its audit event
are written in one transaction, exactly as for keys.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from auth_service.domain.envelope import Sealed
from auth_service.domain.keys.records import AuditEvent
from auth_service.domain.records import Exposure, SigningKey, StoredAuditEvent, TestCredentialRecord, WorkspaceSettings
from auth_service.store.kek import KekPrimaryQueries, hold_primary
from auth_service.store.keys import SqlStore, _audit_row, audit_events, from_us, metadata, to_us

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


def _signing_key(row) -> SigningKey:
    return SigningKey(
        key_id=row.key_id,
        workspace_id=row.workspace_id,
        pepper_id=row.pepper_id,
        salt=bytes(row.salt),
        create_time=from_us(row.create_us),
        retire_time=from_us(row.retire_us),
        created_by=row.created_by,
    )


def _test_credential(row) -> TestCredentialRecord:
    return TestCredentialRecord(
        credential_id=row.credential_id,
        workspace_id=row.workspace_id,
        name=row.name,
        kind=row.kind,
        target_base_url=row.target_base_url,
        sealed=Sealed(row.kek_id, bytes(row.wrapped_key), bytes(row.ciphertext)),
        create_time=from_us(row.create_us),
        update_time=from_us(row.update_us),
        created_by=row.created_by,
        updated_by=row.updated_by,
        reveal_count=row.reveal_count,
        last_reveal_time=from_us(row.last_reveal_us),
    )


def _test_credential_row(r: TestCredentialRecord) -> dict:
    return {
        "credential_id": r.credential_id,
        "workspace_id": r.workspace_id,
        "name": r.name,
        "kind": r.kind,
        "target_base_url": r.target_base_url,
        "kek_id": r.sealed.kek_id,
        "wrapped_key": r.sealed.wrapped_key,
        "ciphertext": r.sealed.ciphertext,
        "create_us": to_us(r.create_time),
        "update_us": to_us(r.update_time),
        "created_by": r.created_by[:64],
        "updated_by": r.updated_by[:64],
        "reveal_count": r.reveal_count,
        "last_reveal_us": to_us(r.last_reveal_time),
    }


class NameTaken(Exception):
    """A concurrent put created a test credential with the same name first."""


class ModelStore(KekPrimaryQueries):
    """Queries over the tables above, through a :class:`SqlStore`'s engines.

    Every write of a wrapped key raises :class:`~auth_service.store.kek_sql.PrimaryKekMoved`
    unless it is sealed under the agreed primary key-encryption key."""

    def __init__(self, sql: SqlStore):
        # The tables come from the migrations (auth_service/migrations), applied by
        # SqlStore(create_schema=True) or `woes-auth db upgrade`; never created here.
        self.sql = sql

    def _reading(self, fn):
        return self.sql._reading(fn)

    def _writing(self, fn):
        return self.sql._writing(fn)

    # -- conversation signing keys and revocations ---------------------------------

    def current_signing_key(self, workspace_id: str) -> SigningKey | None:
        t = conversation_signing_keys
        stmt = (
            select(t)
            .where(t.c.workspace_id == workspace_id, t.c.retire_us.is_(None))
            .order_by(t.c.create_us.desc(), t.c.key_id.desc())
            .limit(1)
        )
        return self._reading(lambda conn: (lambda row: _signing_key(row) if row else None)(conn.execute(stmt).first()))

    def create_signing_key(self, key: SigningKey, audit: AuditEvent) -> SigningKey:
        """Insert the first signing key of a workspace, unless one appeared meanwhile (then return that)."""
        t = conversation_signing_keys

        def run(conn: Connection):
            row = (
                conn.execute(
                    select(t)
                    .where(t.c.workspace_id == key.workspace_id, t.c.retire_us.is_(None))
                    .order_by(t.c.create_us.desc(), t.c.key_id.desc())
                    .limit(1)
                )
            ).first()
            if row is not None:
                return _signing_key(row)
            conn.execute(insert(t).values(**self._signing_row(key)))
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return key

        return self._writing(run)

    @staticmethod
    def _signing_row(key: SigningKey) -> dict:
        return {
            "key_id": key.key_id,
            "workspace_id": key.workspace_id,
            "pepper_id": key.pepper_id,
            "salt": key.salt,
            "create_us": to_us(key.create_time),
            "retire_us": to_us(key.retire_time),
            "created_by": key.created_by[:64],
        }

    def rotate_signing_keys(self, new: SigningKey, retire_time: datetime, audit: AuditEvent) -> int:
        """Retire every signing key of the workspace at ``retire_time`` (never later than
        an earlier retirement) and make ``new`` current, in one transaction."""
        t = conversation_signing_keys
        retire_us = to_us(retire_time)

        def run(conn: Connection):
            done = conn.execute(
                update(t)
                .where(
                    t.c.workspace_id == new.workspace_id,
                    or_(t.c.retire_us.is_(None), t.c.retire_us > retire_us),
                )
                .values(retire_us=retire_us)
            )
            conn.execute(insert(t).values(**self._signing_row(new)))
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return done.rowcount

        return self._writing(run)

    def verification_lookup(
        self, key_id: str, workspace_id: str, conversation_id: str
    ) -> tuple[SigningKey | None, int]:
        """The signing key named by a secret and the conversation's revocation epoch: two primary-key reads."""
        t, r = conversation_signing_keys, conversation_revocations

        def run(conn: Connection):
            row = conn.execute(select(t).where(t.c.key_id == key_id)).first()
            epoch = conn.execute(
                select(r.c.epoch).where(r.c.workspace_id == workspace_id, r.c.conversation_id == conversation_id)
            ).scalar()
            return (_signing_key(row) if row else None), int(epoch or 0)

        return self._reading(run)

    def revoke_conversation(self, workspace_id: str, conversation_id: str, now: datetime, audit: AuditEvent) -> int:
        """Advance the conversation's epoch (invalidating every secret issued for it). Returns the new epoch."""
        r = conversation_revocations

        def run(conn: Connection):
            where = and_(r.c.workspace_id == workspace_id, r.c.conversation_id == conversation_id)
            done = conn.execute(update(r).where(where).values(epoch=r.c.epoch + 1, revoke_us=to_us(now)))
            if done.rowcount == 0:
                conn.execute(
                    insert(r).values(
                        workspace_id=workspace_id, conversation_id=conversation_id, epoch=1, revoke_us=to_us(now)
                    )
                )
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return int(conn.execute(select(r.c.epoch).where(where)).scalar())

        try:
            return self._writing(run)
        except sa_exc.IntegrityError:
            # A concurrent first revocation inserted the row: now it exists, so the update path applies.
            return self._writing(run)

    # -- test credentials ---------------------------------------------------------

    def get_test_credential(self, credential_id: str) -> TestCredentialRecord | None:
        t = test_credentials
        stmt = select(t).where(t.c.credential_id == credential_id)
        return self._reading(
            lambda conn: (lambda row: _test_credential(row) if row else None)(conn.execute(stmt).first())
        )

    def find_test_credential(self, workspace_id: str, name: str) -> TestCredentialRecord | None:
        t = test_credentials
        stmt = select(t).where(t.c.workspace_id == workspace_id, t.c.name == name)
        return self._reading(
            lambda conn: (lambda row: _test_credential(row) if row else None)(conn.execute(stmt).first())
        )

    def insert_test_credential(self, record: TestCredentialRecord, audit: AuditEvent) -> None:
        def run(conn: Connection):
            hold_primary(conn, record.sealed.kek_id)
            conn.execute(insert(test_credentials).values(**_test_credential_row(record)))
            conn.execute(insert(audit_events).values(**_audit_row(audit)))

        try:
            self._writing(run)
        except sa_exc.IntegrityError:
            raise NameTaken() from None

    def replace_test_credential(self, record: TestCredentialRecord, audit: AuditEvent) -> bool:
        """Replace kind, URL and material of an existing record. False if it vanished meanwhile."""
        t = test_credentials

        def run(conn: Connection):
            hold_primary(conn, record.sealed.kek_id)
            done = conn.execute(
                update(t)
                .where(t.c.credential_id == record.credential_id, t.c.workspace_id == record.workspace_id)
                .values(
                    kind=record.kind,
                    target_base_url=record.target_base_url,
                    kek_id=record.sealed.kek_id,
                    wrapped_key=record.sealed.wrapped_key,
                    ciphertext=record.sealed.ciphertext,
                    update_us=to_us(record.update_time),
                    updated_by=record.updated_by[:64],
                )
            )
            if done.rowcount != 1:
                return False
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return True

        return self._writing(run)

    def list_test_credentials(
        self, workspace_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[TestCredentialRecord]:
        t = test_credentials
        stmt = select(t).where(t.c.workspace_id == workspace_id)
        if after is not None:
            us, cid = to_us(after[0]), after[1]
            stmt = stmt.where(or_(t.c.create_us < us, and_(t.c.create_us == us, t.c.credential_id < cid)))
        stmt = stmt.order_by(t.c.create_us.desc(), t.c.credential_id.desc()).limit(limit)
        return self._reading(lambda conn: [_test_credential(r) for r in conn.execute(stmt)])

    def delete_test_credential(self, credential_id: str, audit: AuditEvent) -> bool:
        def run(conn: Connection):
            done = conn.execute(delete(test_credentials).where(test_credentials.c.credential_id == credential_id))
            if done.rowcount != 1:
                return False
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return True

        return self._writing(run)

    def record_reveal(self, credential_id: str, now: datetime, audit: AuditEvent) -> None:
        t = test_credentials

        def run(conn: Connection):
            conn.execute(
                update(t)
                .where(t.c.credential_id == credential_id)
                .values(reveal_count=t.c.reveal_count + 1, last_reveal_us=to_us(now))
            )
            conn.execute(insert(audit_events).values(**_audit_row(audit)))

        self._writing(run)

    def test_credentials_not_under(self, kek_id: str, limit: int) -> list[TestCredentialRecord]:
        t = test_credentials
        stmt = select(t).where(t.c.kek_id != kek_id).order_by(t.c.credential_id).limit(limit)
        return self._reading(lambda conn: [_test_credential(r) for r in conn.execute(stmt)])

    def count_test_credentials_by_kek(self) -> dict[str, int]:
        from sqlalchemy import func

        t = test_credentials
        stmt = select(t.c.kek_id, func.count()).group_by(t.c.kek_id)
        return self._reading(lambda conn: {k: int(n) for k, n in conn.execute(stmt)})

    def swap_wrapping(self, credential_id: str, old: Sealed, new: Sealed) -> bool:
        """Compare-and-set of one row's wrapped key: only if it still holds ``old``."""
        t = test_credentials
        stmt = (
            update(t)
            .where(
                t.c.credential_id == credential_id,
                t.c.kek_id == old.kek_id,
                t.c.wrapped_key == old.wrapped_key,
                t.c.ciphertext == old.ciphertext,
            )
            .values(kek_id=new.kek_id, wrapped_key=new.wrapped_key)
        )

        def run(conn: Connection) -> bool:
            hold_primary(conn, new.kek_id)
            return conn.execute(stmt).rowcount == 1

        return self._writing(run)

    # -- exposure and workspace settings ----------------------------------------------

    def mark_exposed(self, key_id: str, workspace_id: str, where: str, now: datetime, audit: AuditEvent) -> bool:
        """Record an exposure (audited when first recorded). True if this call recorded it first."""
        t = key_exposures

        def run(conn: Connection):
            done = conn.execute(update(t).where(t.c.key_id == key_id).values(last_us=to_us(now)))
            if done.rowcount == 1:
                return False
            conn.execute(
                insert(t).values(
                    key_id=key_id,
                    workspace_id=workspace_id,
                    first_us=to_us(now),
                    last_us=to_us(now),
                    seen_at=where[:64],
                    auto_revoked=False,
                )
            )
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return True

        try:
            return self._writing(run)
        except sa_exc.IntegrityError:
            return False

    def set_auto_revoked(self, key_id: str) -> None:
        t = key_exposures
        self._writing(lambda conn: conn.execute(update(t).where(t.c.key_id == key_id).values(auto_revoked=True)))

    def get_exposure(self, key_id: str) -> Exposure | None:
        t = key_exposures

        def run(conn: Connection):
            row = conn.execute(select(t).where(t.c.key_id == key_id)).first()
            if row is None:
                return None
            return Exposure(
                key_id=row.key_id,
                workspace_id=row.workspace_id,
                first_time=from_us(row.first_us),
                last_time=from_us(row.last_us),
                where=row.seen_at,
                auto_revoked=bool(row.auto_revoked),
            )

        return self._reading(run)

    def get_workspace_settings(self, workspace_id: str) -> WorkspaceSettings:
        t = workspace_settings

        def run(conn: Connection):
            row = conn.execute(select(t).where(t.c.workspace_id == workspace_id)).first()
            if row is None:
                return WorkspaceSettings(workspace_id)
            return WorkspaceSettings(
                workspace_id, bool(row.auto_revoke_exposed), from_us(row.update_us), row.updated_by
            )

        return self._reading(run)

    def put_workspace_settings(self, settings: WorkspaceSettings, audit: AuditEvent) -> WorkspaceSettings:
        t = workspace_settings
        values = {
            "auto_revoke_exposed": settings.auto_revoke_exposed,
            "update_us": to_us(settings.update_time),
            "updated_by": settings.updated_by[:64],
        }

        def run(conn: Connection):
            done = conn.execute(update(t).where(t.c.workspace_id == settings.workspace_id).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(t).values(workspace_id=settings.workspace_id, **values))
            conn.execute(insert(audit_events).values(**_audit_row(audit)))
            return settings

        try:
            return self._writing(run)
        except sa_exc.IntegrityError:
            return self._writing(run)

    # -- KEK derivation salts ------------------------------------------------------------

    def kek_derivation(self, kek_id: str, new_salt: bytes, params: dict, now: datetime) -> tuple[bytes, dict]:
        """The stored salt and argon2id parameters of ``kek_id``, storing the given ones if none exist."""
        t = kek_derivations

        def read(conn: Connection):
            row = conn.execute(select(t).where(t.c.kek_id == kek_id)).first()
            if row is None:
                return None
            return bytes(row.salt), {
                "memory_kib": row.memory_kib,
                "time_cost": row.time_cost,
                "parallelism": row.parallelism,
            }

        found = self._reading(read)
        if found is not None:
            return found

        def write(conn: Connection):
            existing = read(conn)
            if existing is not None:
                return existing
            conn.execute(insert(t).values(kek_id=kek_id, salt=new_salt, create_us=to_us(now), **params))
            return new_salt, dict(params)

        try:
            return self._writing(write)
        except sa_exc.IntegrityError:
            return self._reading(read)

    # -- audit ------------------------------------------------------------------------

    def write_audit_many(self, events: list[AuditEvent]) -> None:
        if events:
            self._writing(lambda conn: conn.execute(insert(audit_events), [_audit_row(e) for e in events]))

    def list_audit_events(
        self,
        *,
        workspace_id: str = "",
        key_id: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredAuditEvent]:
        a = audit_events
        stmt = select(a)
        if workspace_id:
            stmt = stmt.where(a.c.workspace_id == workspace_id)
        if key_id:
            stmt = stmt.where(a.c.key_id == key_id)
        if action:
            stmt = stmt.where(a.c.action == action)
        if start is not None:
            stmt = stmt.where(a.c.time_us >= to_us(start))
        if end is not None:
            stmt = stmt.where(a.c.time_us < to_us(end))
        if before_id is not None:
            stmt = stmt.where(a.c.id < before_id)
        stmt = stmt.order_by(a.c.id.desc()).limit(limit)

        def run(conn: Connection):
            return [
                StoredAuditEvent(
                    id=int(r.id),
                    time=from_us(r.time_us),
                    actor=r.actor,
                    action=r.action,
                    outcome=r.outcome,
                    key_id=r.key_id,
                    workspace_id=r.workspace_id,
                    request_id=r.request_id,
                    detail=r.detail,
                )
                for r in conn.execute(stmt)
            ]

        return self._reading(run)
