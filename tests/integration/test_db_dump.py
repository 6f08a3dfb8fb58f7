"""A database dump (SQL text of every table) holds no secret: no credential, no plaintext, no key."""

from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res
from woes.auth.v1 import test_credentials_pb2 as tpb

from tests import conftest
from tests.support.services import (
    audit_events,
    dump_database,
    issue,
    leaked_in,
    new_plaintext,
    revealer_md,
    widget_backend_md,
)


def test_dump_holds_no_secret(database_url, pepper):
    srv = conftest.start_live_server(database_url, pepper)
    try:
        server = issue(srv, "ws-1")
        widget = issue(srv, "ws-1", res.KEY_KIND_WIDGET)
        rotated = srv.stub.Rotate(pb.RotateRequest(key_id=server.key.key_id), metadata=srv.admin_md)
        srv.stub.Authenticate(pb.AuthenticateRequest(credential=rotated.secret, caller="svc"))
        conv = srv.stub.IssueConversationSecret(
            cpb.IssueConversationSecretRequest(public_key=widget.secret, conversation_id="c-1"),
            metadata=widget_backend_md(srv),
        )
        srv.stub.RevokeConversationSecret(
            cpb.RevokeConversationSecretRequest(workspace_id="ws-1", conversation_id="c-2"), metadata=srv.admin_md
        )
        plaintexts = [new_plaintext() for _ in range(3)]
        for n, material in enumerate(plaintexts):
            srv.stub.PutTestCredential(
                tpb.PutTestCredentialRequest(
                    workspace_id="ws-1",
                    name=f"cred-{n}",
                    kind=tpb.TEST_CREDENTIAL_KIND_BASIC_AUTH,
                    secret_material=material,
                    target_base_url="https://api.example",
                ),
                metadata=srv.admin_md,
            )
        listed = srv.stub.ListTestCredentials(
            tpb.ListTestCredentialsRequest(workspace_id="ws-1"), metadata=srv.admin_md
        )
        md = revealer_md(srv)
        for c in listed.credentials:
            srv.stub.RevealTestCredential(
                tpb.RevealTestCredentialRequest(workspace_id="ws-1", credential_id=c.credential_id), metadata=md
            )
        srv.runtime.usage.flush()
        srv.runtime.services.failures.flush()
        audit_rows = [str(e) for e in audit_events(srv)]
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
    dump = dump_database(database_url)
    for table in ("keys", "audit_events", "test_credentials", "conversation_signing_keys"):
        assert table in dump, f"the dump misses table {table}: it would prove nothing"
    for secret in [server.secret, widget.secret, rotated.secret, conv.secret, srv.admin_secret, *plaintexts]:
        assert secret in conftest.MINTED | conftest.OTHER_SECRETS
    assert leaked_in([dump + rotated.secret]), "the scan cannot see a secret: it would prove nothing"
    assert not leaked_in([dump]), "the database dump holds a secret"
    assert not leaked_in(audit_rows), "an audit row holds a secret"
