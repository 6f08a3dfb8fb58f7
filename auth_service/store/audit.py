"""The SQL driver of :class:`~auth_service.domain.ports.AuditStore`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from auth_service.domain.audit import AuditEvent, StoredAuditEvent
from auth_service.domain.ports import (
    AuditStore,
)
from auth_service.store.engine import SqlDatabase
from auth_service.store.schema import (
    audit_events,
    audit_row,
    from_us,
    to_us,
)


class SqlAuditStore(AuditStore):
    """The audit trail as listed, and batches of audit rows."""

    def __init__(self, db: SqlDatabase):
        self.db = db

    def write_audit_many(self, events: list[AuditEvent]) -> None:
        if events:
            self.db.writing(lambda conn: conn.execute(insert(audit_events), [audit_row(e) for e in events]))

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

        return self.db.reading(run)
