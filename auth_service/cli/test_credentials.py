"""``woes-auth test-credentials put|list|get|delete|reveal``: API test credentials.

The material is read from a file or standard input, never from a flag value."""

from __future__ import annotations

from auth_service.cli.shared import add_server_flags, call, read_secret

_TC_KINDS = {"bearer_token": 1, "api_key": 2, "basic_auth": 3, "oauth_client_secret": 4, "other": 5}


def cmd_test_credentials(args) -> int:
    from woes.auth.v1 import test_credentials_pb2 as tpb

    c = args.tc_command
    if c == "put":
        return call(
            args,
            "PutTestCredential",
            tpb.PutTestCredentialRequest(
                workspace_id=args.workspace,
                name=args.name,
                kind=_TC_KINDS[args.kind],
                secret_material=read_secret(args.material_file, "secret material"),
                target_base_url=args.url,
            ),
        )
    if c == "list":
        return call(
            args,
            "ListTestCredentials",
            tpb.ListTestCredentialsRequest(
                workspace_id=args.workspace, page_size=args.page_size, page_token=args.page_token or ""
            ),
        )
    if c == "get":
        return call(
            args,
            "GetTestCredential",
            tpb.GetTestCredentialRequest(workspace_id=args.workspace, credential_id=args.credential_id),
        )
    if c == "delete":
        return call(
            args,
            "DeleteTestCredential",
            tpb.DeleteTestCredentialRequest(workspace_id=args.workspace, credential_id=args.credential_id),
        )
    if c == "reveal":
        return call(
            args,
            "RevealTestCredential",
            tpb.RevealTestCredentialRequest(
                workspace_id=args.workspace, credential_id=args.credential_id, reason=args.reason or ""
            ),
            internal=True,
        )
    raise AssertionError(c)


def add_commands(sub) -> None:
    tc = sub.add_parser("test-credentials", help="API test credentials (encrypted at rest)")
    add_server_flags(tc)
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
