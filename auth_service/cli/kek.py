"""``woes-auth kek status|new-key|rotate``: key-encryption keys of test credentials.

Local commands: they need the database and the key configuration, not a running server."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from auth_service.cli.shared import add_storage_flags, settings_from
from auth_service.ops import logs


def cmd_kek(args) -> int:
    from auth_service.app.process import check_schema
    from auth_service.app.services import build_test_credentials, load_ring
    from auth_service.domain.envelope import new_kek_entry, prepend_to_file
    from auth_service.domain.kek_rotation import RotationRefused, kek_state, rotate
    from auth_service.store import SqlKekStore, SqlStore

    if args.kek_command == "new-key":
        print(new_kek_entry(args.id or _new_kek_id()))
        return 0
    settings = settings_from(args)
    logs.setup(getattr(args, "log_level", None) or settings.log_level)
    settings.require_keys(pepper=False)  # before the database is touched
    url = settings.resolved_database_url()
    check_schema(url)
    sql = SqlStore(url, create_schema=False)
    try:
        ring, note = load_ring(settings, SqlKekStore(sql), create=False)
        credentials = build_test_credentials(sql, ring)
        print(note, file=sys.stderr)
        if args.kek_command == "status":
            state = kek_state(credentials)
            print("\n".join(state.lines()))
            return 3 if state.pending else 0

        def add_key() -> str:
            kek_id = _new_kek_id()
            prepend_to_file(ring.path, new_kek_entry(kek_id))
            ring.reload()
            return kek_id

        try:
            done = rotate(
                credentials, add_key=add_key if ring.path else None, batch_size=args.batch_size, max_rows=args.max_rows
            )
        except RotationRefused as exc:
            print(f"woes-auth: {exc}", file=sys.stderr)
            return 2
    finally:
        sql.close()
    report = done.report
    print("\n".join(done.notes))
    print(
        f"re-wrapped {report.rewrapped} record(s) under {report.primary_kek_id}; "
        f"{report.remaining} record(s) still under older keys"
    )
    for credential_id in report.failed:
        print(f"  unreadable, left as it was: {credential_id}", file=sys.stderr)
    if report.remaining:
        print("not done: run `woes-auth kek rotate` again to resume; old keys must stay configured until then")
        return 1 if report.failed else 3
    print("done: keys other than the primary may now be removed from the configuration")
    return 0


def _new_kek_id() -> str:
    return "k" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def add_commands(sub) -> None:
    kek = sub.add_parser("kek", help="key-encryption keys of test credentials (local: database + configuration)")
    ks = kek.add_subparsers(dest="kek_command", required=True)
    p = ks.add_parser("status", help="which key wraps how many records; exit 3 until all are under the primary")
    add_storage_flags(p)
    p.add_argument("--log-level")
    p = ks.add_parser("new-key", help="print a new id:base64 key entry for WOES_AUTH_KEK (a secret)")
    p.add_argument("--id", help="key id, default k<UTC time>")
    p = ks.add_parser(
        "rotate",
        help="make a new primary key (in the KEK file) and re-wrap every record; resumes an interrupted run",
    )
    add_storage_flags(p)
    p.add_argument("--log-level")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--max-rows", type=int, help="re-wrap at most this many records in this run")
    kek.set_defaults(func=cmd_kek)
