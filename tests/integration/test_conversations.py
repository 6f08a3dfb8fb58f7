"""Conversation history secrets: one secret opens one conversation of one workspace, and nothing else."""

import zlib

import grpc
import pytest
from google.protobuf import duration_pb2
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import tokens
from tests.support.services import Errors, audit_events, issue, leaked_in, widget_backend_md


def _issue_secret(srv, public_key, conversation_id, origin=""):
    """IssueConversationSecret as the widget backend calls it (one internal credential per server)."""
    md = getattr(srv, "widget_backend_md", None)
    if md is None:
        md = srv.widget_backend_md = widget_backend_md(srv)
    return srv.stub.IssueConversationSecret(
        cpb.IssueConversationSecretRequest(public_key=public_key, conversation_id=conversation_id, origin=origin),
        metadata=md,
    )


def _verify(srv, public_key, conversation_id, secret, origin=""):
    return srv.stub.VerifyConversationSecret(
        cpb.VerifyConversationSecretRequest(
            public_key=public_key, origin=origin, conversation_id=conversation_id, secret=secret
        )
    )


@pytest.fixture
def world(live_server_any_db):
    """Two workspaces with a widget key each (one restricted to an origin) and a server key."""
    srv = live_server_any_db
    w1 = issue(srv, "ws-a", res.KEY_KIND_WIDGET)
    w1_origin = issue(srv, "ws-a", res.KEY_KIND_WIDGET, allowed_origins=["https://shop.example"])
    w2 = issue(srv, "ws-b", res.KEY_KIND_WIDGET)
    return srv, w1, w1_origin, w2


def test_secret_format_and_round_trip(world):
    srv, w1, _, _ = world
    got = _issue_secret(srv, w1.secret, "conv-1")
    assert got.workspace_id == "ws-a" and got.conversation_id == "conv-1"
    assert got.secret.startswith("woes_cs_") and tokens.TOKEN_REGEX.fullmatch(got.secret)
    assert tokens.parse(got.secret).kind is tokens.KeyKind.CONVERSATION
    assert tokens.parse(got.secret).key_id == got.signing_key_id
    # the published checksum: CRC32 of the body, base62
    body = got.secret[: -tokens.CHECKSUM_LEN]
    assert tokens._base62(zlib.crc32(body.encode()), tokens.CHECKSUM_LEN) == got.secret[-tokens.CHECKSUM_LEN :]
    ok = _verify(srv, w1.secret, "conv-1", got.secret)
    assert (ok.workspace_id, ok.conversation_id, ok.widget_key_id) == ("ws-a", "conv-1", w1.key.key_id)
    assert ok.signing_key_id == got.signing_key_id
    # issuing again (e.g. the widget backend retried) gives the same secret; other conversations differ
    assert _issue_secret(srv, w1.secret, "conv-1").secret == got.secret
    assert _issue_secret(srv, w1.secret, "conv-2").secret != got.secret
    # another widget key of the same workspace opens the same conversation (the secret is workspace-bound)
    assert _verify(srv, world[2].secret, "conv-1", got.secret, origin="https://shop.example").workspace_id == "ws-a"


