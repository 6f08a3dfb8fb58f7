"""``AuthClient`` (blocking) and ``AsyncAuthClient`` (grpc.aio) for woes-auth.

Each client keeps one channel for its whole life (create one per process and
share it), gives every call a deadline, lets gRPC retry ``UNAVAILABLE`` on the
calls that are safe to repeat, and turns every failure into a typed
:class:`~woes_auth_client.errors.AuthError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc
from woes.auth.v1 import conversations_pb2 as conv_pb

from .cache import MicroCache
from .channel import DEFAULT_TIMEOUT, ChannelSettings, RetryPolicy, TLSConfig, settings_from_env
from .errors import from_rpc_error
from .types import ConversationAccess, Principal, WidgetKey

if TYPE_CHECKING:
    from typing import Self

_DEFAULT_RETRY = RetryPolicy()


class _Base:
    def __init__(
        self,
        target: str,
        *,
        caller: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        tls: TLSConfig | None = None,
        insecure: bool = False,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        cache: MicroCache | None = None,
        keepalive_time: float = 30.0,
        keepalive_timeout: float = 10.0,
        channel_options: Iterable[tuple[str, object]] = (),
        settings: ChannelSettings | None = None,
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.settings = settings or ChannelSettings(
            target=target,
            tls=tls,
            insecure=insecure,
            retry=retry,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
            extra_options=tuple(channel_options),
        )
        self.caller = caller
        self.timeout = timeout
        self.cache = cache

    @classmethod
    def from_env(cls, *, caller: str = "", cache: MicroCache | None = None, **settings_overrides: Any) -> Self:
        """A client configured by ``WOES_AUTH_*`` environment variables (see :func:`settings_from_env`)."""
        settings, timeout = settings_from_env(**settings_overrides)
        return cls(settings.target, caller=caller, timeout=timeout, cache=cache, settings=settings)

    def __repr__(self) -> str:
        mode = "tls" if self.settings.secure() else "plaintext"
        return f"{type(self).__name__}(target={self.settings.target!r}, {mode}, timeout={self.timeout})"

    def _auth_request(
        self, credential: str, required_scopes: Iterable[str], caller: str | None
    ) -> tuple[Any, bytes | None]:
        scopes = tuple(required_scopes)
        key = self.cache.key(credential, scopes) if self.cache is not None else None
        request = pb.AuthenticateRequest(
            credential=credential, required_scopes=scopes, caller=self.caller if caller is None else caller
        )
        return request, key


class AuthClient(_Base):
    """Blocking client. Thread-safe; create one per process and reuse it."""

    def __init__(self, target: str, **kwargs: Any):
        super().__init__(target, **kwargs)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.AuthServiceStub | None = None

    @property
    def stub(self) -> pb_grpc.AuthServiceStub:
        """The generated stub on the client's one channel (for RPCs this layer does not wrap)."""
        if self._stub is None:
            with self._lock:
                if self._stub is None:
                    self._channel = self.settings.sync_channel()
                    self._stub = pb_grpc.AuthServiceStub(self._channel)
        return self._stub

    def _call(self, method: Callable[..., Any], request: Any, timeout: float | None, metadata: Any = None) -> Any:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, metadata=metadata)
        except grpc.RpcError as rpc_error:
            error = from_rpc_error(rpc_error)
        # Raised outside the except block: the grpc error (whose debug string echoes the server's
        # text verbatim) is not kept as __context__.
        raise error

    def authenticate(
        self,
        credential: str,
        required_scopes: Iterable[str] = (),
        *,
        caller: str | None = None,
        timeout: float | None = None,
    ) -> Principal:
        """Verify a server API credential (and that it grants ``required_scopes``); raise an AuthError if not."""
        request, key = self._auth_request(credential, required_scopes, caller)
        cache = self.cache
        if key is not None and cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return cached
        response = self._call(self.stub.Authenticate, request, timeout)
        principal = Principal.from_pb(response.principal)
        if key is not None and cache is not None:
            cache.put(key, principal)
        return principal

    def verify_widget_key(self, public_key: str, origin: str = "", *, timeout: float | None = None) -> WidgetKey:
        """Verify a widget public key used from ``origin`` (the browser's ``Origin`` header)."""
        response = self._call(
            self.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=public_key, origin=origin), timeout
        )
        return WidgetKey(workspace_id=response.workspace_id, key_id=response.key_id)

    def verify_conversation_secret(
        self, public_key: str, conversation_id: str, secret: str, origin: str = "", *, timeout: float | None = None
    ) -> ConversationAccess:
        """Check that ``secret`` opens the history of ``conversation_id`` for this widget key and origin."""
        response = self._call(
            self.stub.VerifyConversationSecret,
            conv_pb.VerifyConversationSecretRequest(
                public_key=public_key, origin=origin, conversation_id=conversation_id, secret=secret
            ),
            timeout,
        )
        return _access(response)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stub = None

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncAuthClient(_Base):
    """grpc.aio client. Its channel is made on first use, inside the event loop that uses it."""

    def __init__(self, target: str, **kwargs: Any):
        super().__init__(target, **kwargs)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.AuthServiceStub | None = None

    @property
    def stub(self) -> pb_grpc.AuthServiceStub:
        if self._stub is None:
            self._channel = self.settings.aio_channel()
            self._stub = pb_grpc.AuthServiceStub(self._channel)
        return self._stub

    async def _call(self, method: Callable[..., Any], request: Any, timeout: float | None, metadata: Any = None) -> Any:
        try:
            return await method(request, timeout=self.timeout if timeout is None else timeout, metadata=metadata)
        except grpc.RpcError as rpc_error:
            error = from_rpc_error(rpc_error)
        raise error

    async def authenticate(
        self,
        credential: str,
        required_scopes: Iterable[str] = (),
        *,
        caller: str | None = None,
        timeout: float | None = None,
    ) -> Principal:
        """Verify a server API credential (and that it grants ``required_scopes``); raise an AuthError if not."""
        request, key = self._auth_request(credential, required_scopes, caller)
        cache = self.cache
        if key is not None and cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return cached
        response = await self._call(self.stub.Authenticate, request, timeout)
        principal = Principal.from_pb(response.principal)
        if key is not None and cache is not None:
            cache.put(key, principal)
        return principal

    async def verify_widget_key(self, public_key: str, origin: str = "", *, timeout: float | None = None) -> WidgetKey:
        """Verify a widget public key used from ``origin`` (the browser's ``Origin`` header)."""
        response = await self._call(
            self.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=public_key, origin=origin), timeout
        )
        return WidgetKey(workspace_id=response.workspace_id, key_id=response.key_id)

    async def verify_conversation_secret(
        self, public_key: str, conversation_id: str, secret: str, origin: str = "", *, timeout: float | None = None
    ) -> ConversationAccess:
        """Check that ``secret`` opens the history of ``conversation_id`` for this widget key and origin."""
        response = await self._call(
            self.stub.VerifyConversationSecret,
            conv_pb.VerifyConversationSecretRequest(
                public_key=public_key, origin=origin, conversation_id=conversation_id, secret=secret
            ),
            timeout,
        )
        return _access(response)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub = None

    async def __aenter__(self) -> AsyncAuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _access(response: Any) -> ConversationAccess:
    return ConversationAccess(
        workspace_id=response.workspace_id,
        conversation_id=response.conversation_id,
        widget_key_id=response.widget_key_id,
    )
