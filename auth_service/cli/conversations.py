"""``woes-auth conversations issue|verify|revoke|rotate-key``: conversation history secrets.

A conversation secret is read from a file or standard input, never from a flag value."""

from __future__ import annotations

from auth_service.cli.shared import add_server_flags, call, read_secret


def cmd_conversations(args) -> int:
    from google.protobuf import duration_pb2
    from woes.auth.v1 import conversations_pb2 as cpb

    c = args.conversations_command
    if c == "issue":
        return call(
            args,
            "IssueConversationSecret",
            cpb.IssueConversationSecretRequest(
                public_key=args.public_key, conversation_id=args.conversation, origin=args.origin or ""
            ),
            internal=True,
        )
    if c == "verify":
        return call(
            args,
            "VerifyConversationSecret",
            cpb.VerifyConversationSecretRequest(
                public_key=args.public_key,
                origin=args.origin or "",
                conversation_id=args.conversation,
                secret=read_secret(args.secret_file, "conversation history secret"),
            ),
            admin=False,
        )
    if c == "revoke":
        return call(
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
        return call(args, "RotateConversationSigningKey", request)
    raise AssertionError(c)


def add_commands(sub) -> None:
    conv = sub.add_parser("conversations", help="conversation history secrets")
    add_server_flags(conv)
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
