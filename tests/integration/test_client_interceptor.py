"""The server interceptors, on a sync and on a grpc.aio server, in front of a real woes-auth server."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent import futures

import grpc
import pytest
from woes.auth.v1.resources_pb2 import KEY_KIND_WIDGET
from woes_auth_client import (
    AsyncAuthClient,
    AsyncAuthInterceptor,
    AuthClient,
    AuthInterceptor,
    current_principal,
    principal_or_none,
)

from tests.conftest import free_port
from tests.support.client import issue, revoke, start_switchable_server
from tests.support.rich_errors import call_error

SCOPES = {
    "/test.Notes/Read": ["conversations:read"],
    "/test.Notes/Write": ["conversations:write"],
    "/test.Notes/Tail": ["messages:read"],
    "/test.Notes/Broken": ["bogus:read"],
    # /test.Notes/Upload: not listed, so any valid server credential.
}
PUBLIC = ["/test.Public/*"]


def _who() -> bytes:
    p = current_principal()
    return json.dumps({"workspace": p.workspace_id, "key_id": p.key_id}).encode()


class Handlers:
    """The guarded service; counts the calls that reached a handler."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def hit(self):
        with self.lock:
            self.calls += 1

    # sync behaviours
    def read(self, request, context):
        self.hit()
        return _who()

    def tail(self, request, context):
        self.hit()
        for i in range(3):
            yield _who() + b"#%d" % i

    def upload(self, request_iterator, context):
        self.hit()
        return b"%d:" % sum(len(r) for r in request_iterator) + _who()

    def ping(self, request, context):
        self.hit()
        return b"anonymous" if principal_or_none() is None else b"LEAKED " + _who()

    def sync_handlers(self):
        uu, us, su = (
            grpc.unary_unary_rpc_method_handler,
            grpc.unary_stream_rpc_method_handler,
            grpc.stream_unary_rpc_method_handler,
        )
        notes = {
            "Read": uu(self.read),
            "Write": uu(self.read),
            "Broken": uu(self.read),
            "Tail": us(self.tail),
            "Upload": su(self.upload),
        }
        return (
            grpc.method_handlers_generic_handler("test.Notes", notes),
            grpc.method_handlers_generic_handler("test.Public", {"Ping": uu(self.ping)}),
        )

    # aio behaviours
    async def aread(self, request, context):
        await asyncio.sleep(0)
        return self.read(request, context)

    async def atail(self, request, context):
        self.hit()
        for i in range(3):
            await asyncio.sleep(0)
            yield _who() + b"#%d" % i

    async def aupload(self, request_iterator, context):
        self.hit()
        total = 0
        async for r in request_iterator:
            total += len(r)
        return b"%d:" % total + _who()

    async def aping(self, request, context):
        return self.ping(request, context)

    def aio_handlers(self):
        uu, us, su = (
            grpc.unary_unary_rpc_method_handler,
            grpc.unary_stream_rpc_method_handler,
            grpc.stream_unary_rpc_method_handler,
        )
        notes = {
            "Read": uu(self.aread),
            "Write": uu(self.aread),
            "Broken": uu(self.aread),
            "Tail": us(self.atail),
            "Upload": su(self.aupload),
        }
        return (
            grpc.method_handlers_generic_handler("test.Notes", notes),
            grpc.method_handlers_generic_handler("test.Public", {"Ping": uu(self.aping)}),
        )


class SyncGuarded:
    def __init__(self, auth_target: str):
        self.handlers = Handlers()
        self.client = AuthClient(auth_target, caller="notes", timeout=3)
        # One worker thread: every call runs on the same thread, so a leaked context variable would show.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=1),
            interceptors=[AuthInterceptor(self.client, SCOPES, public_methods=PUBLIC)],
        )
        self.server.add_generic_rpc_handlers(self.handlers.sync_handlers())
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(0).wait()
        self.client.close()


class AioGuarded:
    def __init__(self, auth_target: str):
        self.handlers = Handlers()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(auth_target), self.loop).result(10)

    async def _start(self, auth_target):
        self.client = AsyncAuthClient(auth_target, caller="notes", timeout=3)
        self.server = grpc.aio.server(interceptors=[AsyncAuthInterceptor(self.client, SCOPES, public_methods=PUBLIC)])
        self.server.add_generic_rpc_handlers(self.handlers.aio_handlers())
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    async def _stop(self):
        await self.server.stop(0)
        await self.client.close()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


KINDS = {"sync": SyncGuarded, "aio": AioGuarded}


@pytest.fixture(params=sorted(KINDS))
def guarded_factory(request):
    started = []

    def make(auth_target: str):
        service = KINDS[request.param](auth_target)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


class Caller:
    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def __call__(self, method: str, credential: str | None = None, body: bytes = b"x"):
        md = (("authorization", f"Bearer {credential}"),) if credential else ()
        kind = {"Tail": "unary_stream", "Upload": "stream_unary"}.get(method.rsplit("/", 1)[1], "unary_unary")
        rpc = getattr(self.channel, kind)(method)
        if kind == "unary_stream":
            return list(rpc(body, metadata=md, timeout=10))
        if kind == "stream_unary":
            return rpc(iter([body, body]), metadata=md, timeout=10)
        return rpc(body, metadata=md, timeout=10)


