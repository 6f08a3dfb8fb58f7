"""An example downstream Woes service guarded by woes-auth.

Run it against a woes-auth server (see this folder's README for the installs and calls)::

    WOES_AUTH_TARGET=127.0.0.1:50051 python -m examples.conversations.service

The whole integration is the ``AuthInterceptor(...)`` line in :func:`build_server`
and the ``current_principal()`` calls in the handlers. The service's generated
code is committed in ``generated/`` (``make protos`` writes it again), as a real
service's would be; health and reflection stand beside it, as in woes-auth.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from woes_auth_client import AuthClient, AuthInterceptor, MicroCache, current_principal

# The generated modules import each other by their top-level names, as protoc writes them.
_GENERATED = str(Path(__file__).resolve().parent / "generated")
if _GENERATED not in sys.path:
    sys.path.append(_GENERATED)
import woes_conversations_pb2 as protos  # noqa: E402
import woes_conversations_pb2_grpc as services  # noqa: E402

SERVICE = "/woes.examples.conversations.v1.Conversations"
REQUIRED_SCOPES = {
    f"{SERVICE}/CreateConversation": ["conversations:write"],
    f"{SERVICE}/GetConversation": ["conversations:read"],
    f"{SERVICE}/ListConversations": ["conversations:read"],
}
PUBLIC_METHODS = ["/grpc.health.v1.Health/*", "/grpc.reflection.v1alpha.ServerReflection/*"]

log = logging.getLogger("examples.conversations")


class ConversationsServicer(services.ConversationsServicer):
    """Keeps conversations in memory, per workspace: a caller only ever sees its own workspace."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_workspace: dict[str, dict[str, protos.Conversation]] = {}

    def CreateConversation(self, request, context):
        principal = current_principal()
        if len(request.title) > 200:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "title: at most 200 characters")
        conversation = protos.Conversation(
            id=uuid.uuid4().hex,
            workspace_id=principal.workspace_id,
            title=request.title,
            created_by_key_id=principal.key_id,
        )
        with self._lock:
            self._by_workspace.setdefault(principal.workspace_id, {})[conversation.id] = conversation
        return conversation

    def GetConversation(self, request, context):
        workspace = current_principal().workspace_id
        with self._lock:
            conversation = self._by_workspace.get(workspace, {}).get(request.id)
        if conversation is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such conversation in this workspace")
        return conversation

    def ListConversations(self, request, context):
        workspace = current_principal().workspace_id
        with self._lock:
            conversations = list(self._by_workspace.get(workspace, {}).values())
        yield from conversations


def build_server(auth: AuthClient, listen: str = "127.0.0.1:0") -> tuple[grpc.Server, int]:
    """The conversations server, every call authenticated by woes-auth; returns it (not started) and its port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[AuthInterceptor(auth, REQUIRED_SCOPES, public_methods=PUBLIC_METHODS)],
    )
    services.add_ConversationsServicer_to_server(ConversationsServicer(), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        protos.DESCRIPTOR.services_by_name["Conversations"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(listen)
    return server, port


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    auth = AuthClient.from_env(caller="conversations", cache=MicroCache(ttl=1.0))
    server, port = build_server(auth, os.environ.get("CONVERSATIONS_LISTEN", "127.0.0.1:50061"))
    server.start()
    log.info("conversations example serving on port %d, authenticated by %s", port, auth.settings.target)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(2).wait()
    auth.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
