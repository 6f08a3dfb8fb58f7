"""``woes-auth audit list`` and ``workspace-settings get|set``."""

from __future__ import annotations

from auth_service.cli.shared import add_server_flags, call, parse_when


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
        request.start_time.FromDatetime(parse_when(args.since))
    if args.until:
        request.end_time.FromDatetime(parse_when(args.until))
    return call(args, "ListAuditEvents", request)


def cmd_workspace_settings(args) -> int:
    from woes.auth.v1 import audit_pb2 as apb

    if args.ws_command == "get":
        return call(args, "GetWorkspaceSettings", apb.GetWorkspaceSettingsRequest(workspace_id=args.workspace))
    return call(
        args,
        "UpdateWorkspaceSettings",
        apb.UpdateWorkspaceSettingsRequest(
            workspace_id=args.workspace, auto_revoke_exposed=args.auto_revoke_exposed == "on"
        ),
    )


def add_commands(sub) -> None:
    audit = sub.add_parser("audit", help="the audit trail")
    add_server_flags(audit)
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
    add_server_flags(ws)
    wss = ws.add_subparsers(dest="ws_command", required=True)
    p = wss.add_parser("get")
    p.add_argument("--workspace", required=True)
    p = wss.add_parser("set")
    p.add_argument("--workspace", required=True)
    p.add_argument("--auto-revoke-exposed", choices=("on", "off"), required=True)
    ws.set_defaults(func=cmd_workspace_settings)
