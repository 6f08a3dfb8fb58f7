"""``woes-auth keys issue|list|get|rotate|revoke``: workspace keys through a running server."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from auth_service.cli.shared import add_server_flags, call
from auth_service.domain.errors import ConfigError

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
        return call(args, "IssueKey", request)
    if args.keys_command == "list":
        return call(
            args,
            "ListKeys",
            pb.ListKeysRequest(
                workspace_id=args.workspace or "", page_size=args.page_size, page_token=args.page_token or ""
            ),
        )
    if args.keys_command == "get":
        return call(args, "GetKey", pb.GetKeyRequest(key_id=args.key_id))
    if args.keys_command == "rotate":
        request = pb.RotateRequest(key_id=args.key_id)
        if args.grace_seconds is not None:
            request.grace_period.CopyFrom(duration_pb2.Duration(seconds=args.grace_seconds))
        return call(args, "Rotate", request)
    if args.keys_command == "revoke":
        return call(args, "Revoke", pb.RevokeRequest(key_id=args.key_id, reason=args.reason or ""))
    raise AssertionError(args.keys_command)


def add_commands(sub) -> None:
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
