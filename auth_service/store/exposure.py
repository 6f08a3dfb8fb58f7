"""The SQL driver of :class:`~auth_service.domain.ports.ExposureStore`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from auth_service.domain.audit import AuditEvent
from auth_service.domain.exposure import Exposure, WorkspaceSettings
from auth_service.domain.ports import (
    ExposureStore,
)
from auth_service.store.engine import SqlDatabase
from auth_service.store.schema import (
    audit_events,
    audit_row,
    from_us,
    key_exposures,
    to_us,
    workspace_settings,
)


class SqlExposureStore(ExposureStore):
    """Exposed server keys and workspace settings."""

    def __init__(self, db: SqlDatabase):
        self.db = db

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
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return True

        try:
            return self.db.writing(run)
        except sa_exc.IntegrityError:
            return False

    def set_auto_revoked(self, key_id: str) -> None:
        t = key_exposures
        self.db.writing(lambda conn: conn.execute(update(t).where(t.c.key_id == key_id).values(auto_revoked=True)))

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

        return self.db.reading(run)

    def get_workspace_settings(self, workspace_id: str) -> WorkspaceSettings:
        t = workspace_settings

        def run(conn: Connection):
            row = conn.execute(select(t).where(t.c.workspace_id == workspace_id)).first()
            if row is None:
                return WorkspaceSettings(workspace_id)
            return WorkspaceSettings(
                workspace_id, bool(row.auto_revoke_exposed), from_us(row.update_us), row.updated_by
            )

        return self.db.reading(run)

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
            conn.execute(insert(audit_events).values(**audit_row(audit)))
            return settings

        try:
            return self.db.writing(run)
        except sa_exc.IntegrityError:
            return self.db.writing(run)
