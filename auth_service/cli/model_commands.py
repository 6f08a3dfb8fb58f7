"""``woes-auth`` commands of the rest of the credential model.

    woes-auth conversations issue|verify|revoke|rotate-key
    woes-auth test-credentials put|list|get|delete|reveal
    woes-auth audit list
    woes-auth workspace-settings get|set
    woes-auth kek status|new-key|rotate

Secrets are never taken from flag values (flags end up in shell history and
process lists): test credential material and conversation secrets are read
from a file or standard input.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from auth_service.app.config import ConfigError
from auth_service.ops import logs

_TC_KINDS = {"bearer_token": 1, "api_key": 2, "basic_auth": 3, "oauth_client_secret": 4, "other": 5}


def _read_secret(path: str | None, what: str) -> str:
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


def _when(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _rpc(args, method: str, request, *, admin: bool = True, internal: bool = False) -> int:
    from auth_service.cli.main import _call

    return _call(args, method, request, admin=admin, internal=internal)


# -- conversations ------------------------------------------------------------------


def cmd_conversations(args) -> int:
    from google.protobuf import duration_pb2
    from woes.auth.v1 import conversations_pb2 as cpb

    c = args.conversations_command
    if c == "issue":
        return _rpc(
            args,
            "IssueConversationSecret",
            cpb.IssueConversationSecretRequest(
                public_key=args.public_key, conversation_id=args.conversation, origin=args.origin or ""
            ),
            internal=True,
        )
    if c == "verify":
        return _rpc(
            args,
            "VerifyConversationSecret",
            cpb.VerifyConversationSecretRequest(
                public_key=args.public_key,
                origin=args.origin or "",
                conversation_id=args.conversation,
                secret=_read_secret(args.secret_file, "conversation history secret"),
            ),
            admin=False,
        )
    if c == "revoke":
        return _rpc(
            args,
            "RevokeConversationSecret",
            cpb.RevokeConversationSecretRequest(
                workspace_id=args.workspace, conversation_id=args.conversation, reason=args.reason or ""
            ),
        )
    if c == "rotate-key":
        request = cpb.RotateConversationSigningKeyRequest(workspace_id=args.workspace)
        if args.grace_seconds is not None:
            request.grace_period.CopyFrom(duration_pb2.Duration(seconds=args.grace_seconds))
        return _rpc(args, "RotateConversationSigningKey", request)
    raise AssertionError(c)


# -- test credentials ------------------------------------------------------------------


def cmd_test_credentials(args) -> int:
    from woes.auth.v1 import test_credentials_pb2 as tpb

    c = args.tc_command
    if c == "put":
        return _rpc(
            args,
            "PutTestCredential",
            tpb.PutTestCredentialRequest(
                workspace_id=args.workspace,
                name=args.name,
                kind=_TC_KINDS[args.kind],
                secret_material=_read_secret(args.material_file, "secret material"),
                target_base_url=args.url,
            ),
        )
    if c == "list":
        return _rpc(
            args,
            "ListTestCredentials",
            tpb.ListTestCredentialsRequest(
                workspace_id=args.workspace, page_size=args.page_size, page_token=args.page_token or ""
            ),
        )
    if c == "get":
        return _rpc(
            args,
            "GetTestCredential",
            tpb.GetTestCredentialRequest(workspace_id=args.workspace, credential_id=args.credential_id),
        )
    if c == "delete":
        return _rpc(
            args,
            "DeleteTestCredential",
            tpb.DeleteTestCredentialRequest(workspace_id=args.workspace, credential_id=args.credential_id),
        )
    if c == "reveal":
        return _rpc(
            args,
            "RevealTestCredential",
            tpb.RevealTestCredentialRequest(
                workspace_id=args.workspace, credential_id=args.credential_id, reason=args.reason or ""
            ),
            internal=True,
        )
    raise AssertionError(c)


# -- audit and workspace settings ----------------------------------------------------------


def cmd_audit(args) -> int:
    from woes.auth.v1 import audit_pb2 as apb

    request = apb.ListAuditEventsRequest(
        workspace_id=args.workspace or "",
        key_id=args.key or "",
        action=args.action or "",
        page_size=args.page_size,
        page_token=args.page_token or "",
    )
    if args.since:
        request.start_time.FromDatetime(_when(args.since))
    if args.until:
        request.end_time.FromDatetime(_when(args.until))
    return _rpc(args, "ListAuditEvents", request)


def cmd_workspace_settings(args) -> int:
    from woes.auth.v1 import audit_pb2 as apb

    if args.ws_command == "get":
        return _rpc(args, "GetWorkspaceSettings", apb.GetWorkspaceSettingsRequest(workspace_id=args.workspace))
    return _rpc(
        args,
        "UpdateWorkspaceSettings",
        apb.UpdateWorkspaceSettingsRequest(
            workspace_id=args.workspace, auto_revoke_exposed=args.auto_revoke_exposed == "on"
        ),
    )


# -- key-encryption keys (local: needs the database and the KEK configuration) -----------------


def cmd_kek(args) -> int:
    from auth_service.app.runtime import check_schema
    from auth_service.app.services import load_ring
    from auth_service.cli.main import _settings
    from auth_service.domain.envelope import new_kek_entry, prepend_to_file
    from auth_service.domain.kek_rotation import RotationRefused, kek_state, rotate
    from auth_service.store import SqlStore
    from auth_service.store.model_tables import ModelStore

    if args.kek_command == "new-key":
        print(new_kek_entry(args.id or _new_kek_id()))
        return 0
    settings = _settings(args)
    logs.setup(getattr(args, "log_level", None) or settings.log_level)
    settings.require_keys(pepper=False)  # before the database is touched
    url = settings.resolved_database_url()
    check_schema(url)
    sql = SqlStore(url, create_schema=False)
    try:
        store = ModelStore(sql)
        ring, note = load_ring(settings, store, create=False)
        print(note, file=sys.stderr)
        if args.kek_command == "status":
            state = kek_state(store, ring)
            print("\n".join(state.lines()))
            return 3 if state.pending else 0

        def add_key() -> str:
            kek_id = _new_kek_id()
            prepend_to_file(ring.path, new_kek_entry(kek_id))
            ring.reload()
            return kek_id

        try:
            done = rotate(
                store, ring, add_key=add_key if ring.path else None, batch_size=args.batch_size, max_rows=args.max_rows
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


# -- parser --------------------------------------------------------------------------------


def _remote(p: argparse.ArgumentParser) -> None:
    from auth_service.cli.main import add_server_flags

    add_server_flags(p)


def add_model_commands(sub, add_storage_flags) -> None:
    conv = sub.add_parser("conversations", help="conversation history secrets")
    _remote(conv)
    cs = conv.add_subparsers(dest="conversations_command", required=True)
    p = cs.add_parser(
        "issue",
        help="issue the secret of one conversation (internal credential with widget:conversation_secrets:issue)",
    )
    p.add_argument("--public-key", required=True, help="the workspace's widget public key (public)")
    p.add_argument("--conversation", required=True)
    p.add_argument("--origin")
    p = cs.add_parser("verify", help="check a secret (read from --secret-file or stdin)")
    p.add_argument("--public-key", required=True)
    p.add_argument("--conversation", required=True)
    p.add_argument("--origin")
    p.add_argument("--secret-file", help="file holding the secret; '-' or absent: stdin")
    p = cs.add_parser("revoke", help="revoke every secret of one conversation")
    p.add_argument("--workspace", required=True)
    p.add_argument("--conversation", required=True)
    p.add_argument("--reason")
    p = cs.add_parser("rotate-key", help="rotate a workspace's history signing key (revokes all its secrets)")
    p.add_argument("--workspace", required=True)
    p.add_argument("--grace-seconds", type=int, help="0 (at once) to 604800, default 3600")
    conv.set_defaults(func=cmd_conversations)

    tc = sub.add_parser("test-credentials", help="API test credentials (encrypted at rest)")
    _remote(tc)
    ts = tc.add_subparsers(dest="tc_command", required=True)
    p = ts.add_parser("put", help="store or replace one (material from --material-file or stdin)")
    p.add_argument("--workspace", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--kind", choices=sorted(_TC_KINDS), default="bearer_token")
    p.add_argument("--url", required=True, help="target base URL of the customer's API")
    p.add_argument("--material-file", help="file holding the secret material; '-' or absent: stdin")
    p = ts.add_parser("list", help="list a workspace's test credentials (metadata only)")
    p.add_argument("--workspace", required=True)
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token")
    for name, text in (
        ("get", "show one (metadata only)"),
        ("delete", "erase one, material included"),
        ("reveal", "print the plaintext (internal credential with lab:test_credentials:reveal; audited)"),
    ):
        p = ts.add_parser(name, help=text)
        p.add_argument("credential_id")
        p.add_argument("--workspace", required=True)
        if name == "reveal":
            p.add_argument("--reason", help="why, for the audit trail")
    tc.set_defaults(func=cmd_test_credentials)

    audit = sub.add_parser("audit", help="the audit trail")
    _remote(audit)
    aus = audit.add_subparsers(dest="audit_command", required=True)
    p = aus.add_parser("list", help="list audit events, newest first")
    p.add_argument("--workspace")
    p.add_argument("--key", help="key, test credential or signing key id")
    p.add_argument("--action", help="e.g. key.revoke, test_credential.reveal, auth.failures")
    p.add_argument("--since", help="ISO 8601 time")
    p.add_argument("--until", help="ISO 8601 time")
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token")
    audit.set_defaults(func=cmd_audit)

    ws = sub.add_parser("workspace-settings", help="a workspace's credential policies")
    _remote(ws)
    wss = ws.add_subparsers(dest="ws_command", required=True)
    p = wss.add_parser("get")
    p.add_argument("--workspace", required=True)
    p = wss.add_parser("set")
    p.add_argument("--workspace", required=True)
    p.add_argument("--auto-revoke-exposed", choices=("on", "off"), required=True)
    ws.set_defaults(func=cmd_workspace_settings)

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
