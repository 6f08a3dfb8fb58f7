"""The audit trail and workspace settings RPCs of ``AuthService``."""

from __future__ import annotations

from datetime import UTC

from woes.auth.v1 import audit_pb2 as apb

from auth_service.api import convert
from auth_service.api.base import FeatureServicer, log
from auth_service.domain.errors import FieldViolation, InvalidArgument


class AuditServicer(FeatureServicer):
    """The audit trail and workspace settings RPCs of ``AuthService``."""

    def ListAuditEvents(self, request: apb.ListAuditEventsRequest, context):
        def run():
            self._admin_principal(context)
            try:
                start = request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
                end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
            except (ValueError, OverflowError):
                raise InvalidArgument(FieldViolation("start_time", "not a valid timestamp")) from None
            rows, token = self._services().audit.list(
                workspace_id=request.workspace_id,
                key_id=request.key_id,
                action=request.action,
                start=start,
                end=end,
                page_size=request.page_size,
                page_token=request.page_token,
            )
            return apb.ListAuditEventsResponse(
                events=[convert.audit_event_to_pb(e) for e in rows], next_page_token=token
            )

        return self._call(context, "ListAuditEvents", run)

    def GetWorkspaceSettings(self, request: apb.GetWorkspaceSettingsRequest, context):
        def run():
            self._admin_principal(context)
            return apb.GetWorkspaceSettingsResponse(
                settings=convert.settings_to_pb(self._services().policy.get(request.workspace_id))
            )

        return self._call(context, "GetWorkspaceSettings", run)

    def UpdateWorkspaceSettings(self, request: apb.UpdateWorkspaceSettingsRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            settings = self._services().policy.update(
                actor, request.workspace_id, request.auto_revoke_exposed, convert.request_id(context)
            )
            log.info("updated settings of workspace %s by %s", request.workspace_id, actor)
            return apb.UpdateWorkspaceSettingsResponse(settings=convert.settings_to_pb(settings))

        return self._call(context, "UpdateWorkspaceSettings", run)
