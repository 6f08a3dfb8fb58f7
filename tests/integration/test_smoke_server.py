"""A first end-to-end pass over a real server (the thorough tests live in test_rpc_*.py)."""

import grpc
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from tests.support.rich_errors import call_error


def test_issue_then_authenticate(live_server):
    issued = live_server.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_SERVER, scopes=["conversations:write"]),
        metadata=live_server.admin_md,
    )
    got = live_server.stub.Authenticate(
        pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:read"])
    )
    assert got.principal.key_id == issued.key.key_id
    assert got.principal.workspace_id == "ws-1"
    last = issued.secret[-1]
    broken = issued.secret[:-1] + ("y" if last == "x" else "x")
    err = call_error(live_server.stub.Authenticate, pb.AuthenticateRequest(credential=broken))
    assert err.code is grpc.StatusCode.UNAUTHENTICATED
    assert err.reason == "CREDENTIAL_MALFORMED"
