"""How the client talks to woes-auth: TLS, keepalive, retries and deadlines.

Retries are left to gRPC itself through the service config (gRFC A6): only
``UNAVAILABLE`` is retried, only on calls that are safe to repeat, with
exponential backoff, all attempts inside the call's one deadline. A verdict on
a credential (``UNAUTHENTICATED``, ``PERMISSION_DENIED``, ...) is never retried.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

SERVICE_NAME = "woes.auth.v1.AuthService"

DEFAULT_TIMEOUT = 2.0
"""Seconds for one call, retries included, unless the client or the call says otherwise."""

RETRYABLE_METHODS = ("Authenticate", "VerifyWidgetKey", "VerifyConversationSecret", "GetKey", "ListKeys", "Revoke")
"""Methods that may be repeated safely (``Revoke`` is idempotent; ``IssueKey`` and ``Rotate`` are not retried)."""


@dataclass(frozen=True)
class RetryPolicy:
    """A gRPC ``retryPolicy`` for ``UNAVAILABLE`` (gRPC caps ``max_attempts`` at 5)."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0

    def __post_init__(self):
        if not 2 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be between 2 and 5")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoffs and multiplier must be positive")


def service_config(retry: RetryPolicy | None) -> str:
    """The JSON service config: retries for ``UNAVAILABLE`` on the methods safe to repeat."""
    configs = []
    if retry is not None:
        configs.append(
            {
                "name": [{"service": SERVICE_NAME, "method": m} for m in RETRYABLE_METHODS],
                "retryPolicy": {
                    "maxAttempts": retry.max_attempts,
                    "initialBackoff": f"{retry.initial_backoff:.3f}s",
                    "maxBackoff": f"{retry.max_backoff:.3f}s",
                    "backoffMultiplier": retry.backoff_multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps({"methodConfig": configs})


@dataclass(frozen=True)
class TLSConfig:
    """TLS to woes-auth; with ``certificate_chain`` and ``private_key``, a client certificate (mTLS).

    ``root_certificates`` None means the system's trust store.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    """Expected name in the server certificate when it differs from the target host."""

    def __post_init__(self):
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("a client certificate needs both certificate_chain and private_key")

    @classmethod
    def from_files(
        cls,
        ca: str | os.PathLike | None = None,
        cert: str | os.PathLike | None = None,
        key: str | os.PathLike | None = None,
        server_name: str | None = None,
    ) -> TLSConfig:
        def read(path):
            return Path(path).read_bytes() if path else None

        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)


def is_loopback_target(target: str) -> bool:
    """True for ``localhost``/loopback addresses and unix sockets: the only places plaintext is accepted by default."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    host = target.split("://", 1)[-1]
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ChannelSettings:
    """Everything that shapes the one channel a client keeps."""

    target: str
    tls: TLSConfig | None = None
    insecure: bool = False
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    extra_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if self.tls is None and not self.insecure and not is_loopback_target(self.target):
            raise ValueError(
                f"plaintext to {self.target!r} refused: pass tls=TLSConfig(...) "
                "or insecure=True (only behind a mesh that encrypts for you)"
            )

    def options(self) -> list[tuple[str, object]]:
        opts: list[tuple[str, object]] = [
            ("grpc.enable_retries", 1 if self.retry is not None else 0),
            ("grpc.service_config", service_config(self.retry)),
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if self.tls is not None and self.tls.server_name:
            opts.append(("grpc.ssl_target_name_override", self.tls.server_name))
        opts.extend(self.extra_options)
        return opts

    def secure(self) -> bool:
        return self.tls is not None

    def sync_channel(self) -> grpc.Channel:
        if self.tls is not None:
            return grpc.secure_channel(self.target, self.tls.credentials(), options=self.options())
        return grpc.insecure_channel(self.target, options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls is not None:
            return grpc.aio.secure_channel(self.target, self.tls.credentials(), options=self.options())
        return grpc.aio.insecure_channel(self.target, options=self.options())


def settings_from_env(env: dict[str, str] | None = None, **overrides: Any) -> tuple[ChannelSettings, float]:
    """Channel settings and the default timeout from ``WOES_AUTH_*`` environment variables.

    ``WOES_AUTH_TARGET`` (required), ``WOES_AUTH_TLS_CA``, ``WOES_AUTH_TLS_CERT``,
    ``WOES_AUTH_TLS_KEY``, ``WOES_AUTH_TLS_SERVER_NAME`` (file paths / a name),
    ``WOES_AUTH_INSECURE=1`` (plaintext to a non-loopback target), ``WOES_AUTH_TIMEOUT`` (seconds).
    """
    env = dict(os.environ if env is None else env)
    target = env.get("WOES_AUTH_TARGET", "")
    if not target:
        raise ValueError("WOES_AUTH_TARGET is not set (host:port of woes-auth)")
    tls = None
    if any(env.get(f"WOES_AUTH_TLS_{n}") for n in ("CA", "CERT", "KEY")):
        tls = TLSConfig.from_files(
            env.get("WOES_AUTH_TLS_CA") or None,
            env.get("WOES_AUTH_TLS_CERT") or None,
            env.get("WOES_AUTH_TLS_KEY") or None,
            env.get("WOES_AUTH_TLS_SERVER_NAME") or None,
        )
    insecure = env.get("WOES_AUTH_INSECURE", "").lower() in ("1", "true", "yes")
    timeout = float(env.get("WOES_AUTH_TIMEOUT") or DEFAULT_TIMEOUT)
    settings = ChannelSettings(target=target, tls=tls, insecure=insecure, **overrides)
    return settings, timeout
