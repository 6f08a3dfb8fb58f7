"""The typed client against a real server: answers, and each typed exception with its reason and metadata."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res
from woes_auth_client import (
    AsyncAuthClient,
    AuthClient,
    AuthError,
    AuthUnavailable,
    CredentialExpired,
    CredentialKindNotAccepted,
    CredentialMalformed,
    CredentialNotWidgetKey,
    CredentialRevoked,
    CredentialUnknown,
    InsufficientScope,
    InvalidArgument,
    OriginNotAllowed,
    PermissionDenied,
    Principal,
    StoreUnavailable,
    Unauthenticated,
    WidgetKeyNotApiCredential,
)

from auth_service.domain import tokens
from tests.conftest import free_port
from tests.support.client import FakeAuthService, issue, revoke, start_switchable_server, status_with_reason
from tests.support.services import widget_backend_md


@pytest.fixture
def client(live_server):
    c = AuthClient(live_server.target, caller="client-tests")
    yield c
    c.close()


def expect(error_cls: type[AuthError], fn, *args, secret: str = "", **kwargs) -> AuthError:
    """Call ``fn``; it must raise exactly ``error_cls``, and no part of the error may hold ``secret``."""
    with pytest.raises(AuthError) as info:
        fn(*args, **kwargs)
    error = info.value
    assert type(error) is error_cls, repr(error)
    if secret:
        for text in (str(error), repr(error), error.message, repr(error.metadata), repr(error.violations)):
            assert secret not in text
        assert error.__cause__ is None and error.__context__ is None
    return error


def test_authenticate_returns_a_principal(live_server, client):
    expire = datetime.now(UTC) + timedelta(days=3)
    issued = issue(
        live_server,
        "ws-answer",
        ["conversations:write", "messages:read"],
        expire_time=timestamp_pb2.Timestamp(seconds=int(expire.timestamp())),
    )
    principal = client.authenticate(issued.secret, ["conversations:read"])
    assert isinstance(principal, Principal)
    assert principal.workspace_id == "ws-answer"
    assert principal.key_id == issued.key.key_id
    assert principal.kind == "server"
    assert set(principal.scopes) == {"conversations:write", "messages:read"}
    assert principal.has_scope("conversations:read") and not principal.has_scope("messages:write")
    assert principal.expire_time is not None and abs(principal.expire_time.timestamp() - int(expire.timestamp())) < 1
    assert issued.secret not in repr(principal)
    assert issued.secret not in repr(client)


def test_unauthenticated_reasons(live_server, client):
    malformed = "woes_sk_" + "x" * 20
    err = expect(CredentialMalformed, client.authenticate, malformed, secret=malformed)
    assert err.code is grpc.StatusCode.UNAUTHENTICATED and err.reason == "CREDENTIAL_MALFORMED"
    assert isinstance(err, Unauthenticated)

    unknown = tokens.mint(tokens.KeyKind.SERVER).token
    err = expect(CredentialUnknown, client.authenticate, unknown, secret=unknown)
    assert err.reason == "CREDENTIAL_UNKNOWN"

    issued = issue(live_server)
    revoke(live_server, issued.key.key_id)
    err = expect(CredentialRevoked, client.authenticate, issued.secret, secret=issued.secret)
    assert err.reason == "CREDENTIAL_REVOKED" and err.metadata["key_id"] == issued.key.key_id

    old = issue(live_server)
    live_server.stub.Rotate(
        pb.RotateRequest(key_id=old.key.key_id, grace_period=duration_pb2.Duration(seconds=0)),
        metadata=live_server.admin_md,
    )
    err = expect(CredentialExpired, client.authenticate, old.secret, secret=old.secret)
    assert err.reason == "CREDENTIAL_EXPIRED"


def test_permission_denied_reasons(live_server, client):
    widget = issue(live_server, kind=res.KEY_KIND_WIDGET, allowed_origins=["https://shop.example"])
    err = expect(WidgetKeyNotApiCredential, client.authenticate, widget.secret, secret=widget.secret)
    assert err.code is grpc.StatusCode.PERMISSION_DENIED and isinstance(err, PermissionDenied)

    err = expect(
        CredentialKindNotAccepted, client.authenticate, live_server.admin_secret, secret=live_server.admin_secret
    )
    assert err.reason == "CREDENTIAL_KIND_NOT_ACCEPTED"

    server_key = issue(live_server, scopes=["conversations:read"])
    err = expect(
        InsufficientScope,
        client.authenticate,
        server_key.secret,
        ["conversations:read", "messages:write", "webhooks:read"],
        secret=server_key.secret,
    )
    assert err.missing == ("messages:write", "webhooks:read")

    err = expect(CredentialNotWidgetKey, client.verify_widget_key, server_key.secret, "https://shop.example")
    assert err.reason == "CREDENTIAL_NOT_WIDGET_KEY"

    assert client.verify_widget_key(widget.secret, "https://shop.example").workspace_id == "ws-1"
    err = expect(
        OriginNotAllowed, client.verify_widget_key, widget.secret, "https://evil.example", secret=widget.secret
    )
    assert err.reason == "ORIGIN_NOT_ALLOWED"


def test_invalid_argument_carries_violations(live_server, client):
    issued = issue(live_server)
    err = expect(InvalidArgument, client.authenticate, issued.secret, ["nope:read"], secret=issued.secret)
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in err.violations] == ["required_scopes"]


def test_store_down_is_store_unavailable_never_unauthenticated(sqlite_url, pepper):
    live, store = start_switchable_server(sqlite_url, pepper)
    client = AuthClient(live.target, retry=None)
    try:
        issued = issue(live)
        store.down.set()
        err = expect(StoreUnavailable, client.authenticate, issued.secret, secret=issued.secret)
        assert err.code is grpc.StatusCode.UNAVAILABLE and err.retryable and isinstance(err, AuthUnavailable)
        store.down.clear()
        assert client.authenticate(issued.secret).key_id == issued.key.key_id
    finally:
        client.close()
        live.channel.close()
        live.runtime.stop(0.5)


def test_unreachable_service_is_auth_unavailable():
    client = AuthClient(f"127.0.0.1:{free_port()}", timeout=5.0)
    try:
        err = expect(AuthUnavailable, client.authenticate, tokens.mint(tokens.KeyKind.SERVER).token)
        assert err.reason == ""
    finally:
        client.close()


def test_async_client_raises_the_same_types(live_server):
    issued = issue(live_server, scopes=["messages:read"])
    revoked = issue(live_server)
    revoke(live_server, revoked.key.key_id)

    async def run():
        async with AsyncAuthClient(live_server.target) as client:
            principal = await client.authenticate(issued.secret, ["messages:read"])
            with pytest.raises(CredentialRevoked):
                await client.authenticate(revoked.secret)
            with pytest.raises(InsufficientScope) as info:
                await client.authenticate(issued.secret, ["messages:write"])
            return principal, info.value

    principal, err = asyncio.run(run())
    assert principal.key_id == issued.key.key_id
    assert err.missing == ("messages:write",)
    assert issued.secret not in repr(err)


def test_reason_is_trusted_only_with_its_code_and_domain_and_credentials_are_masked():
    leaked = tokens.mint(tokens.KeyKind.SERVER).token
    fake = FakeAuthService(
        failures=[
            # A reason that does not belong to the code: the code decides.
            status_with_reason(grpc.StatusCode.UNAUTHENTICATED, "INSUFFICIENT_SCOPE"),
            # An unknown reason: the class of the code.
            status_with_reason(grpc.StatusCode.PERMISSION_DENIED, "SOMETHING_NEW", f"bad {leaked}", seen=leaked),
        ]
    ).start()
    client = AuthClient(fake.target, retry=None)
    try:
        err = expect(Unauthenticated, client.authenticate, "x")
        assert err.reason == "INSUFFICIENT_SCOPE"
        err = expect(PermissionDenied, client.authenticate, "x", secret=leaked)
        assert err.reason == "SOMETHING_NEW" and "woes_sk_[masked]" in err.message
        assert err.metadata["seen"] == "woes_sk_[masked]"
    finally:
        client.close()
        fake.stop()


def test_verify_conversation_secret_and_its_typed_refusals(live_server, client):
    from woes.auth.v1 import conversations_pb2 as cpb
    from woes_auth_client import (
        ConversationAccess,
        ConversationSecretInvalid,
        ConversationSecretRevoked,
        ConversationWorkspaceMismatch,
    )

    widget_a = issue(live_server, "ws-conv-a", kind=res.KEY_KIND_WIDGET)
    widget_b = issue(live_server, "ws-conv-b", kind=res.KEY_KIND_WIDGET)
    secret = live_server.stub.IssueConversationSecret(
        cpb.IssueConversationSecretRequest(public_key=widget_a.secret, conversation_id="conv-1"),
        metadata=widget_backend_md(live_server),
    ).secret
    got = client.verify_conversation_secret(widget_a.secret, "conv-1", secret)
    assert got == ConversationAccess(
        workspace_id="ws-conv-a", conversation_id="conv-1", widget_key_id=widget_a.key.key_id
    )

    expect(
        ConversationSecretInvalid, client.verify_conversation_secret, widget_a.secret, "conv-2", secret, secret=secret
    )
    expect(
        ConversationWorkspaceMismatch,
        client.verify_conversation_secret,
        widget_b.secret,
        "conv-1",
        secret,
        secret=secret,
    )
    live_server.stub.RevokeConversationSecret(
        cpb.RevokeConversationSecretRequest(workspace_id="ws-conv-a", conversation_id="conv-1"),
        metadata=live_server.admin_md,
    )
    expect(
        ConversationSecretRevoked, client.verify_conversation_secret, widget_a.secret, "conv-1", secret, secret=secret
    )

    async def run():
        async with AsyncAuthClient(live_server.target) as aclient:
            with pytest.raises(ConversationSecretRevoked):
                await aclient.verify_conversation_secret(widget_a.secret, "conv-1", secret)

    asyncio.run(run())
