"""Helpers for the end-to-end tests over a real server: issuing keys, checking errors for secrets."""

from __future__ import annotations

import base64

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from tests import conftest
from tests.support.rich_errors import RichError, rich_error

DOMAIN = "auth.woes"


def issue(srv, kind=res.KEY_KIND_SERVER, workspace_id="ws-1", scopes=None, **fields) -> pb.IssueKeyResponse:
    """Issue a key through the real IssueKey RPC as the server's admin."""
    if scopes is None:
        scopes = ["conversations:write"] if kind == res.KEY_KIND_SERVER else []
    request = pb.IssueKeyRequest(workspace_id=workspace_id, kind=kind, scopes=scopes, **fields)
    return srv.stub.IssueKey(request, metadata=srv.admin_md, timeout=30)


def secret_forms(secret: str) -> list[str]:
    """The whole credential and its random part (which must never leak even without the prefix)."""
    forms = [secret]
    body = secret.split("_")
    if len(body) == 4 and len(body[3]) > 20:
        forms.append(body[3][:-6])
    return forms


def digest_forms(digest: bytes) -> list[bytes]:
    return [digest, digest.hex().encode(), base64.b64encode(digest), base64.urlsafe_b64encode(digest).rstrip(b"=")]


def assert_no_secret_in(texts, extra: tuple[str, ...] = ()) -> None:
    """No minted secret (nor the random part of one) appears in any of ``texts``."""
    blob = "\n".join(t if isinstance(t, str) else t.decode("latin-1") for t in texts)
    for secret in set(conftest.MINTED) | set(extra):
        for form in secret_forms(secret):
            assert form not in blob, "a secret appears in the error"


def fail(fn, request, **kwargs) -> RichError:
    """Call an RPC that must fail; check that neither its message nor any trailing metadata holds a secret."""
    kwargs.setdefault("timeout", 30)
    try:
        fn(request, **kwargs)
    except grpc.RpcError as err:
        texts = [err.details() or ""]
        for key, value in err.trailing_metadata() or ():
            texts.extend([key, value])
        for key, value in err.initial_metadata() or ():
            texts.extend([key, value])
        decoded = rich_error(err)
        texts.extend(decoded.metadata.values())
        texts.extend(f"{f} {d}" for f, d in decoded.violations)
        assert_no_secret_in(texts)
        return decoded
    raise AssertionError("the call succeeded but was expected to fail")


def assert_error(err: RichError, code: grpc.StatusCode, reason: str) -> None:
    assert (err.code, err.reason) == (code, reason), f"got {err.code} {err.reason}: {err.message}"
    assert err.domain == DOMAIN


def health_status(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status


def assert_still_serving(srv, good_secret: str) -> None:
    """The server answers health SERVING and still authenticates a good credential."""
    assert health_status(srv.channel) == health_pb2.HealthCheckResponse.SERVING
    got = srv.stub.Authenticate(pb.AuthenticateRequest(credential=good_secret), timeout=30)
    assert got.principal.key_id