def test_interceptor_enforces_per_method_scopes(live_server, guarded_factory):
    service = guarded_factory(live_server.target)
    call = Caller(service.port)
    reader = issue(live_server, "ws-read", ["conversations:read", "messages:read"])
    writer = issue(live_server, "ws-write", ["conversations:write"])

    assert json.loads(call("/test.Notes/Read", reader.secret)) == {"workspace": "ws-read", "key_id": reader.key.key_id}
    assert json.loads(call("/test.Notes/Read", writer.secret))["workspace"] == "ws-write"  # write implies read
    assert json.loads(call("/test.Notes/Write", writer.secret))["workspace"] == "ws-write"
    assert [json.loads(m.split(b"#")[0])["workspace"] for m in call("/test.Notes/Tail", reader.secret)] == [
        "ws-read"
    ] * 3
    assert call("/test.Notes/Upload", writer.secret, b"abc").startswith(b"6:")
    calls = service.handlers.calls

    err = call_error(call, "/test.Notes/Write", reader.secret)
    assert err.code is grpc.StatusCode.PERMISSION_DENIED
    assert err.reason == "INSUFFICIENT_SCOPE" and err.domain == "auth.woes"
    assert err.metadata["missing_scopes"] == "conversations:write"
    err = call_error(call, "/test.Notes/Tail", writer.secret)
    assert err.code is grpc.StatusCode.PERMISSION_DENIED and err.metadata["missing_scopes"] == "messages:read"
    assert service.handlers.calls == calls, "a refused call reached its handler"
    for refused in (err,):
        assert reader.secret not in refused.message and writer.secret not in refused.message


def test_interceptor_refuses_missing_bad_and_revoked_credentials(live_server, guarded_factory):
    service = guarded_factory(live_server.target)
    call = Caller(service.port)
    key = issue(live_server)
    widget = issue(live_server, kind=KEY_KIND_WIDGET)

    err = call_error(call, "/test.Notes/Read")
    assert err.code is grpc.StatusCode.UNAUTHENTICATED and err.reason == "CREDENTIAL_MALFORMED"
    err = call_error(call, "/test.Notes/Read", "not-a-credential")
    assert err.code is grpc.StatusCode.UNAUTHENTICATED and err.reason == "CREDENTIAL_MALFORMED"
    err = call_error(call, "/test.Notes/Upload", widget.secret)
    assert err.code is grpc.StatusCode.PERMISSION_DENIED and err.reason == "WIDGET_KEY_NOT_API_CREDENTIAL"
    assert widget.secret not in err.message

    # A Basic scheme or two authorization entries are refused, not guessed at.
    rpc = call.channel.unary_unary("/test.Notes/Read")
    err = call_error(rpc, b"x", metadata=(("authorization", f"Basic {key.secret}"),))
    assert err.code is grpc.StatusCode.UNAUTHENTICATED
    err = call_error(
        rpc, b"x", metadata=(("authorization", f"Bearer {key.secret}"), ("authorization", f"Bearer {key.secret}"))
    )
    assert err.code is grpc.StatusCode.UNAUTHENTICATED

    assert call("/test.Notes/Read", key.secret)
    revoke(live_server, key.key.key_id)
    err = call_error(call, "/test.Notes/Read", key.secret)
    assert err.code is grpc.StatusCode.UNAUTHENTICATED and err.reason == "CREDENTIAL_REVOKED"
    assert key.secret not in err.message
    assert service.handlers.calls == 1


def test_public_methods_skip_auth_and_see_no_principal(live_server, guarded_factory):
    service = guarded_factory(live_server.target)
    call = Caller(service.port)
    key = issue(live_server)
    assert call("/test.Notes/Read", key.secret)
    # Same worker (sync: one thread) right after an authenticated call: nothing leaks into the public handler.
    assert call("/test.Public/Ping") == b"anonymous"


def test_misconfigured_scopes_are_internal_and_refused(live_server, guarded_factory):
    service = guarded_factory(live_server.target)
    key = issue(live_server)
    err = call_error(Caller(service.port), "/test.Notes/Broken", key.secret)
    assert err.code is grpc.StatusCode.INTERNAL
    assert service.handlers.calls == 0


def test_fails_closed_when_woes_auth_store_is_down(sqlite_url, pepper, guarded_factory):
    live, store = start_switchable_server(sqlite_url, pepper)
    try:
        service = guarded_factory(live.target)
        key = issue(live)
        store.down.set()
        err = call_error(Caller(service.port), "/test.Notes/Read", key.secret)
        assert err.code is grpc.StatusCode.UNAVAILABLE
        assert service.handlers.calls == 0
        store.down.clear()
        assert Caller(service.port)("/test.Notes/Read", key.secret)
    finally:
        live.channel.close()
        live.runtime.stop(0.5)


def test_fails_closed_when_woes_auth_is_unreachable(guarded_factory):
    service = guarded_factory(f"127.0.0.1:{free_port()}")
    err = call_error(Caller(service.port), "/test.Notes/Read", "woes_sk_anything")
    assert err.code is grpc.StatusCode.UNAVAILABLE
    assert service.handlers.calls == 0


def test_method_names_must_be_full_paths():
    with pytest.raises(ValueError):
        AuthInterceptor(AuthClient("127.0.0.1:1"), {"Read": ["conversations:read"]})
