"""Helpers of the client tests: issuing keys on a live server, a store that can go down, a fake AuthService."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc
from woes.auth.v1 import resources_pb2 as res

from auth_service.app import runtime as server_mod
from auth_service.app.config import Settings
from auth_service.domain.errors import StoreUnavailable
from auth_service.store import SqlStore
from tests.conftest import LiveServer


def issue(live: LiveServer, workspace: str = "ws-1", scopes=("conversations:read",), **fields) -> pb.IssueKeyResponse:
    kind = fields.pop("kind", res.KEY_KIND_SERVER)
    if kind == res.KEY_KIND_WIDGET:
        scopes = ()
    return live.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id=workspace, kind=kind, scopes=list(scopes), **fields),
        metadata=live.admin_md,
    )


def revoke(live: LiveServer, key_id: str) -> None:
    live.stub.Revoke(pb.RevokeRequest(key_id=key_id, reason="test"), metadata=live.admin_md)


class SwitchableStore:
    """A real SqlStore whose key lookups fail with StoreUnavailable while ``down`` is set."""

    def __init__(self, url: str):
        self._inner = SqlStore(url)
        self.down = threading.Event()

    def get_key(self, key_id):
        if self.down.is_set():
            raise StoreUnavailable()
        return self._inner.get_key(key_id)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def start_switchable_server(database_url: str, pepper) -> tuple[LiveServer, SwitchableStore]:
    """A live server over a store the test can take down."""
    store = SwitchableStore(database_url)
    settings = Settings(listen="127.0.0.1:0", database_url=database_url, shutdown_grace=1.0)
    runtime = server_mod.start(server_mod.build(settings, pepper, store=store))
    admin = runtime.manager.bootstrap_admin("test admin").secret
    channel = grpc.insecure_channel(f"127.0.0.1:{runtime.port}")
    return LiveServer(runtime, channel, auth_service_pb2_grpc.AuthServiceStub(channel), admin), store


# -- a fake AuthService --------------------------------------------------------------


def status_with_reason(code: grpc.StatusCode, reason: str, message: str = "", **metadata) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="auth.woes", metadata=metadata))
    return rpc_status.to_status(
        status_pb2.Status(code=getattr(code_pb2, code.name), message=message or reason.lower(), details=[info])
    )


PRINCIPAL = res.Principal(key_id="k" * 12, workspace_id="ws-fake", kind=res.KEY_KIND_SERVER, scopes=["messages:read"])


@dataclass
class FakeAuthService:
    """``woes.auth.v1.AuthService/Authenticate`` answering from a script.

    The first ``len(failures)`` attempts get those statuses, later ones succeed
    (after ``delay`` seconds, or when ``release`` is set). ``attempts`` counts
    every attempt that reached the server; ``metadata`` keeps each attempt's metadata.
    """

    failures: list[grpc.Status] = field(default_factory=list)
    delay: float = 0.0
    attempts: int = 0
    metadata: list[dict] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: grpc.Server | None = None
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _authenticate(self, request: pb.AuthenticateRequest, context):
        with self._lock:
            index = self.attempts
            self.attempts += 1
            self.metadata.append(dict(context.invocation_metadata()))
            self.peers.append(context.peer())
        if index < len(self.failures):
            context.abort_with_status(self.failures[index])
        if self.delay:
            self.release.wait(self.delay)
        return pb.AuthenticateResponse(principal=PRINCIPAL)

    def start(self, credentials: grpc.ServerCredentials | None = None) -> FakeAuthService:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._authenticate,
            request_deserializer=pb.AuthenticateRequest.FromString,
            response_serializer=pb.AuthenticateResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("woes.auth.v1.AuthService", {"Authenticate": handler}),)
        )
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.stop(0).wait()
