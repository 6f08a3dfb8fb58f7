"""The API test credential RPCs of ``AuthService``."""

from __future__ import annotations

from woes.auth.v1 import test_credentials_pb2 as tpb

from auth_service.api import convert
from auth_service.api.base import FeatureServicer, log
from auth_service.domain import permissions


class TestCredentialServicer(FeatureServicer):
    """The API test credential RPCs of ``AuthService``."""

    def PutTestCredential(self, request: tpb.PutTestCredentialRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            record, created = self._services().test_credentials.put(
                actor,
                request.workspace_id,
                request.name,
                convert.TC_KIND_FROM_PB.get(request.kind, ""),
                request.secret_material,
                request.target_base_url,
                convert.request_id(context),
            )
            log.info(
                "%s test credential %s in workspace %s by %s",
                "stored" if created else "replaced",
                record.credential_id,
                record.workspace_id,
                actor,
            )
            return tpb.PutTestCredentialResponse(credential=convert.test_credential_to_pb(record), created=created)

        return self._call(context, "PutTestCredential", run)

    def GetTestCredential(self, request: tpb.GetTestCredentialRequest, context):
        def run():
            self._admin_principal(context)
            record = self._services().test_credentials.get(request.workspace_id, request.credential_id)
            return tpb.GetTestCredentialResponse(credential=convert.test_credential_to_pb(record))

        return self._call(context, "GetTestCredential", run)

    def ListTestCredentials(self, request: tpb.ListTestCredentialsRequest, context):
        def run():
            self._admin_principal(context)
            rows, token = self._services().test_credentials.list(
                request.workspace_id, request.page_size, request.page_token
            )
            return tpb.ListTestCredentialsResponse(
                credentials=[convert.test_credential_to_pb(r) for r in rows], next_page_token=token
            )

        return self._call(context, "ListTestCredentials", run)

    def DeleteTestCredential(self, request: tpb.DeleteTestCredentialRequest, context):
        def run():
            actor = "admin:" + self._admin_principal(context).key_id
            record = self._services().test_credentials.delete(
                actor, request.workspace_id, request.credential_id, convert.request_id(context)
            )
            log.info("deleted test credential %s by %s", record.credential_id, actor)
            return tpb.DeleteTestCredentialResponse(credential=convert.test_credential_to_pb(record))

        return self._call(context, "DeleteTestCredential", run)

    def RevealTestCredential(self, request: tpb.RevealTestCredentialRequest, context):
        def run():
            principal = self._internal_principal(
                context, "RevealTestCredential", permissions.REVEAL_TEST_CREDENTIALS, check_permission=False
            )
            actor = "internal:" + principal.key_id
            revealed = self._services().test_credentials.reveal(
                actor,
                frozenset(principal.scopes),
                request.workspace_id,
                request.credential_id,
                request.reason,
                convert.request_id(context),
            )
            log.info("revealed test credential %s to %s", request.credential_id, actor)
            return tpb.RevealTestCredentialResponse(
                credential=convert.test_credential_to_pb(revealed.record), secret_material=revealed.plaintext
            )

        return self._call(context, "RevealTestCredential", run)
