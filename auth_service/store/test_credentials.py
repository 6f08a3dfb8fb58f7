"""The SQL driver of :class:`~auth_service.domain.ports.TestCredentialStore`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from auth_service.domain.audit import AuditEvent
from auth_service.domain.envelope import Sealed
from auth_service.domain.ports import (
    NameTaken,
    TestCredentialStore,
)
from auth_service.domain.test_credentials import TestCredentialRecord
from auth_service.store.engine import SqlDatabase
from auth_service.store.kek import hold_primary
from auth_service.store.schema import (
    audit_events,
    audit_row,
    from_us,
    test_credentials,
    to_us,
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


class SqlTestCredentialStore(TestCredentialStore):
    """Sealed API test credentials; every write of a wrapped key holds the agreed primary
    (:func:`auth_service.store.kek.hold_primary`)."""

    def __init__(self, db: SqlDatabase):
        self.db = db

    def get_test_credential(self, credential_id: str) -> TestCredentialRecord | None:
        t = test_credentials
        stmt = select(t).where(t.c.credential_id == credential_id)
        return self.db.reading(
            lambda conn: (lambda row: _test_credential(row) if row else None)(conn.execute(stmt).first())
        )

    def find_test_credential(self, workspace_id: str, name: str) -> TestCredentialRecord | None:
        t = test_credentials
        stmt = select(t).where(t.c.workspace_id == workspace_id, t.c.name == name)
        return self.db.reading(
            lambda conn: (lambda row: _test_credential(row) if row else None)(conn.execute(stmt).first())
        )

    def insert_test_credential(self, record: TestCredentialRecord, audit: AuditEvent) -> None:
        def run(conn: Connection):
            hold_primary(conn, record.sealed.kek_id)
            conn.execute(insert(test_credentials).values(**_test_credential_row(record)))
            conn.execute(insert(audit_events).values(**audit_row(audit)))

        try:
            self.db.writing(run)
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
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return True

        return self.db.writing(run)

    def list_test_credentials(
        self, workspace_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[TestCredentialRecord]:
        t = test_credentials
        stmt = select(t).where(t.c.workspace_id == workspace_id)
        if after is not None:
            us, cid = to_us(after[0]), after[1]
            stmt = stmt.where(or_(t.c.create_us < us, and_(t.c.create_us == us, t.c.credential_id < cid)))
        stmt = stmt.order_by(t.c.create_us.desc(), t.c.credential_id.desc()).limit(limit)
        return self.db.reading(lambda conn: [_test_credential(r) for r in conn.execute(stmt)])

    def delete_test_credential(self, credential_id: str, audit: AuditEvent) -> bool:
        def run(conn: Connection):
            done = conn.execute(delete(test_credentials).where(test_credentials.c.credential_id == credential_id))
            if done.rowcount != 1:
                return False
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return True

        return self.db.writing(run)

    def record_reveal(self, credential_id: str, now: datetime, audit: AuditEvent) -> None:
        t = test_credentials

        def run(conn: Connection):
            conn.execute(
                update(t)
                .where(t.c.credential_id == credential_id)
                .values(reveal_count=t.c.reveal_count + 1, last_reveal_us=to_us(now))
            )
            conn.execute(insert(audit_events).values(**audit_row(audit)))

        self.db.writing(run)

    def test_credentials_not_under(self, kek_id: str, limit: int) -> list[TestCredentialRecord]:
        t = test_credentials
        stmt = select(t).where(t.c.kek_id != kek_id).order_by(t.c.credential_id).limit(limit)
        return self.db.reading(lambda conn: [_test_credential(r) for r in conn.execute(stmt)])

    def count_test_credentials_by_kek(self) -> dict[str, int]:

        t = test_credentials
        stmt = select(t.c.kek_id, func.count()).group_by(t.c.kek_id)
        return self.db.reading(lambda conn: {k: int(n) for k, n in conn.execute(stmt)})

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

        return self.db.writing(run)
