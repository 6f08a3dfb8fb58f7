"""The SQL driver of :class:`~auth_service.domain.ports.ConversationStore`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from auth_service.domain.audit import AuditEvent
from auth_service.domain.conversations import SigningKey
from auth_service.domain.ports import (
    ConversationStore,
)
from auth_service.store.engine import SqlDatabase
from auth_service.store.schema import (
    audit_events,
    audit_row,
    conversation_revocations,
    conversation_signing_keys,
    from_us,
    to_us,
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


class SqlConversationStore(ConversationStore):
    """Signing keys and revocation epochs of conversation history secrets."""

    def __init__(self, db: SqlDatabase):
        self.db = db

    def current_signing_key(self, workspace_id: str) -> SigningKey | None:
        t = conversation_signing_keys
        stmt = (
            select(t)
            .where(t.c.workspace_id == workspace_id, t.c.retire_us.is_(None))
            .order_by(t.c.create_us.desc(), t.c.key_id.desc())
            .limit(1)
        )
        return self.db.reading(
            lambda conn: (lambda row: _signing_key(row) if row else None)(conn.execute(stmt).first())
        )

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
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return key

        return self.db.writing(run)

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
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return done.rowcount

        return self.db.writing(run)

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

        return self.db.reading(run)

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
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return int(conn.execute(select(r.c.epoch).where(where)).scalar())

        try:
            return self.db.writing(run)
        except sa_exc.IntegrityError:
            # A concurrent first revocation inserted the row: now it exists, so the update path applies.
            return self.db.writing(run)
