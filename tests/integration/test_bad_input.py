"""Bad input over a real server: the right code and reason, no secret in the answer, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import tokens
from auth_service.domain.keys.rules import IssueSpec
from tests.support.rich_errors import rich_error
from tests.support.rpc import assert_error, assert_no_secret_in, assert_still_serving, fail, issue

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def srv(live_server):
    live_server.good = issue(live_server, workspace_id="ws-good", scopes=["messages:write"])
    live_server.widget = issue(live_server, workspace_id="ws-good", kind=res.KEY_KIND_WIDGET)
    return live_server


def _flip_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def _with_valid_checksum(body: str) -> str:
    return body + tokens.checksum(body)


# Each case: (id, how to call, expected code, reason, expected violation fields or None).
def _auth(cred, scopes=()):
    return lambda s: fail(s.stub.Authenticate, pb.AuthenticateRequest(credential=cred(s), required_scopes=scopes))


def _widget(cred, origin=""):
    return lambda s: fail(s.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=cred(s), origin=origin))


def _admin(method, request):
    return lambda s: fail(getattr(s.stub, method), request(s), metadata=s.admin_md)


def _grace(**kw):
    return lambda s: pb.RotateRequest(key_id=s.good.key.key_id, grace_period=duration_pb2.Duration(**kw))


CASES = [
    ("empty credential", _auth(lambda s: ""), UNAUTH, "CREDENTIAL_MALFORMED", None),
    # Just under the 64 KiB message limit (larger messages: tests/integration/test_limits.py).
    ("60 KB credential", _auth(lambda s: "woes_sk_" + "A" * 60_000), UNAUTH, "CREDENTIAL_MALFORMED", None),
    ("60 KB valid-looking head", _auth(lambda s: s.good.secret * 780), UNAUTH, "CREDENTIAL_MALFORMED", None),
    ("wrong prefix", _auth(lambda s: "ghp_" + s.good.secret[8:]), UNAUTH, "CREDENTIAL_MALFORMED", None),
    (
        "unknown kind code with a valid checksum",
        _auth(lambda s: _with_valid_checksum("woes_xk_" + s.good.secret[8:-6])),
        UNAUTH,
        "CREDENTIAL_MALFORMED",
        None,
    ),
    ("prefix swapped to widget", _auth(lambda s: "woes_pk_" + s.good.secret[8:]), UNAUTH, "CREDENTIAL_MALFORMED", None),
    ("broken checksum", _auth(lambda s: _flip_last(s.good.secret)), UNAUTH, "CREDENTIAL_MALFORMED", None),
    (
        "secret typo",
        _auth(lambda s: _flip_last(s.good.secret[:30]) + s.good.secret[30:]),
        UNAUTH,
        "CREDENTIAL_MALFORMED",
        None,
    ),
    ("non-ascii credential", _auth(lambda s: s.good.secret[:-1] + "é"), UNAUTH, "CREDENTIAL_MALFORMED", None),
    ("widget key at Authenticate", _auth(lambda s: s.widget.secret), DENIED, "WIDGET_KEY_NOT_API_CREDENTIAL", None),
    ("server key at VerifyWidgetKey", _widget(lambda s: s.good.secret), DENIED, "CREDENTIAL_NOT_WIDGET_KEY", None),
    ("broken widget key", _widget(lambda s: _flip_last(s.widget.secret)), UNAUTH, "CREDENTIAL_MALFORMED", None),
    (
        "origin that is no origin",
        _widget(lambda s: s.widget.secret, origin="javascript:alert(1)"),
        INVALID,
        "INVALID_ARGUMENT",
        ["origin"],
    ),
    (
        "unknown scope at Authenticate",
        _auth(lambda s: s.good.secret, scopes=["messages:delete"]),
        INVALID,
        "INVALID_ARGUMENT",
        ["required_scopes"],
    ),
    (
        "unknown scope at IssueKey",
        _admin(
            "IssueKey",
            lambda s: pb.IssueKeyRequest(
                workspace_id="ws-1", kind=res.KEY_KIND_SERVER, scopes=["billing:read", "messages:read"]
            ),
        ),
        INVALID,
        "INVALID_ARGUMENT",
        ["scopes"],
    ),
    ("negative grace", _admin("Rotate", _grace(seconds=-1)), INVALID, "INVALID_ARGUMENT", ["grace_period"]),
    ("negative grace nanos", _admin("Rotate", _grace(nanos=-5)), INVALID, "INVALID_ARGUMENT", ["grace_period"]),
    ("30-day grace", _admin("Rotate", _grace(seconds=30 * 86400)), INVALID, "INVALID_ARGUMENT", ["grace_period"]),
    ("huge grace", _admin("Rotate", _grace(seconds=10**12)), INVALID, "INVALID_ARGUMENT", ["grace_period"]),
    (
        "negative page size",
        _admin("ListKeys", lambda s: pb.ListKeysRequest(page_size=-1)),
        INVALID,
        "INVALID_ARGUMENT",
        ["page_size"],
    ),
    (
        "forged page token",
        _admin("ListKeys", lambda s: pb.ListKeysRequest(page_token="not-a-token")),
        INVALID,
        "INVALID_ARGUMENT",
        ["page_token"],
    ),
    (
        "unknown key id",
        _admin("GetKey", lambda s: pb.GetKeyRequest(key_id=tokens.new_key_id())),
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        None,
    ),
    (
        "unknown key id rotated",
        _admin("Rotate", lambda s: pb.RotateRequest(key_id=tokens.new_key_id())),
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        None,
    ),
    (
        "key id of the wrong shape",
        _admin("GetKey", lambda s: pb.GetKeyRequest(key_id="../../etc/passwd")),
        INVALID,
        "INVALID_ARGUMENT",
        ["key_id"],
    ),
    (
        "a whole credential as key id",
        _admin("Revoke", lambda s: pb.RevokeRequest(key_id=s.good.secret)),
        INVALID,
        "INVALID_ARGUMENT",
        ["key_id"],
    ),
    (
        "empty IssueKey",
        _admin("IssueKey", lambda s: pb.IssueKeyRequest()),
        INVALID,
        "INVALID_ARGUMENT",
        ["workspace_id", "kind"],
    ),
    (
        "unknown kind number",
        _admin("IssueKey", lambda s: pb.IssueKeyRequest(workspace_id="ws-1", kind=99, scopes=["messages:read"])),
        INVALID,
        "INVALID_ARGUMENT",
        ["kind"],
    ),
]


@pytest.mark.parametrize("call, code, reason, fields", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_the_server_keeps_serving(srv, call, code, reason, fields):
    err = call(srv)
    assert_error(err, code, reason)
    if fields is not None:
        assert [f for f, _ in err.violations] == fields
    assert len(err.message) < 500, "the message must not echo large input"
    assert_still_serving(srv, srv.good.secret)


def test_a_revoked_key_cannot_be_rotated(srv):
    victim = issue(srv)
    srv.stub.Revoke(pb.RevokeRequest(key_id=victim.key.key_id), metadata=srv.admin_md)
    err = fail(srv.stub.Rotate, pb.RotateRequest(key_id=victim.key.key_id), metadata=srv.admin_md)
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "KEY_NOT_ROTATABLE")
    assert_still_serving(srv, srv.good.secret)


def _fill(srv, count: int) -> None:
    """Insert keys directly through the domain (fast); the listing below goes over the wire."""
    spec = IssueSpec(workspace_id="ws-many", kind=tokens.KeyKind.SERVER, scopes=("messages:read",))
    for _ in range(count):
        srv.manager.issue_key("admin:test", spec)


def test_page_size_zero_means_default_and_huge_means_capped(srv):
    _fill(srv, 1001)
    default = srv.stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-many", page_size=0), metadata=srv.admin_md)
    assert len(default.keys) == 100 and default.next_page_token
    capped = srv.stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-many", page_size=10**6), metadata=srv.admin_md)
    assert len(capped.keys) == 1000 and capped.next_page_token
    rest = srv.stub.ListKeys(
        pb.ListKeysRequest(workspace_id="ws-many", page_size=10**6, page_token=capped.next_page_token),
        metadata=srv.admin_md,
    )
    assert len(rest.keys) == 1 and not rest.next_page_token
    assert len({k.key_id for k in capped.keys} | {rest.keys[0].key_id}) == 1001
    assert_still_serving(srv, srv.good.secret)


# -- bytes that are not a valid message ---------------------------------------------------


def _raw(srv, method: str):
    """A call that sends hand-made bytes and receives raw bytes (no (de)serializer)."""
    return srv.channel.unary_unary(f"/woes.auth.v1.AuthService/{method}")


def _field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


RAW_CASES = [
    ("Authenticate", _field(1, b"woes_sk_\xff\xfe")),
    ("Authenticate", _field(1, b"ok") + _field(2, b"messages:\xc3(")),
    ("VerifyWidgetKey", _field(2, b"https://\xed\xa0\x80.example")),  # an encoded surrogate
    ("IssueKey", _field(1, b"ws-\x80") + bytes([2 << 3, 1])),
    ("Revoke", _field(1, b"AAAAAAAAAAAA") + _field(2, b"reason \xc0\xaf")),  # overlong encoding
    ("ListKeys", _field(3, b"\xf8\x88\x80\x80\x80")),
    ("Authenticate", b"\x0a\x7f" + b"short"),  # a length past the end
    ("GetKey", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),  # a broken varint tag
]


@pytest.mark.parametrize("method, body", RAW_CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(RAW_CASES)])
def test_undecodable_bytes_are_invalid_argument(srv, method, body):
    metadata = srv.admin_md if method not in ("Authenticate", "VerifyWidgetKey") else ()
    with pytest.raises(grpc.RpcError) as info:
        _raw(srv, method)(body, metadata=metadata, timeout=30)
    err = rich_error(info.value)
    assert_error(err, INVALID, "INVALID_ARGUMENT")
    assert [f for f, _ in err.violations] == ["request"]
    assert_no_secret_in([err.message])
    assert_still_serving(srv, srv.good.secret)


def test_raw_bytes_of_a_valid_message_still_work(srv):
    """The hand-made path itself is sound: valid bytes authenticate (so the refusals above are about the bytes)."""
    body = pb.AuthenticateRequest(credential=srv.good.secret).SerializeToString()
    answer = pb.AuthenticateResponse.FromString(_raw(srv, "Authenticate")(body, timeout=30))
    assert answer.principal.key_id == srv.good.key.key_id
