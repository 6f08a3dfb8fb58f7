"""The example conversations service, end to end: caller -> example service -> real woes-auth server."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from woes_auth_client import AuthClient, MicroCache

from examples.conversations import service as example
from tests.support.client import issue, revoke
from tests.support.rich_errors import call_error


@pytest.fixture
def conversations(live_server):
    auth = AuthClient(live_server.target, caller="conversations", cache=MicroCache(ttl=1.0))
    server, port = example.build_server(auth)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0).wait()
    auth.close()


def md(secret: str):
    return (("authorization", f"Bearer {secret}"),)


def test_example_service_end_to_end(live_server, conversations):
    stub = example.services.ConversationsStub(conversations)
    p = example.protos
    writer = issue(live_server, "ws-a", ["conversations:write"])
    reader = issue(live_server, "ws-a", ["conversations:read"])
    stranger = issue(live_server, "ws-b", ["conversations:write"])

    created = stub.CreateConversation(p.CreateConversationRequest(title="refund"), metadata=md(writer.secret))
    assert created.workspace_id == "ws-a" and created.created_by_key_id == writer.key.key_id
    got = stub.GetConversation(p.GetConversationRequest(id=created.id), metadata=md(reader.secret))
    assert got == created
    listed = list(stub.ListConversations(p.ListConversationsRequest(), metadata=md(reader.secret)))
    assert [c.id for c in listed] == [created.id]

    # The workspace comes from the credential: another workspace sees nothing.
    err = call_error(stub.GetConversation, p.GetConversationRequest(id=created.id), metadata=md(stranger.secret))
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert list(stub.ListConversations(p.ListConversationsRequest(), metadata=md(stranger.secret))) == []

    # Scopes per method.
    err = call_error(stub.CreateConversation, p.CreateConversationRequest(title="x"), metadata=md(reader.secret))
    assert err.code is grpc.StatusCode.PERMISSION_DENIED and err.reason == "INSUFFICIENT_SCOPE"
    assert err.metadata == {"missing_scopes": "conversations:write"}

    err = call_error(stub.GetConversation, p.GetConversationRequest(id=created.id))
    assert err.code is grpc.StatusCode.UNAUTHENTICATED

    # Health stays public.
    health = health_pb2_grpc.HealthStub(conversations).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_example_service_stops_a_revoked_credential(live_server, conversations):
    stub = example.services.ConversationsStub(conversations)
    p = example.protos
    key = issue(live_server, "ws-r", ["conversations:read"])
    assert list(stub.ListConversations(p.ListConversationsRequest(), metadata=md(key.secret))) == []
    revoke(live_server, key.key.key_id)
    # The example keeps a 1 s micro-cache: the revocation must bite once it expires (generous bound).
    deadline = time.monotonic() + 15
    while True:
        try:
            list(stub.ListConversations(p.ListConversationsRequest(), metadata=md(key.secret)))
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
            break
        assert time.monotonic() < deadline, "a revoked credential kept working past the micro-cache TTL"
        time.sleep(0.1)
