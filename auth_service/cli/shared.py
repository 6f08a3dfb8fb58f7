"""What every ``woes-auth`` command group shares: flags, settings, calls to a running server, secrets from files."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from auth_service.app.config import Settings
from auth_service.domain.errors import ConfigError

log = logging.getLogger("auth_service.cli")


def add_storage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="SQLAlchemy URL (env WOES_AUTH_DATABASE_URL)")
    p.add_argument("--data-dir", help="data folder for SQLite and development keys (env WOES_AUTH_DATA_DIR)")
    p.add_argument("--dev", action="store_true", help="development keys in the data folder for any database")


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "database_url", None):
        settings.database_url = args.database_url
    if getattr(args, "data_dir", None):
        settings.data_dir = Path(args.data_dir)
    for name in (
        "listen",
        "workers",
        "threads",
        "log_level",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "policy_file",
        "metrics_listen",
        "stats_port",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    if getattr(args, "production", False):
        settings.production = True
    if getattr(args, "dev", False):
        settings.dev = True
    if getattr(args, "allow_remote_plaintext", False):
        settings.allow_remote_plaintext = True
    if getattr(args, "access_log", False):
        settings.access_log = True
    return settings


def admin_credential(args: argparse.Namespace, kind: str = "admin") -> str:
    path = getattr(args, f"{kind}_credential_file", None)
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the {kind} credential file: {exc.strerror}") from None
    variable = f"WOES_AUTH_{kind.upper()}_CREDENTIAL"
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"set {variable} or pass --{kind}-credential-file")
    return value


def add_server_flags(p: argparse.ArgumentParser) -> None:
    """Flags of every command that talks to a running server: address, admin credential, deadline, mTLS."""
    p.add_argument("--server", help="host:port of the server (env WOES_AUTH_SERVER, default WOES_AUTH_LISTEN)")
    p.add_argument("--admin-credential-file", help="file holding the admin credential")
    p.add_argument("--internal-credential-file", help="file holding the internal credential (internal RPCs)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    p.add_argument("--tls-ca", default=os.environ.get("WOES_AUTH_CLIENT_TLS_CA"), help="CA of the server (mTLS)")
    p.add_argument("--tls-cert", default=os.environ.get("WOES_AUTH_CLIENT_TLS_CERT"), help="client certificate")
    p.add_argument("--tls-key", default=os.environ.get("WOES_AUTH_CLIENT_TLS_KEY"), help="client private key")


def call(args: argparse.Namespace, method: str, request, *, admin: bool = True, internal: bool = False) -> int:
    """Call ``method`` (with the admin, the internal or no credential); print the answer as JSON (0)
    or the error (1)."""
    import grpc
    from google.protobuf import json_format
    from woes.auth.v1 import auth_service_pb2_grpc

    target = args.server or os.environ.get("WOES_AUTH_SERVER") or Settings.from_env().listen
    kind = "internal" if internal else "admin" if admin else ""
    metadata = (("authorization", f"Bearer {admin_credential(args, kind)}"),) if kind else ()
    if args.tls_ca:
        from auth_service.api.tls import channel_credentials

        creds = channel_credentials(
            Path(args.tls_ca),
            Path(args.tls_cert) if args.tls_cert else None,
            Path(args.tls_key) if args.tls_key else None,
        )
        channel_cm = grpc.secure_channel(target, creds)
    else:
        channel_cm = grpc.insecure_channel(target)
    with channel_cm as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        try:
            response = getattr(stub, method)(request, metadata=metadata, timeout=args.timeout)
        except grpc.RpcError as err:
            print_rpc_error(err)
            return 1
    print(json_format.MessageToJson(response, preserving_proto_field_name=True, indent=2))
    return 0


def print_rpc_error(err) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    reason = ""
    violations = []
    status = rpc_status.from_call(err)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [f"{v.field}: {v.description}" for v in bad.field_violations]
    print(f"error: {err.code().name}{' ' + reason if reason else ''}: {err.details()}", file=sys.stderr)
    for line in violations:
        print(f"  {line}", file=sys.stderr)


def read_secret(path: str | None, what: str) -> str:
    if not path or path == "-":
        if sys.stdin.isatty():
            print(f"enter the {what}, then end with Ctrl-D:", file=sys.stderr)
        text = sys.stdin.read()
    else:
        text = Path(path).read_text()
    text = text.rstrip("\r\n")
    if not text:
        raise ConfigError(f"the {what} is empty")
    return text


def parse_when(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)
