"""``woes-auth serve``, ``bootstrap-admin`` and ``db upgrade|status``: the service and its database."""

from __future__ import annotations

import argparse
import sys

from auth_service.app.config import load_pepper, log_key_source
from auth_service.cli.shared import add_storage_flags, log, settings_from
from auth_service.ops import logs


def cmd_serve(args: argparse.Namespace) -> int:
    from auth_service.app.process import main_serve

    settings = settings_from(args)
    # Everything written to stderr, gRPC's native tracing included, goes through the redaction filter.
    redactor = logs.NativeStderrRedactor()
    logs.setup(settings.log_level, redactor.start())
    try:
        return main_serve(settings)
    finally:
        redactor.stop()


def cmd_bootstrap_admin(args: argparse.Namespace) -> int:
    from auth_service.app.process import check_schema
    from auth_service.app.services import credential_manager
    from auth_service.domain.errors import AuthError
    from auth_service.store import SqlStore

    settings = settings_from(args)
    logs.setup(settings.log_level)
    pepper, note = load_pepper(settings, create=True)
    log_key_source(note, log)
    check_schema(settings.resolved_database_url())
    store = SqlStore(settings.resolved_database_url(), create_schema=False)
    try:
        issued = credential_manager(store, pepper).bootstrap_admin(args.name)
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
    from auth_service.app.process import safe_url
    from auth_service.domain.errors import StoreUnavailable
    from auth_service.store import SqlStore, migrate

    settings = settings_from(args)
    logs.setup(settings.log_level)
    url = settings.resolved_database_url()
    if args.db_command == "upgrade" and args.sql:
        migrate.upgrade_sql(url)
        return 0
    store = SqlStore(url, create_schema=False)
    try:
        before = store.schema_status()
        if args.db_command == "status":
            print(f"{safe_url(url)}: {migrate.describe(before)}")
            return 0 if before.up_to_date else 1
        if before.up_to_date:
            print(f"{safe_url(url)}: already at revision {before.head}; nothing to do")
            return 0
        if before.current is not None and not before.known:
            print(f"woes-auth: {migrate.describe(before)}; refusing to touch it", file=sys.stderr)
            return 1
        store.upgrade_schema()
        after = store.schema_status()
        print(f"{safe_url(url)}: upgraded from {before.current or 'an empty database'} to revision {after.current}")
        return 0
    except StoreUnavailable:
        print(f"woes-auth: cannot reach the database {safe_url(url)}", file=sys.stderr)
        return 2
    finally:
        store.close()


def add_commands(sub) -> None:
    from auth_service.cli.service_keys import RefusedAdminPermission

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
    add_storage_flags(serve)
    serve.set_defaults(func=cmd_serve)

    boot = sub.add_parser("bootstrap-admin", help="create an admin credential; prints it as the last line")
    boot.add_argument("--name", default="bootstrap admin", help="display name of the admin key")
    boot.add_argument("--permission", action=RefusedAdminPermission, help=argparse.SUPPRESS)
    boot.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    add_storage_flags(boot)
    boot.set_defaults(func=cmd_bootstrap_admin)

    db = sub.add_parser("db", help="database schema: migrations")
    dbs = db.add_subparsers(dest="db_command", required=True)
    up = dbs.add_parser("upgrade", help="apply every migration the database lacks (safe to repeat)")
    up.add_argument("--sql", action="store_true", help="print the SQL of a full upgrade instead of running it")
    st = dbs.add_parser("status", help="show the schema revision; exit 1 unless up to date")
    for p in (up, st):
        p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
        add_storage_flags(p)
    db.set_defaults(func=cmd_db)
