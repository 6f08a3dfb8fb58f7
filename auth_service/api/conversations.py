"""The conversation history secret RPCs of ``AuthService``."""

from __future__ import annotations

from woes.auth.v1 import conversations_pb2 as cpb

from auth_service.api import convert
from auth_service.api.base import FeatureServicer, log
from auth_service.domain import permissions
from auth_service.domain.errors import AuthError


class ConversationServicer(FeatureServicer):
    """The conversation history secret RPCs of ``AuthService``."""

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
                actor, request.workspace_id, request.conversation_id, request.reason, convert.request_id(context)
            )
            log.info("revoked conversation secrets in workspace %s by %s", request.workspace_id, actor)
            return cpb.RevokeConversationSecretResponse(revocation_count=epoch)

        return self._call(context, "RevokeConversationSecret", run)

    def RotateConversationSigningKey(self, request: cpb.RotateConversationSigningKeyRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            key, retired, until = self._services().conversations.rotate_signing_key(
                actor, request.workspace_id, convert.grace_of(request), convert.request_id(context)
            )
            log.info("rotated the history signing key of workspace %s by %s", request.workspace_id, actor)
            out = cpb.RotateConversationSigningKeyResponse(signing_key_id=key.key_id, retired_keys=retired)
            out.retire_time.FromDatetime(until)
            return out

        return self._call(context, "RotateConversationSigningKey", run)
