"""The ``woes-auth`` command.

    woes-auth serve              run the service
    woes-auth bootstrap-admin    create an admin credential (printed once, last line of stdout)
    woes-auth bootstrap-internal | service-keys list|rotate    internal credentials (cli_service.py)
    woes-auth db upgrade|status  apply the schema migrations / show the schema revision
    woes-auth keys issue|list|get|rotate|revoke
                                 admin tooling over gRPC against a running server
    woes-auth dev-certs --out DIR
                                 development CA, server and client certificates for mTLS
    woes-auth conversations | test-credentials | audit | workspace-settings ...
                                 the rest of the credential model (see cli_model.py)
    woes-auth kek rotate         new primary key-encryption key, re-wrap every test credential

Admin commands read the admin credential (internal RPCs: the internal one) from
``WOES_AUTH_{ADMIN,INTERNAL}_CREDENTIAL`` or ``--{admin,internal}-credential-file``,
never from a flag value (flags end up in shell history and process lists).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from auth_service.app.config import ConfigError, Settings, load_pepper, log_key_source
from auth_service.ops import logs

log = logging.getLogger("auth_service.cli")


def _add_storage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="SQLAlchemy URL (env WOES_AUTH_DATABASE_URL)")
    p.add_argument("--data-dir", help="data folder for SQLite and development keys (env WOES_AUTH_DATA_DIR)")
    p.add_argument("--dev", action="store_true", help="development keys in the data folder for any database")


def _settings(args: argparse.Namespace) -> Settings:
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


# -- serve / bootstrap -------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from auth_service.app.runtime import main_serve

    settings = _settings(args)
    # Everything written to stderr, gRPC's native tracing included, goes through the redaction filter.
    redactor = logs.NativeStderrRedactor()
    logs.setup(settings.log_level, redactor.start())
    try:
        return main_serve(settings)
    finally:
        redactor.stop()


def cmd_bootstrap_admin(args: argparse.Namespace) -> int:
    from auth_service.domain.errors import AuthError
    from auth_service.domain.keys.manager import CredentialManager
    from auth_service.store import SqlStore

    settings = _settings(args)
    logs.setup(settings.log_level)
    pepper, note = load_pepper(settings, create=True)
    log_key_source(note, log)
    from auth_service.app.runtime import check_schema

    check_schema(settings.resolved_database_url())
    store = SqlStore(settings.resolved_database_url(), create_schema=False)
    try:
        issued = CredentialManager(store, pepper).bootstrap_admin(args.name)
    except AuthError as exc:
        print(f"woes-auth: {exc.message}", file=sys.stderr)
        return 2
    finally:
        store.close()
    log.info("created admin key %s", issued.key.key_id)
    print(f"Admin key {issued.key.key_id} created. Store the credential below in your secret manager now;")
    print("it is not stored anywhere and cannot be shown again.")
    print(issued.secret)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from auth_service.app.runtime import _safe_url
    from auth_service.domain.errors import StoreUnavailable
    from auth_service.store import SqlStore, migrate

    settings = _settings(args)
    logs.setup(settings.log_level)
    url = settings.resolved_database_url()
    if args.db_command == "upgrade" and args.sql:
        migrate.upgrade_sql(url)
        return 0
    store = SqlStore(url, create_schema=False)
    try:
        before = store.schema_status()
        if args.db_command == "status":
            print(f"{_safe_url(url)}: {migrate.describe(before)}")
            return 0 if before.up_to_date else 1
        if before.up_to_date:
            print(f"{_safe_url(url)}: already at revision {before.head}; nothing to do")
            return 0
        if before.current is not None and not before.known:
            print(f"woes-auth: {migrate.describe(before)}; refusing to touch it", file=sys.stderr)
            return 1
        store.upgrade_schema()
        after = store.schema_status()
        print(f"{_safe_url(url)}: upgraded from {before.current or 'an empty database'} to revision {after.current}")
        return 0
    except StoreUnavailable:
        print(f"woes-auth: cannot reach the database {_safe_url(url)}", file=sys.stderr)
        return 2
    finally:
        store.close()


# -- admin commands over gRPC ---------------------------------------------------


def _admin_credential(args: argparse.Namespace, kind: str = "admin") -> str:
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


def _call(args: argparse.Namespace, method: str, request, *, admin: bool = True, internal: bool = False) -> int:
    """Call ``method`` (with the admin, the internal or no credential); print the answer as JSON (0) or the error (1)."""
    import grpc
    from google.protobuf import json_format
    from woes.auth.v1 import auth_service_pb2_grpc

    target = args.server or os.environ.get("WOES_AUTH_SERVER") or Settings.from_env().listen
    kind = "internal" if internal else "admin" if admin else ""
    metadata = (("authorization", f"Bearer {_admin_credential(args, kind)}"),) if kind else ()
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
            _print_rpc_error(err)
            return 1
    print(json_format.MessageToJson(response, preserving_proto_field_name=True, indent=2))
    return 0


def _print_rpc_error(err) -> None:
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


_KINDS = {"server": 1, "widget": 2}


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--expire-time {text!r} is not an ISO 8601 time such as 2027-01-01T00:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_keys(args: argparse.Namespace) -> int:
    from google.protobuf import duration_pb2
    from woes.auth.v1 import auth_service_pb2 as pb

    if args.keys_command == "issue":
        request = pb.IssueKeyRequest(
            workspace_id=args.workspace,
            kind=_KINDS[args.kind],
            display_name=args.name or "",
            scopes=args.scope or [],
            allowed_origins=args.origin or [],
            request_id=args.request_id or "",
        )
        if args.expire_time:
            request.expire_time.FromDatetime(_parse_time(args.expire_time))
        return _call(args, "IssueKey", request)
    if args.keys_command == "list":
        return _call(
            args,
            "ListKeys",
            pb.ListKeysRequest(
                workspace_id=args.workspace or "", page_size=args.page_size, page_token=args.page_token or ""
            ),
        )
    if args.keys_command == "get":
        return _call(args, "GetKey", pb.GetKeyRequest(key_id=args.key_id))
    if args.keys_command == "rotate":
        request = pb.RotateRequest(key_id=args.key_id)
        if args.grace_seconds is not None:
            request.grace_period.CopyFrom(duration_pb2.Duration(seconds=args.grace_seconds))
        return _call(args, "Rotate", request)
    if args.keys_command == "revoke":
        return _call(args, "Revoke", pb.RevokeRequest(key_id=args.key_id, reason=args.reason or ""))
    raise AssertionError(args.keys_command)


def cmd_dev_certs(args: argparse.Namespace) -> int:
    from auth_service.api.tls import DEFAULT_CLIENTS, write_dev_certs

    clients = args.client or list(DEFAULT_CLIENTS)
    try:
        written = write_dev_certs(Path(args.out), clients)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = Path(args.out)
    print(f"Development certificates in {out} (keys are 0600; for development and tests only):")
    for role, path in written.items():
        print(f"  {role:<24} {path.name}")
    print("Serve with mTLS:")
    print(
        f"  WOES_AUTH_TLS_CERT={out / 'server.pem'} WOES_AUTH_TLS_KEY={out / 'server-key.pem'} "
        f"WOES_AUTH_TLS_CLIENT_CA={out / 'ca.pem'} woes-auth serve"
    )
    print("Client certificates name their service in a URI SAN spiffe://woes/service/<name> (the only SAN read).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from auth_service.cli.service_keys import RefusedAdminPermission, add_service_key_commands

    parser = argparse.ArgumentParser(prog="woes-auth", description="The Woes credential service.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC service")
    serve.add_argument("--listen", help="host:port (env WOES_AUTH_LISTEN, default 127.0.0.1:50051)")
    serve.add_argument("--workers", type=int, help="serving processes (env WOES_AUTH_WORKERS, default one per core)")
    serve.add_argument("--threads", type=int, help="RPC threads per serving process (env WOES_AUTH_THREADS, default 2)")
    serve.add_argument("--production", action="store_true", help="refuse to start without a configured pepper")
    serve.add_argument(
        "--allow-remote-plaintext",
        action="store_true",
        help="allow plaintext on a non-loopback address (only behind a TLS-terminating proxy)",
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    serve.add_argument(
        "--stats-port",
        type=int,
        help="worker i serves GET /stats (JSON counters) on 127.0.0.1:PORT+i (env WOES_AUTH_STATS_PORT, default off)",
    )
    serve.add_argument("--tls-cert", help="server certificate PEM (env WOES_AUTH_TLS_CERT)")
    serve.add_argument("--tls-key", help="server private key PEM (env WOES_AUTH_TLS_KEY)")
    serve.add_argument(
        "--tls-client-ca", help="CA of caller certificates; client certificates required (env WOES_AUTH_TLS_CLIENT_CA)"
    )
    serve.add_argument("--policy-file", help="caller policy, JSON or TOML (env WOES_AUTH_POLICY_FILE)")
    serve.add_argument("--metrics-listen", help="host:port of Prometheus /metrics (env WOES_AUTH_METRICS_LISTEN)")
    serve.add_argument("--access-log", action="store_true", help="log one line per call (env WOES_AUTH_ACCESS_LOG)")
    _add_storage_flags(serve)
    serve.set_defaults(func=cmd_serve)

    boot = sub.add_parser("bootstrap-admin", help="create an admin credential; prints it as the last line")
    boot.add_argument("--name", default="bootstrap admin", help="display name of the admin key")
    boot.add_argument("--permission", action=RefusedAdminPermission, help=argparse.SUPPRESS)
    boot.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    _add_storage_flags(boot)
    boot.set_defaults(func=cmd_bootstrap_admin)

    db = sub.add_parser("db", help="database schema: migrations")
    dbs = db.add_subparsers(dest="db_command", required=True)
    up = dbs.add_parser("upgrade", help="apply every migration the database lacks (safe to repeat)")
    up.add_argument("--sql", action="store_true", help="print the SQL of a full upgrade instead of running it")
    st = dbs.add_parser("status", help="show the schema revision; exit 1 unless up to date")
    for p in (up, st):
        p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
        _add_storage_flags(p)
    db.set_defaults(func=cmd_db)

    keys = sub.add_parser("keys", help="manage keys through a running server")
    add_server_flags(keys)
    ks = keys.add_subparsers(dest="keys_command", required=True)
    issue = ks.add_parser("issue", help="issue a server or widget key (the secret is printed once)")
    issue.add_argument("--workspace", required=True)
    issue.add_argument("--kind", choices=sorted(_KINDS), default="server")
    issue.add_argument("--name", help="display name")
    issue.add_argument("--scope", action="append", help="scope such as conversations:read (repeatable)")
    issue.add_argument("--origin", action="append", help="allowed origin of a widget key (repeatable)")
    issue.add_argument("--expire-time", help="ISO 8601 time, e.g. 2027-01-01T00:00:00Z")
    issue.add_argument("--request-id", help="idempotency key")
    lst = ks.add_parser("list", help="list keys (metadata only)")
    lst.add_argument("--workspace")
    lst.add_argument("--page-size", type=int, default=0)
    lst.add_argument("--page-token")
    get = ks.add_parser("get", help="show one key (metadata only)")
    get.add_argument("key_id")
    rot = ks.add_parser("rotate", help="replace a key; the old one works for the grace period")
    rot.add_argument("key_id")
    rot.add_argument("--grace-seconds", type=int, help="0 to 604800, default 86400")
    rev = ks.add_parser("revoke", help="revoke a key at once")
    rev.add_argument("key_id")
    rev.add_argument("--reason")
    keys.set_defaults(func=cmd_keys)

    from auth_service.cli.model_commands import add_model_commands

    add_model_commands(sub, _add_storage_flags)
    add_service_key_commands(sub, _add_storage_flags)

    certs = sub.add_parser("dev-certs", help="write a development CA, server and client certificates (mTLS)")
    certs.add_argument("--out", required=True, help="folder to write the PEM files to")
    certs.add_argument(
        "--client",
        action="append",
        help="service name of a client certificate (repeatable; default gateway, admin-tool, lab-runner)",
    )
    certs.set_defaults(func=cmd_dev_certs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"woes-auth: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
