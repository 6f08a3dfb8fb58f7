"""Admin and internal credentials over a real server: no RPC creates a credential with powers its
caller lacks, and each internal credential calls exactly the RPCs its permissions name."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res
from woes.auth.v1 import test_credentials_pb2 as tpb

from auth_service.domain import permissions, tokens
from auth_service.domain.errors import InvalidArgument, KeyNotRotatable
from auth_service.domain.keys import service_keys
from auth_service.domain.tokens import KeyKind
from tests.support.rich_errors import call_error
from tests.support.rpc import assert_error, fail, issue
from tests.support.services import audit_events, new_plaintext

UNAUTH, DENIED, PRECONDITION = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
)
REVEAL, CONVERSATIONS = permissions.REVEAL_TEST_CREDENTIALS, permissions.ISSUE_CONVERSATION_SECRETS


def md(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def internal(srv, *held: str, name: str = "internal service"):
    return service_keys.bootstrap_internal(srv.manager, name, held)


def successors_of(srv, key_id: str) -> list[str]:
    """Every key (of any kind) made by rotating ``key_id``."""
    return [k.key_id for k in srv.manager.store.list_keys("", 10_000, None) if k.rotated_from == key_id]


# -- Rotate: admin and internal keys are not rotated through the API ----------------------------


def test_rotate_refuses_admin_and_internal_keys(live_server):
    srv = live_server
    own_id = srv.admin_secret[8:20]
    other_admin = srv.manager.bootstrap_admin("another admin")
    runner = internal(srv, REVEAL, name="test runner")
    for key_id, kind in ((own_id, "admin"), (other_admin.key.key_id, "admin"), (runner.key.key_id, "internal")):
        err = fail(srv.stub.Rotate, pb.RotateRequest(key_id=key_id), metadata=srv.admin_md)
        assert_error(err, PRECONDITION, "KEY_NOT_ROTATABLE")
        assert err.metadata == {"key_id": key_id, "kind": kind}
        assert "service-keys rotate" in err.message
        assert successors_of(srv, key_id) == []
    # The refused rotations changed nothing: every one of those keys still works as before.
    assert srv.stub.GetKey(pb.GetKeyRequest(key_id=own_id), metadata=md(other_admin.secret)).key.state == (
        res.KEY_STATE_ACTIVE
    )
    workspace_key = issue(srv)
    rotated = srv.stub.Rotate(pb.RotateRequest(key_id=workspace_key.key.key_id), metadata=srv.admin_md)
    assert rotated.key.rotated_from == workspace_key.key.key_id  # workspace keys rotate as before


def test_a_stolen_admin_key_cannot_outlive_its_revocation(live_server):
    srv = live_server
    stolen = srv.manager.bootstrap_admin("test runner's admin key")
    # The thief tries to mint a successor before the key is revoked ...
    err = fail(srv.stub.Rotate, pb.RotateRequest(key_id=stolen.key.key_id), metadata=md(stolen.secret))
    assert_error(err, PRECONDITION, "KEY_NOT_ROTATABLE")
    # ... so revoking the stolen key ends it: nothing it made lives on.
    srv.stub.Revoke(pb.RevokeRequest(key_id=stolen.key.key_id, reason="leaked"), metadata=srv.admin_md)
    assert successors_of(srv, stolen.key.key_id) == []
    again = fail(srv.stub.Rotate, pb.RotateRequest(key_id=stolen.key.key_id), metadata=md(stolen.secret))
    assert_error(again, UNAUTH, "CREDENTIAL_REVOKED")  # a revoked key cannot rotate itself back alive
    by_another = fail(srv.stub.Rotate, pb.RotateRequest(key_id=stolen.key.key_id), metadata=srv.admin_md)
    assert_error(by_another, PRECONDITION, "KEY_NOT_ROTATABLE")
    assert successors_of(srv, stolen.key.key_id) == []


# -- ListKeys / GetKey show no admin or internal permission -------------------------------------


def test_list_keys_never_shows_admin_or_internal_keys(live_server_any_db):
    srv = live_server_any_db
    runner = internal(srv, REVEAL, name="test runner")
    extra_admin = srv.manager.bootstrap_admin("ops laptop")
    workspace_keys = [issue(srv, workspace_id="ws-a").key.key_id, issue(srv, workspace_id="ws-b").key.key_id]
    seen, token = [], ""
    while True:  # the whole listing, one key per page
        page = srv.stub.ListKeys(pb.ListKeysRequest(page_size=1, page_token=token), metadata=srv.admin_md)
        seen.extend(page.keys)
        token = page.next_page_token
        if not token:
            break
    assert sorted(k.key_id for k in seen) == sorted(workspace_keys)
    assert {k.kind for k in seen} == {res.KEY_KIND_SERVER}
    assert not any(scope.startswith(("lab:", "widget:")) for k in seen for scope in k.scopes)
    # One by its id: state and metadata for the admin tooling, never the permissions.
    got = srv.stub.GetKey(pb.GetKeyRequest(key_id=runner.key.key_id), metadata=srv.admin_md).key
    assert (got.kind, got.state, got.display_name, list(got.scopes)) == (
        res.KEY_KIND_INTERNAL,
        res.KEY_STATE_ACTIVE,
        "test runner",
        [],
    )
    assert got.hint == runner.key.hint and not got.workspace_id
    assert srv.stub.GetKey(pb.GetKeyRequest(key_id=extra_admin.key.key_id), metadata=srv.admin_md).key.kind == (
        res.KEY_KIND_ADMIN
    )
    # The local command's view lists them all, with their permissions.
    listed = {k.key_id: k for k in service_keys.list_service_keys(srv.manager.store)}
    assert listed[runner.key.key_id].scopes == (REVEAL,)
    assert {srv.admin_secret[8:20], extra_admin.key.key_id} <= set(listed)
    assert not set(workspace_keys) & set(listed)


def test_revoke_takes_power_from_admin_and_internal_keys(live_server):
    srv = live_server
    backend = internal(srv, CONVERSATIONS, name="widget backend")
    widget = issue(srv, kind=res.KEY_KIND_WIDGET)
    request = cpb.IssueConversationSecretRequest(public_key=widget.secret, conversation_id="c-1")
    assert srv.stub.IssueConversationSecret(request, metadata=md(backend.secret)).secret
    revoked = srv.stub.Revoke(pb.RevokeRequest(key_id=backend.key.key_id, reason="moved"), metadata=srv.admin_md).key
    assert (revoked.kind, revoked.state, list(revoked.scopes)) == (res.KEY_KIND_INTERNAL, res.KEY_STATE_REVOKED, [])
    err = fail(srv.stub.IssueConversationSecret, request, metadata=md(backend.secret))
    assert_error(err, UNAUTH, "CREDENTIAL_REVOKED")  # at once, in the serving process

    other_admin = srv.manager.bootstrap_admin("leaving operator")
    srv.stub.Revoke(pb.RevokeRequest(key_id=other_admin.key.key_id), metadata=srv.admin_md)
    err = fail(srv.stub.ListKeys, pb.ListKeysRequest(), metadata=md(other_admin.secret))
    assert_error(err, UNAUTH, "CREDENTIAL_REVOKED")
    # An admin may revoke itself too: taking power away needs no power the caller lacks.
    own_id = srv.admin_secret[8:20]
    srv.stub.Revoke(pb.RevokeRequest(key_id=own_id, reason="retired"), metadata=srv.admin_md)
    assert_error(fail(srv.stub.ListKeys, pb.ListKeysRequest(), metadata=srv.admin_md), UNAUTH, "CREDENTIAL_REVOKED")
    revokes = [e for e in srv.runtime.store.list_audit(limit=100) if e.action == "key.revoke"]
    assert {(e.key_id, e.actor) for e in revokes} == {
        (backend.key.key_id, f"admin:{own_id}"),
        (other_admin.key.key_id, f"admin:{own_id}"),
        (own_id, f"admin:{own_id}"),
    }


# -- IssueConversationSecret needs widget:conversation_secrets:issue ----------------------------


def test_issue_conversation_secret_needs_an_internal_credential_holding_its_permission(live_server):
    srv = live_server
    widget = issue(srv, workspace_id="ws-c", kind=res.KEY_KIND_WIDGET)
    request = cpb.IssueConversationSecretRequest(public_key=widget.secret, conversation_id="conv-42")
    call = srv.stub.IssueConversationSecret

    err = fail(call, request)  # anyone who knows the public widget key and a conversation id
    assert_error(err, UNAUTH, "INTERNAL_CREDENTIAL_REQUIRED")
    assert err.metadata == {"permission": CONVERSATIONS}
    err = fail(call, request, metadata=srv.admin_md)  # a plain admin credential
    assert_error(err, DENIED, "INTERNAL_PERMISSION_REQUIRED")
    assert err.metadata == {"permission": CONVERSATIONS, "kind": "admin"}
    runner = internal(srv, REVEAL, name="test runner")
    err = fail(call, request, metadata=md(runner.secret))  # an internal key lacking the permission
    assert_error(err, DENIED, "INTERNAL_PERMISSION_REQUIRED")
    assert err.metadata == {"permission": CONVERSATIONS}
    for other in (issue(srv).secret, widget.secret):
        assert_error(fail(call, request, metadata=md(other)), DENIED, "INTERNAL_PERMISSION_REQUIRED")
    made_up = tokens.mint(KeyKind.INTERNAL).token
    assert_error(fail(call, request, metadata=md(made_up)), UNAUTH, "CREDENTIAL_UNKNOWN")

    backend = internal(srv, CONVERSATIONS, name="widget backend")
    issued = call(request, metadata=md(backend.secret))
    assert (issued.workspace_id, issued.conversation_id) == ("ws-c", "conv-42")
    verified = srv.stub.VerifyConversationSecret(
        cpb.VerifyConversationSecretRequest(public_key=widget.secret, conversation_id="conv-42", secret=issued.secret)
    )
    assert verified.widget_key_id == widget.key.key_id
    # One credential may hold both permissions.
    both = internal(srv, CONVERSATIONS, REVEAL)
    assert call(request, metadata=md(both.secret)).secret == issued.secret


# -- RevealTestCredential needs lab:test_credentials:reveal ------------------------------------


def test_reveal_needs_an_internal_credential_holding_its_permission(live_server):
    srv = live_server
    material = new_plaintext()
    put = srv.stub.PutTestCredential(
        tpb.PutTestCredentialRequest(
            workspace_id="ws-lab",
            name="crm",
            kind=tpb.TEST_CREDENTIAL_KIND_BEARER_TOKEN,
            secret_material=material,
            target_base_url="https://api.customer.example",
        ),
        metadata=srv.admin_md,
    )
    request = tpb.RevealTestCredentialRequest(workspace_id="ws-lab", credential_id=put.credential.credential_id)
    call = srv.stub.RevealTestCredential
    assert_error(fail(call, request), UNAUTH, "INTERNAL_CREDENTIAL_REQUIRED")
    err = fail(call, request, metadata=srv.admin_md)
    assert_error(err, DENIED, "INTERNAL_PERMISSION_REQUIRED")
    assert err.metadata == {"permission": REVEAL, "kind": "admin"}
    backend = internal(srv, CONVERSATIONS)
    assert_error(fail(call, request, metadata=md(backend.secret)), DENIED, "INTERNAL_PERMISSION_REQUIRED")

    runner = internal(srv, REVEAL, name="test runner")
    assert call(request, metadata=md(runner.secret)).secret_material == material
    events = audit_events(srv, action="test_credential.reveal")
    assert [(e.outcome, e.actor) for e in reversed(events)] == [
        ("denied", f"internal:{backend.key.key_id}"),
        ("ok", f"internal:{runner.key.key_id}"),
    ]


# -- an internal credential is no admin and no API credential ----------------------------------


def test_an_internal_credential_calls_nothing_but_its_rpcs(live_server):
    srv = live_server
    both = internal(srv, *permissions.RPC_OF)
    workspace_key = issue(srv)
    admin_calls = {
        "IssueKey": pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_SERVER, scopes=["messages:read"]),
        "Rotate": pb.RotateRequest(key_id=workspace_key.key.key_id),
        "Revoke": pb.RevokeRequest(key_id=workspace_key.key.key_id),
        "GetKey": pb.GetKeyRequest(key_id=both.key.key_id),
        "ListKeys": pb.ListKeysRequest(),
        "PutTestCredential": tpb.PutTestCredentialRequest(workspace_id="ws-1"),
        "ListTestCredentials": tpb.ListTestCredentialsRequest(workspace_id="ws-1"),
        "RevokeConversationSecret": cpb.RevokeConversationSecretRequest(workspace_id="ws-1", conversation_id="c"),
    }
    for method, request in admin_calls.items():
        err = fail(getattr(srv.stub, method), request, metadata=md(both.secret))
        assert_error(err, DENIED, "NOT_ADMIN_CREDENTIAL")
        assert err.metadata.get("kind") == "internal", method
    err = fail(srv.stub.Authenticate, pb.AuthenticateRequest(credential=both.secret))
    assert_error(err, DENIED, "CREDENTIAL_KIND_NOT_ACCEPTED")
    err = fail(srv.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=both.secret))
    assert_error(err, DENIED, "CREDENTIAL_NOT_WIDGET_KEY")
    # IssueKey makes server and widget keys only.
    err = fail(
        srv.stub.IssueKey, pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_INTERNAL), metadata=srv.admin_md
    )
    assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in err.violations] == ["kind"]
    assert srv.stub.GetKey(pb.GetKeyRequest(key_id=workspace_key.key.key_id), metadata=srv.admin_md).key.state == (
        res.KEY_STATE_ACTIVE
    )


# -- the local commands' domain: bootstrap and rotation with database access ------------------


def test_bootstrap_internal_needs_known_permissions(live_server):
    manager = live_server.manager
    for held in ((), ("lab:everything",), (REVEAL, "admin")):
        with pytest.raises(InvalidArgument) as refused:
            service_keys.bootstrap_internal(manager, "x", held)
        assert [v.field for v in refused.value.violations] == ["permissions"]
    made = service_keys.bootstrap_internal(manager, "lab", (REVEAL, REVEAL))
    assert made.secret.startswith(f"woes_ik_{made.key.key_id}_") and made.key.scopes == (REVEAL,)
    assert (made.key.kind, made.key.workspace_id) == (KeyKind.INTERNAL, "")
    event = audit_events(live_server, key_id=made.key.key_id)[0]
    assert (event.action, event.actor, event.detail) == (
        "internal.bootstrap",
        "bootstrap-internal",
        f"permissions={REVEAL}",
    )
    assert made.secret not in str(event)
    # Admin keys carry no permission at all.
    assert live_server.manager.bootstrap_admin("plain").key.scopes == ()


def test_service_key_rotation_with_database_access(live_server):
    srv = live_server
    backend = internal(srv, CONVERSATIONS, name="widget backend")
    widget = issue(srv, kind=res.KEY_KIND_WIDGET)
    request = cpb.IssueConversationSecretRequest(public_key=widget.secret, conversation_id="c-1")
    new, old = service_keys.rotate_service_key(srv.manager, backend.key.key_id, grace=timedelta())
    assert (new.key.kind, new.key.scopes, new.key.display_name) == (
        KeyKind.INTERNAL,
        (CONVERSATIONS,),
        "widget backend",
    )
    assert new.key.rotated_from == old.key_id == backend.key.key_id
    assert srv.stub.IssueConversationSecret(request, metadata=md(new.secret)).secret
    err = call_error(srv.stub.IssueConversationSecret, request, metadata=md(backend.secret))
    assert (err.code, err.reason) == (UNAUTH, "CREDENTIAL_EXPIRED")  # no grace: the old one stops at once
    event = audit_events(srv, action="service_key.rotate")[0]
    assert (event.key_id, event.actor) == (backend.key.key_id, "cli:service-keys-rotate")
    # Workspace keys are the Rotate RPC's, not this command's.
    with pytest.raises(KeyNotRotatable):
        service_keys.rotate_service_key(srv.manager, issue(srv).key.key_id, grace=timedelta())
