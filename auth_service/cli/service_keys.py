"""``woes-auth`` commands of the service's own credentials, with direct database access.

    woes-auth bootstrap-internal --name NAME --permission P [--permission P2]
    woes-auth service-keys list
    woes-auth service-keys rotate KEY_ID [--grace-seconds N]

Admin and internal credentials are made, listed with their permissions and rotated
here only, never through the API (see :mod:`auth_service.domain.keys.service_keys`). A new
credential is printed once, alone on the last line of stdout; the log on stderr
names its key id only.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from auth_service.app.config import load_pepper, log_key_source
from auth_service.cli.shared import add_storage_flags, log, settings_from
from auth_service.domain import permissions as permission_registry
from auth_service.ops import logs

MAX_GRACE_SECONDS = 7 * 24 * 3600


class RefusedAdminPermission(argparse.Action):
    """``bootstrap-admin --permission``: refused (exit 2), since admin keys hold no internal permission."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(
            2,
            "woes-auth: admin keys hold no internal permission; make an internal credential with "
            "'woes-auth bootstrap-internal --name NAME --permission PERMISSION'\n",
        )


def _open(args: argparse.Namespace, *, with_pepper: bool, create_pepper: bool = False):
    """(store, manager or None) of the configured database, whose schema must be current. A
    development pepper is made only with ``create_pepper`` (a new credential); a rotation needs the
    pepper its keys were made with."""
    from auth_service.app.process import check_schema
    from auth_service.app.services import credential_manager
    from auth_service.store import SqlStore

    settings = settings_from(args)
    logs.setup(settings.log_level)
    pepper = None
    if with_pepper:
        pepper, note = load_pepper(settings, create=create_pepper)
        log_key_source(note, log)
    url = settings.resolved_database_url()
    check_schema(url)
    store = SqlStore(url, create_schema=False)
    return store, (credential_manager(store, pepper) if pepper is not None else None)


def _print_new_secret(secret: str) -> None:
    print("Store the credential below in the secret manager of the service that uses it now;")
    print("it is not stored anywhere and cannot be shown again.")
    print(secret)


def cmd_bootstrap_internal(args: argparse.Namespace) -> int:
    from auth_service.domain.errors import AuthError
    from auth_service.domain.keys.service_keys import bootstrap_internal

    store, manager = _open(args, with_pepper=True, create_pepper=True)
    try:
        issued = bootstrap_internal(manager, args.name, tuple(args.permission or ()))
    except AuthError as exc:
        print(f"woes-auth: {exc.message}", file=sys.stderr)
        return 2
    finally:
        store.close()
    held = ", ".join(issued.key.scopes)
    log.info("created internal key %s holding %s", issued.key.key_id, held)
    print(f"Internal key {issued.key.key_id} ({issued.key.display_name}) created, holding: {held}.")
    _print_new_secret(issued.secret)
    return 0


def _when(value) -> str | None:
    return value.isoformat() if value is not None else None


def cmd_service_keys(args: argparse.Namespace) -> int:
    from auth_service.domain.clock import utcnow
    from auth_service.domain.errors import AuthError, InvalidArgument
    from auth_service.domain.keys.service_keys import list_service_keys, rotate_service_key

    if args.service_keys_command == "list":
        store, _ = _open(args, with_pepper=False)
        try:
            records = list_service_keys(store)
        finally:
            store.close()
        now = utcnow()
        rows = [
            {
                "key_id": r.key_id,
                "kind": r.kind.value,
                "display_name": r.display_name,
                "permissions": list(r.scopes),
                "state": r.state_at(now).value,
                "hint": r.hint,
                "create_time": _when(r.create_time),
                "created_by": r.created_by,
                "revoke_time": _when(r.revoke_time),
                "grace_expire_time": _when(r.grace_expire_time),
                "rotated_from": r.rotated_from,
                "rotated_to": r.rotated_to,
                "last_used_time": _when(r.last_used_time),
                "use_count": r.use_count,
            }
            for r in records
        ]
        print(json.dumps({"keys": rows}, indent=2))
        return 0
    if not 0 <= args.grace_seconds <= MAX_GRACE_SECONDS:
        print(f"woes-auth: --grace-seconds must be between 0 and {MAX_GRACE_SECONDS}", file=sys.stderr)
        return 2
    store, manager = _open(args, with_pepper=True)
    try:
        issued, old = rotate_service_key(manager, args.key_id, timedelta(seconds=args.grace_seconds))
    except AuthError as exc:
        print(f"woes-auth: {exc.reason}: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidArgument) else 1
    finally:
        store.close()
    log.info("rotated %s key %s to %s", old.kind.value, old.key_id, issued.key.key_id)
    ends = (
        "stops working now"
        if args.grace_seconds == 0
        else f"keeps working until {old.grace_expire_time.isoformat()}, then stops"
    )
    print(f"{old.kind.value.capitalize()} key {old.key_id} rotated to {issued.key.key_id}: the old credential {ends}.")
    _print_new_secret(issued.secret)
    return 0


def add_commands(sub) -> None:
    known = ", ".join(sorted(permission_registry.RPC_OF))
    boot = sub.add_parser(
        "bootstrap-internal",
        help="create an internal credential holding internal permissions; prints it as the last line",
    )
    boot.add_argument("--name", required=True, help="display name, e.g. the internal service that holds it")
    boot.add_argument("--permission", action="append", required=True, help=f"internal permission (repeatable): {known}")
    boot.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    add_storage_flags(boot)
    boot.set_defaults(func=cmd_bootstrap_internal)

    keys = sub.add_parser("service-keys", help="admin and internal credentials (local: database access)")
    ks = keys.add_subparsers(dest="service_keys_command", required=True)
    lst = ks.add_parser("list", help="every admin and internal key with its permissions (JSON)")
    rot = ks.add_parser("rotate", help="replace an admin or internal key; prints the new credential last")
    rot.add_argument("key_id")
    rot.add_argument(
        "--grace-seconds",
        type=int,
        default=0,
        help=f"how long the old credential keeps working, 0 (default: it stops at once) to {MAX_GRACE_SECONDS}",
    )
    for p in (lst, rot):
        p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
        add_storage_flags(p)
    keys.set_defaults(func=cmd_service_keys)