def test_one_secret_opens_one_conversation_only(world):
    srv, w1, w1_origin, w2 = world
    errors = Errors()
    secret = _issue_secret(srv, w1.secret, "conv-1").secret
    other_ws_secret = _issue_secret(srv, w2.secret, "conv-1").secret

    err = errors(_verify, srv, w1.secret, "conv-2", secret)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CONVERSATION_SECRET_INVALID")

    # the same conversation id in another workspace is another conversation
    err = errors(_verify, srv, w2.secret, "conv-1", secret)
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CONVERSATION_WORKSPACE_MISMATCH")
    err = errors(_verify, srv, w1.secret, "conv-1", other_ws_secret)
    assert err.reason == "CONVERSATION_WORKSPACE_MISMATCH"

    # disallowed or missing origin for a widget key with allowed origins
    secret_o = _issue_secret(srv, w1_origin.secret, "conv-9", origin="https://shop.example").secret
    assert _verify(srv, w1_origin.secret, "conv-9", secret_o, origin="https://shop.example").conversation_id
    err = errors(_verify, srv, w1_origin.secret, "conv-9", secret_o, origin="https://evil.example")
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ORIGIN_NOT_ALLOWED")
    err = errors(_verify, srv, w1_origin.secret, "conv-9", secret_o)
    assert err.reason == "ORIGIN_NOT_ALLOWED"
    err = errors(_issue_secret, srv, w1_origin.secret, "conv-10", origin="https://evil.example")
    assert err.reason == "ORIGIN_NOT_ALLOWED"

    # a forged MAC with a valid checksum, and a signing key id that does not exist
    forged = tokens.assemble(tokens.KeyKind.CONVERSATION, tokens.parse(secret).key_id, "A" * tokens.SECRET_LEN).token
    assert errors(_verify, srv, w1.secret, "conv-1", forged).reason == "CONVERSATION_SECRET_INVALID"
    unknown = tokens.assemble(tokens.KeyKind.CONVERSATION, "Z" * 12, secret[21:64]).token
    assert errors(_verify, srv, w1.secret, "conv-1", unknown).reason == "CREDENTIAL_UNKNOWN"
    assert errors(_verify, srv, w1.secret, "conv-1", secret[:-1] + "x").reason == "CREDENTIAL_MALFORMED"

    # the secret in the public key's place, or a widget key in the secret's place
    assert errors(_verify, srv, secret, "conv-1", secret).reason == "CREDENTIAL_NOT_WIDGET_KEY"
    assert errors(_verify, srv, w1.secret, "conv-1", w1.secret).reason == "CREDENTIAL_KIND_NOT_ACCEPTED"

    # a revoked widget key: its secrets no longer open anything
    srv.stub.Revoke(pb.RevokeRequest(key_id=w1.key.key_id), metadata=srv.admin_md)
    err = errors(_verify, srv, w1.secret, "conv-1", secret)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_REVOKED")
    assert errors(_issue_secret, srv, w1.secret, "conv-3").reason == "CREDENTIAL_REVOKED"

    assert not leaked_in(errors.texts()), "an error message repeats a secret"


def test_secret_never_authenticates_elsewhere(world):
    srv, w1, _, _ = world
    errors = Errors()
    secret = _issue_secret(srv, w1.secret, "conv-1").secret
    err = errors(srv.stub.Authenticate, pb.AuthenticateRequest(credential=secret))
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CREDENTIAL_KIND_NOT_ACCEPTED")
    err = errors(srv.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=secret))
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CREDENTIAL_NOT_WIDGET_KEY")
    md = (("authorization", f"Bearer {secret}"),)
    err = errors(srv.stub.ListKeys, pb.ListKeysRequest(), metadata=md)
    assert err.reason == "NOT_ADMIN_CREDENTIAL"
    err = errors(
        srv.stub.RevokeConversationSecret,
        cpb.RevokeConversationSecretRequest(workspace_id="ws-a", conversation_id="conv-1"),
        metadata=md,
    )
    assert err.reason == "NOT_ADMIN_CREDENTIAL"
    assert not leaked_in(errors.texts())


def test_revoke_one_conversation(world):
    srv, w1, _, _ = world
    errors = Errors()
    s1 = _issue_secret(srv, w1.secret, "conv-1").secret
    s2 = _issue_secret(srv, w1.secret, "conv-2").secret
    got = srv.stub.RevokeConversationSecret(
        cpb.RevokeConversationSecretRequest(workspace_id="ws-a", conversation_id="conv-1", reason="customer asked"),
        metadata=srv.admin_md + (("x-request-id", "req-revoke-1"),),
    )
    assert got.revocation_count == 1
    err = errors(_verify, srv, w1.secret, "conv-1", s1)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CONVERSATION_SECRET_REVOKED")
    assert _verify(srv, w1.secret, "conv-2", s2).conversation_id == "conv-2"
    # a new secret for the revoked conversation works, the old one stays revoked
    s1b = _issue_secret(srv, w1.secret, "conv-1").secret
    assert s1b != s1
    assert _verify(srv, w1.secret, "conv-1", s1b).conversation_id == "conv-1"
    assert errors(_verify, srv, w1.secret, "conv-1", s1).reason == "CONVERSATION_SECRET_REVOKED"
    events = audit_events(srv, action="conversation.revoke")
    assert [(e.workspace_id, e.request_id, e.outcome) for e in events] == [("ws-a", "req-revoke-1", "ok")]
    assert "conv-1" in events[0].detail


