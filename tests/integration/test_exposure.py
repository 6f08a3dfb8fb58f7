"""Server keys presented to browser-facing RPCs: refused, marked exposed, audited, revoked by policy."""

import grpc
from woes.auth.v1 import audit_pb2 as apb
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import tokens
from tests.support.services import Errors, audit_events, issue, leaked_in


def _get(srv, key_id):
    return srv.stub.GetKey(pb.GetKeyRequest(key_id=key_id), metadata=srv.admin_md)


def test_exposed_at_verify_widget_key(live_server_any_db):
    srv = live_server_any_db
    errors = Errors()
    key = issue(srv, "ws-1")
    assert not _get(srv, key.key.key_id).HasField("exposure")
    for _ in range(5):
        err = errors(srv.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=key.secret))
        assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CREDENTIAL_NOT_WIDGET_KEY")
        assert err.metadata["exposed"] == "true" and err.metadata["key_id"] == key.key.key_id
    exposure = _get(srv, key.key.key_id).exposure
    assert exposure.exposed and exposure.seen_at == "VerifyWidgetKey" and not exposure.auto_revoked
    events = audit_events(srv, action="key.exposed")
    assert [(e.key_id, e.workspace_id, e.outcome) for e in events] == [(key.key.key_id, "ws-1", "refused")]
    # policy off (the default): the key still authenticates where it belongs
    assert srv.stub.Authenticate(pb.AuthenticateRequest(credential=key.secret)).principal.key_id == key.key.key_id
    assert not leaked_in(errors.texts() + [str(e) for e in audit_events(srv)])


def test_made_up_server_key_marks_nothing(live_server_any_db):
    srv = live_server_any_db
    errors = Errors()
    real = issue(srv, "ws-1")
    fake = tokens.mint(tokens.KeyKind.SERVER, real.key.key_id).token  # right key id, wrong secret
    err = errors(srv.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=fake))
    assert err.reason == "CREDENTIAL_NOT_WIDGET_KEY" and "exposed" not in err.metadata
    assert not _get(srv, real.key.key_id).HasField("exposure")
    assert audit_events(srv, action="key.exposed") == []


def test_auto_revoke_policy_at_verify_conversation_secret(live_server_any_db):
    srv = live_server_any_db
    errors = Errors()
    got = srv.stub.GetWorkspaceSettings(apb.GetWorkspaceSettingsRequest(workspace_id="ws-1"), metadata=srv.admin_md)
    assert not got.settings.auto_revoke_exposed  # off by default
    srv.stub.UpdateWorkspaceSettings(
        apb.UpdateWorkspaceSettingsRequest(workspace_id="ws-1", auto_revoke_exposed=True), metadata=srv.admin_md
    )
    widget = issue(srv, "ws-1", res.KEY_KIND_WIDGET)
    in_key_field = issue(srv, "ws-1")
    in_secret_field = issue(srv, "ws-1")
    err = errors(
        srv.stub.VerifyConversationSecret,
        cpb.VerifyConversationSecretRequest(public_key=in_key_field.secret, conversation_id="c1", secret="x"),
    )
    assert err.reason == "CREDENTIAL_NOT_WIDGET_KEY" and err.metadata["exposed"] == "true"
    err = errors(
        srv.stub.VerifyConversationSecret,
        cpb.VerifyConversationSecretRequest(
            public_key=widget.secret, conversation_id="c1", secret=in_secret_field.secret
        ),
    )
    assert err.reason == "CREDENTIAL_KIND_NOT_ACCEPTED" and err.metadata["exposed"] == "true"
    for key in (in_key_field, in_secret_field):
        shown = _get(srv, key.key.key_id)
        assert shown.key.state == res.KEY_STATE_REVOKED and shown.exposure.auto_revoked
        assert shown.exposure.seen_at == "VerifyConversationSecret"
        err = errors(srv.stub.Authenticate, pb.AuthenticateRequest(credential=key.secret))
        assert err.reason == "CREDENTIAL_REVOKED"
    actions = [e.action for e in audit_events(srv, workspace_id="ws-1")]
    assert actions.count("key.exposed") == 2 and "workspace_settings.update" in actions
    assert actions.count("key.revoke") == 2
    # another workspace keeps the default
    other = issue(srv, "ws-2")
    errors(srv.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=other.secret))
    assert _get(srv, other.key.key_id).key.state == res.KEY_STATE_ACTIVE
    assert not leaked_in(errors.texts() + [str(e) for e in audit_events(srv)])


def test_valid_widget_key_path_writes_nothing(live_server):
    srv = live_server
    widget = issue(srv, "ws-1", res.KEY_KIND_WIDGET)
    srv.stub.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=widget.secret))  # warm the cache
    # The change feed and the usage writer query the store on their own clock: stop them so that
    # the count is the verification path's alone.
    srv.runtime.feed.stop()
    srv.runtime.usage.stop()
    before = srv.runtime.store.query_count
    for _ in range(50):
        srv.stub.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=widget.secret))
    assert srv.runtime.store.query_count == before
