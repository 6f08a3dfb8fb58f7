"""Transport of conversation secrets, test credentials, audit, workspace settings and exposure.

A mixin of :class:`auth_service.rpc.AuthServicer`: it converts messages and
delegates to :class:`auth_service.model.ModelServices`; nothing is decided here.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from woes.auth.v1 import audit_pb2 as apb
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import test_credentials_pb2 as tpb

from auth_service.domain import permissions
from auth_service.domain.errors import AuthError, Category, FieldViolation, InternalError, InvalidArgument
from auth_service.domain.keys.manager import REQUEST_ID_RE
from auth_service.domain.keys.service_keys import authenticate_internal
from auth_service.domain.records import Exposure, StoredAuditEvent, TestCredentialRecord, WorkspaceSettings

log = logging.getLogger("auth_service.rpc")

_TC_KIND_TO_PB = {
    "bearer_token": tpb.TEST_CREDENTIAL_KIND_BEARER_TOKEN,
    "api_key": tpb.TEST_CREDENTIAL_KIND_API_KEY,
    "basic_auth": tpb.TEST_CREDENTIAL_KIND_BASIC_AUTH,
    "oauth_client_secret": tpb.TEST_CREDENTIAL_KIND_OAUTH_CLIENT_SECRET,
    "other": tpb.TEST_CREDENTIAL_KIND_OTHER,
}
_TC_KIND_FROM_PB = {v: k for k, v in _TC_KIND_TO_PB.items()}
# The refusals counted as failed authentications (ModelRpcMixin.count_failure).
COUNTED_FAILURES = (Category.UNAUTHENTICATED, Category.PERMISSION_DENIED)


def _set_time(field, value) -> None:
    if value is not None:
        field.FromDatetime(value)


def test_credential_to_pb(r: TestCredentialRecord) -> tpb.TestCredential:
    """Metadata only: the sealed material never leaves the domain."""
    out = tpb.TestCredential(
        credential_id=r.credential_id,
        workspace_id=r.workspace_id,
        name=r.name,
        kind=_TC_KIND_TO_PB.get(r.kind, tpb.TEST_CREDENTIAL_KIND_UNSPECIFIED),
        target_base_url=r.target_base_url,
        created_by=r.created_by,
        updated_by=r.updated_by,
        reveal_count=r.reveal_count,
        kek_id=r.sealed.kek_id,
    )
    _set_time(out.create_time, r.create_time)
    _set_time(out.update_time, r.update_time)
    _set_time(out.last_reveal_time, r.last_reveal_time)
    return out


test_credential_to_pb.__test__ = False  # type: ignore[attr-defined]


def audit_event_to_pb(e: StoredAuditEvent) -> apb.AuditEvent:
    out = apb.AuditEvent(
        id=e.id,
        actor=e.actor,
        action=e.action,
        outcome=e.outcome,
        key_id=e.key_id,
        workspace_id=e.workspace_id,
        request_id=e.request_id,
        detail=e.detail,
    )
    _set_time(out.time, e.time)
    return out


def exposure_to_pb(e: Exposure) -> apb.KeyExposure:
    out = apb.KeyExposure(exposed=True, seen_at=e.where, auto_revoked=e.auto_revoked)
    _set_time(out.first_exposed_time, e.first_time)
    _set_time(out.last_exposed_time, e.last_time)
    return out


def settings_to_pb(s: WorkspaceSettings) -> apb.WorkspaceSettings:
    out = apb.WorkspaceSettings(
        workspace_id=s.workspace_id, auto_revoke_exposed=s.auto_revoke_exposed, updated_by=s.updated_by
    )
    _set_time(out.update_time, s.update_time)
    return out


def _grace(request) -> timedelta | None:
    if not request.HasField("grace_period"):
        return None
    d = request.grace_period
    if d.seconds < 0 or d.nanos < 0:
        return timedelta(seconds=-1)
    return timedelta(seconds=min(d.seconds, 10**9), microseconds=d.nanos // 1000)


class ModelRpcMixin:
    """RPCs of the rest of the credential model. Expects ``self.manager`` and ``self.model``."""

    model = None

    # -- plumbing ------------------------------------------------------------------

    def _services(self):
        if self.model is None:
            raise InternalError("this server was built without the credential model services")
        return self.model

    def _internal_principal(self, context, method: str, permission: str, *, check_permission: bool = True):
        """The verified internal credential of an internal RPC (see
        :func:`auth_service.service_keys.authenticate_internal`); a refusal is counted."""
        from auth_service.api.keys import _bearer

        try:
            return authenticate_internal(self.manager, _bearer(context), permission, check_permission=check_permission)
        except AuthError as error:
            self.count_failure(method, error)
            raise

    def _admin_principal(self, context):
        from auth_service.api.keys import _bearer

        try:
            return self.manager.authenticate_admin(_bearer(context))
        except AuthError as error:
            self.count_failure("admin", error)
            raise

    @staticmethod
    def _request_id(context) -> str:
        for name, value in context.invocation_metadata() or ():
            if name == "x-request-id" and isinstance(value, str):
                if not REQUEST_ID_RE.fullmatch(value):
                    raise InvalidArgument(
                        FieldViolation("x-request-id", "at most 64 characters of A-Z a-z 0-9 _ . : -")
                    )
                return value
        return ""

    def count_failure(self, method: str, error: AuthError) -> None:
        """Count a refused authentication (aggregated audit rows, never one row per failure)."""
        if self.model is not None and error.category in COUNTED_FAILURES:
            self.model.failures.record(method, error.reason, error.metadata.get("key_id", ""))

    def on_widget_refusal(self, token: str, error: AuthError) -> AuthError:
        """Exposure handling for VerifyWidgetKey's wrong-kind refusals (never runs for valid widget keys)."""
        if self.model is not None and error.reason == "CREDENTIAL_NOT_WIDGET_KEY":
            error = self.model.exposure.check_browser_credential(token, "VerifyWidgetKey", error)
        self.count_failure("VerifyWidgetKey", error)
        return error

    def exposure_fields(self, key_id: str) -> dict:
        if self.model is None:
            return {}
        exposure = self.model.exposure.exposure(key_id)
        return {"exposure": exposure_to_pb(exposure)} if exposure else {}

    def _call(self, context, name: str, fn):
        from auth_service.api.keys import abort

        try:
            return fn()
        except AuthError as error:
            log.info("%s refused: %s", name, error.reason, extra={"method": name, "code": error.reason})
            return abort(context, error)

    # -- conversation secrets ---------------------------------------------------------

    def IssueConversationSecret(self, request: cpb.IssueConversationSecretRequest, context):
        def run():
            self._internal_principal(context, "IssueConversationSecret", permissions.ISSUE_CONVERSATION_SECRETS)
            issued = self._services().conversations.issue(request.public_key, request.conversation_id, request.origin)
            return cpb.IssueConversationSecretResponse(
                secret=issued.secret,
                workspace_id=issued.workspace_id,
                conversation_id=issued.conversation_id,
                signing_key_id=issued.signing_key_id,
            )

        return self._call(context, "IssueConversationSecret", run)

    def VerifyConversationSecret(self, request: cpb.VerifyConversationSecretRequest, context):
        def run():
            try:
                ok = self._services().conversations.verify(
                    request.public_key, request.origin, request.conversation_id, request.secret
                )
            except AuthError as error:
                self.count_failure("VerifyConversationSecret", error)
                raise
            return cpb.VerifyConversationSecretResponse(
                workspace_id=ok.workspace_id,
                conversation_id=ok.conversation_id,
                widget_key_id=ok.widget_key_id,
                signing_key_id=ok.signing_key_id,
            )

        return self._call(context, "VerifyConversationSecret", run)

    def RevokeConversationSecret(self, request: cpb.RevokeConversationSecretRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            epoch = self._services().conversations.revoke(
                actor, request.workspace_id, request.conversation_id, request.reason, self._request_id(context)
            )
            log.info("revoked conversation secrets in workspace %s by %s", request.workspace_id, actor)
            return cpb.RevokeConversationSecretResponse(revocation_count=epoch)

        return self._call(context, "RevokeConversationSecret", run)

    def RotateConversationSigningKey(self, request: cpb.RotateConversationSigningKeyRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            key, retired, until = self._services().conversations.rotate_signing_key(
                actor, request.workspace_id, _grace(request), self._request_id(context)
            )
            log.info("rotated the history signing key of workspace %s by %s", request.workspace_id, actor)
            out = cpb.RotateConversationSigningKeyResponse(signing_key_id=key.key_id, retired_keys=retired)
            out.retire_time.FromDatetime(until)
            return out

        return self._call(context, "RotateConversationSigningKey", run)

    # -- test credentials -------------------------------------------------------------

    def PutTestCredential(self, request: tpb.PutTestCredentialRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            record, created = self._services().lab.put(
                actor,
                request.workspace_id,
                request.name,
                _TC_KIND_FROM_PB.get(request.kind, ""),
                request.secret_material,
                request.target_base_url,
                self._request_id(context),
            )
            log.info(
                "%s test credential %s in workspace %s by %s",
                "stored" if created else "replaced",
                record.credential_id,
                record.workspace_id,
                actor,
            )
            return tpb.PutTestCredentialResponse(credential=test_credential_to_pb(record), created=created)

        return self._call(context, "PutTestCredential", run)

    def GetTestCredential(self, request: tpb.GetTestCredentialRequest, context):
        def run():
            self._admin_principal(context)
            record = self._services().lab.get(request.workspace_id, request.credential_id)
            return tpb.GetTestCredentialResponse(credential=test_credential_to_pb(record))

        return self._call(context, "GetTestCredential", run)

    def ListTestCredentials(self, request: tpb.ListTestCredentialsRequest, context):
        def run():
            self._admin_principal(context)
            rows, token = self._services().lab.list(request.workspace_id, request.page_size, request.page_token)
            return tpb.ListTestCredentialsResponse(
                credentials=[test_credential_to_pb(r) for r in rows], next_page_token=token
            )

        return self._call(context, "ListTestCredentials", run)

    def DeleteTestCredential(self, request: tpb.DeleteTestCredentialRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            record = self._services().lab.delete(
                actor, request.workspace_id, request.credential_id, self._request_id(context)
            )
            log.info("deleted test credential %s by %s", record.credential_id, actor)
            return tpb.DeleteTestCredentialResponse(credential=test_credential_to_pb(record))

        return self._call(context, "DeleteTestCredential", run)

    def RevealTestCredential(self, request: tpb.RevealTestCredentialRequest, context):
        def run():
            principal = self._internal_principal(
                context, "RevealTestCredential", permissions.REVEAL_TEST_CREDENTIALS, check_permission=False
            )
            actor = "internal:" + principal.key_id
            revealed = self._services().lab.reveal(
                actor,
                frozenset(principal.scopes),
                request.workspace_id,
                request.credential_id,
                request.reason,
                self._request_id(context),
            )
            log.info("revealed test credential %s to %s", request.credential_id, actor)
            return tpb.RevealTestCredentialResponse(
                credential=test_credential_to_pb(revealed.record), secret_material=revealed.plaintext
            )

        return self._call(context, "RevealTestCredential", run)

    # -- audit and settings -------------------------------------------------------------

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
            return apb.ListAuditEventsResponse(events=[audit_event_to_pb(e) for e in rows], next_page_token=token)

        return self._call(context, "ListAuditEvents", run)

    def GetWorkspaceSettings(self, request: apb.GetWorkspaceSettingsRequest, context):
        def run():
            self._admin_principal(context)
            return apb.GetWorkspaceSettingsResponse(
                settings=settings_to_pb(self._services().policy.get(request.workspace_id))
            )

        return self._call(context, "GetWorkspaceSettings", run)

    def UpdateWorkspaceSettings(self, request: apb.UpdateWorkspaceSettingsRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            settings = self._services().policy.update(
                actor, request.workspace_id, request.auto_revoke_exposed, self._request_id(context)
            )
            log.info("updated settings of workspace %s by %s", request.workspace_id, actor)
            return apb.UpdateWorkspaceSettingsResponse(settings=settings_to_pb(settings))

        return self._call(context, "UpdateWorkspaceSettings", run)