def test_rotate_signing_key_revokes_all_with_grace(world):
    srv, w1, _, w2 = world
    errors = Errors()
    s1 = _issue_secret(srv, w1.secret, "conv-1").secret
    other = _issue_secret(srv, w2.secret, "conv-1").secret
    rotated = srv.stub.RotateConversationSigningKey(
        cpb.RotateConversationSigningKeyRequest(workspace_id="ws-a", grace_period=duration_pb2.Duration(seconds=600)),
        metadata=srv.admin_md,
    )
    assert rotated.retired_keys == 1
    assert _verify(srv, w1.secret, "conv-1", s1).conversation_id == "conv-1"  # within the grace
    s1_new = _issue_secret(srv, w1.secret, "conv-1")
    assert s1_new.signing_key_id == rotated.signing_key_id and s1_new.secret != s1
    # grace 0: every secret of the workspace stops at once, other workspaces are untouched
    srv.stub.RotateConversationSigningKey(
        cpb.RotateConversationSigningKeyRequest(workspace_id="ws-a", grace_period=duration_pb2.Duration(seconds=0)),
        metadata=srv.admin_md,
    )
    for secret in (s1, s1_new.secret):
        err = errors(_verify, srv, w1.secret, "conv-1", secret)
        assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CONVERSATION_SECRET_REVOKED")
    assert _verify(srv, w2.secret, "conv-1", other).workspace_id == "ws-b"
    assert _verify(srv, w1.secret, "conv-1", _issue_secret(srv, w1.secret, "conv-1").secret).workspace_id == "ws-a"
    err = errors(
        srv.stub.RotateConversationSigningKey,
        cpb.RotateConversationSigningKeyRequest(workspace_id="ws-a", grace_period=duration_pb2.Duration(seconds=-1)),
        metadata=srv.admin_md,
    )
    assert err.reason == "INVALID_ARGUMENT"
    assert [e.action for e in audit_events(srv, workspace_id="ws-a", action="conversation_key.rotate")] == [
        "conversation_key.rotate"
    ] * 2


def test_verification_cost_does_not_grow_with_conversations(world):
    srv, w1, _, _ = world
    secret = _issue_secret(srv, w1.secret, "conv-1").secret
    _verify(srv, w1.secret, "conv-1", secret)  # warm the widget key cache

    def queries_per_verify():
        # The store counts every statement of the process, the change feed's background polls
        # included; those only ever add, so the least of a few verifications is the verify's own cost.
        counts = []
        for _ in range(5):
            before = srv.runtime.store.query_count
            _verify(srv, w1.secret, "conv-1", secret)
            counts.append(srv.runtime.store.query_count - before)
        return min(counts)

    small = queries_per_verify()
    for n in range(150):  # many conversations, many revoked: rows the verification must not scan
        _issue_secret(srv, w1.secret, f"bulk-{n}")
        srv.runtime.services.conversations.revoke("admin:test", "ws-a", f"bulk-{n}")
    assert small <= 3
    assert queries_per_verify() == small


def test_invalid_requests(world):
    srv, w1, _, _ = world
    errors = Errors()
    err = errors(_issue_secret, srv, w1.secret, "")
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT and err.violations[0][0] == "conversation_id"
    err = errors(_issue_secret, srv, w1.secret, "x" * 129)
    assert err.violations[0][0] == "conversation_id"
    err = errors(_verify, srv, w1.secret, "conv-1", "")
    assert ("secret" in [v[0] for v in err.violations]) and err.code is grpc.StatusCode.INVALID_ARGUMENT
    err = errors(
        srv.stub.RevokeConversationSecret,
        cpb.RevokeConversationSecretRequest(workspace_id="", conversation_id="c"),
        metadata=srv.admin_md,
    )
    assert err.violations[0][0] == "workspace_id"


def test_audit_rows_hold_no_secret(world):
    srv, w1, _, _ = world
    _verify(srv, w1.secret, "conv-1", _issue_secret(srv, w1.secret, "conv-1").secret)
    srv.stub.RevokeConversationSecret(
        cpb.RevokeConversationSecretRequest(workspace_id="ws-a", conversation_id="conv-1"), metadata=srv.admin_md
    )
    rows = [str(e) for e in audit_events(srv)]
    assert rows and not leaked_in(rows)
