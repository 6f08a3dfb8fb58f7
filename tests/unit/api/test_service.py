"""The servicer as a unit under grpc_testing: every RPC's success path and the status codes of failures.

grpc_testing's context has no ``abort_with_status``, so rich details (ErrorInfo,
BadRequest) are not visible here: ``status.abort`` falls back to ``context.abort``
with the status code and message. The details are checked on ``status_for``
directly, and over a real server by the server tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import grpc_testing
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from auth_service.api import convert, fastpath, service
from auth_service.api.status import status_for
from auth_service.app.services import credential_manager
from auth_service.domain import tokens
from auth_service.domain.clock import utcnow
from auth_service.domain.errors import (
    CredentialRevoked,
    FieldViolation,
    InsufficientScope,
    InvalidArgument,
    KeyNotFound,
    StoreUnavailable,
)
from auth_service.domain.keys.hot_path import KNOWN_UNKNOWN
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import KeyRecord, StoredState
from auth_service.domain.tokens import KeyKind
from auth_service.store import SqlStore
from tests.conftest import free_port

SERVICE = pb.DESCRIPTOR.services_by_name["AuthService"]


class Harness:
    def __init__(self, manager: CredentialManager):
        self.manager = manager
        self.servicer = service.AuthServicer(manager)
        self.server = grpc_testing.server_from_dictionary({SERVICE: self.servicer}, grpc_testing.strict_real_time())
        self.admin_secret = manager.bootstrap_admin("servicer test").secret

    @property
    def admin_md(self):
        return (("authorization", f"Bearer {self.admin_secret}"),)

    def call(self, method: str, request, metadata=()):
        invocation = self.server.invoke_unary_unary(SERVICE.methods_by_name[method], metadata, request, None)
        return invocation.termination()  # response, trailing metadata, code, details

    def ok(self, method: str, request, metadata=()):
        response, _, code, details = self.call(method, request, metadata)
        assert code is grpc.StatusCode.OK, (code, details)
        return response

    def fails(self, method: str, request, metadata=()) -> tuple[grpc.StatusCode, str]:
        response, _, code, details = self.call(method, request, metadata)
        assert code is not grpc.StatusCode.OK
        return code, details

    def issue(self, **fields) -> pb.IssueKeyResponse:
        fields.setdefault("workspace_id", "ws-1")
        fields.setdefault("kind", res.KEY_KIND_SERVER)
        if fields["kind"] == res.KEY_KIND_SERVER:
            fields.setdefault("scopes", ["conversations:write"])
        return self.ok("IssueKey", pb.IssueKeyRequest(**fields), self.admin_md)


@pytest.fixture
def h(sqlite_url, pepper):
    store = SqlStore(sqlite_url)
    yield Harness(credential_manager(store, pepper))
    store.close()


# -- success paths ------------------------------------------------------------------------


def test_issue_key(h):
    expire = timestamp_pb2.Timestamp()
    expire.FromDatetime(datetime(2099, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    got = h.issue(display_name="svc", scopes=["messages:read", "conversations:write"], expire_time=expire)
    assert tokens.parse(got.secret).key_id == got.key.key_id
    assert not got.replayed
    key = got.key
    assert key.workspace_id == "ws-1"
    assert key.kind == res.KEY_KIND_SERVER
    assert key.display_name == "svc"
    assert list(key.scopes) == ["conversations:write", "messages:read"]
    assert key.state == res.KEY_STATE_ACTIVE
    assert key.expire_time == expire
    assert key.HasField("create_time")
    assert not key.HasField("revoke_time")
    assert key.hint == tokens.hint(got.secret)
    assert got.secret not in str(key)


def test_issue_widget_key_and_replay(h):
    got = h.issue(kind=res.KEY_KIND_WIDGET, allowed_origins=["HTTPS://App.Example"], request_id="r-1")
    assert got.key.kind == res.KEY_KIND_WIDGET
    assert list(got.key.allowed_origins) == ["https://app.example"]
    again = h.issue(kind=res.KEY_KIND_WIDGET, allowed_origins=["https://app.example"], request_id="r-1")
    assert again.replayed and again.secret == ""
    assert again.key.key_id == got.key.key_id


def test_authenticate(h):
    issued = h.issue(scopes=["conversations:write", "messages:read"])
    got = h.ok(
        "Authenticate",
        pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:read"], caller="svc"),
    )
    p = got.principal
    assert (p.key_id, p.workspace_id, p.kind) == (issued.key.key_id, "ws-1", res.KEY_KIND_SERVER)
    assert list(p.scopes) == ["conversations:write", "messages:read"]
    assert not p.HasField("expire_time")
    # Same answer again (served from the cache).
    assert h.ok("Authenticate", pb.AuthenticateRequest(credential=issued.secret)) == got


def test_the_fused_front_answers_as_the_probe_then_the_gate(h):
    """``authenticate_front`` (the gate's first frame on plaintext without logs) must be
    ``authenticate_cached`` followed by the rest of the gate, case by case."""
    issued = h.issue(scopes=["conversations:write", "messages:read"])
    unknown = tokens.mint(KeyKind.SERVER).token
    h.manager.authenticate(issued.secret)  # cached
    with pytest.raises(Exception):
        h.manager.authenticate(unknown)  # remembered as unknown
    ok_before = h.servicer.authenticate_outcomes.snapshot()["ok"]
    passed_on = []
    front = h.servicer.authenticate_front(lambda request, context, found: passed_on.append(found) or "rest")
    cases = [
        pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:read"], caller="svc"),
        pb.AuthenticateRequest(credential=issued.secret, required_scopes=["webhooks:write"]),  # not held
        pb.AuthenticateRequest(credential=unknown),  # the negative cache's refusal
        pb.AuthenticateRequest(credential="not a credential"),  # malformed
        pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token),  # never seen: None
        fastpath.UNDECODABLE,
    ]
    for request in cases:
        passed_on.clear()
        expected = h.servicer.authenticate_cached(request)
        got = front(request, None)
        if type(expected) is bytes:
            assert got == expected and passed_on == []
            assert pb.AuthenticateResponse.FromString(got).principal.key_id == issued.key.key_id
        else:
            assert got == "rest" and len(passed_on) == 1
            found = passed_on[0]
            assert (found is None and expected is None) or (found.reason, found.message) == (
                expected.reason,
                expected.message,
            )
    # The one grant, asked of each, was counted once each as an ok outcome; nothing else was.
    assert h.servicer.authenticate_outcomes.snapshot()["ok"] == ok_before + 2


def test_the_front_over_request_bytes_answers_as_the_front_over_decoded_requests(h):
    """With a decoder, ``authenticate_front`` takes the request's bytes (the gate registers it so):
    each case is answered as the front over the decoded request answers it, the first grant of
    some bytes and every repeat of them alike, and what it passes on is the decoded request."""
    issued = h.issue(scopes=["conversations:write", "messages:read"])
    unknown = tokens.mint(KeyKind.SERVER).token
    h.manager.authenticate(issued.secret)  # cached
    with pytest.raises(Exception):
        h.manager.authenticate(unknown)  # remembered as unknown
    passed_on = []

    def rest(request, context, found):
        passed_on.append((request, found))
        return "rest"

    decode = fastpath.safe_deserializer(pb.AuthenticateRequest)
    front_wire = h.servicer.authenticate_front(rest, decode)
    front = h.servicer.authenticate_front(rest)
    granted = pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:read"], caller="svc")
    cases = [
        granted.SerializeToString(),
        pb.AuthenticateRequest(credential=issued.secret, required_scopes=["webhooks:write"]).SerializeToString(),
        pb.AuthenticateRequest(credential=unknown).SerializeToString(),
        pb.AuthenticateRequest(credential="not a credential").SerializeToString(),
        pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token).SerializeToString(),
        b"\x0a\x02\xff\xfe",  # a credential that is not UTF-8: undecodable
    ]
    ok_before = h.servicer.authenticate_outcomes.snapshot()["ok"]
    for wire in cases * 3:  # the second and third time, a grant is a repeat
        passed_on.clear()
        expected = front(decode(wire), None)
        expected_passed = list(passed_on)
        passed_on.clear()
        got = front_wire(wire, None)
        assert got == expected
        assert [(r if r is fastpath.UNDECODABLE else r.SerializeToString(), f) for r, f in passed_on] == [
            (r if r is fastpath.UNDECODABLE else r.SerializeToString(), f) for r, f in expected_passed
        ]
    assert pb.AuthenticateResponse.FromString(front_wire(cases[0], None)).principal.key_id == issued.key.key_id
    assert len(h.manager.cache.memo) == 1  # the one grant, remembered by its bytes
    # Each grant counted once as an ok outcome: 3 rounds of two fronts, and the last call.
    assert h.servicer.authenticate_outcomes.snapshot()["ok"] == ok_before + 7
    # A revocation stops the repeat at once: the bytes go the long way and are refused there.
    h.manager.revoke("admin:test", issued.key.key_id, "test")
    passed_on.clear()
    assert front_wire(cases[0], None) == "rest"
    assert passed_on[0][0].credential == issued.secret and passed_on[0][1] is None


def test_the_front_over_bytes_hands_a_remembered_refusal_to_the_gate_with_its_key_id(h):
    """A request the negative cache refuses goes to ``refuse(context, key_id, KNOWN_UNKNOWN)``
    (the gate's accounting): decoded at its first sight, from its bytes alone on a repeat; when the
    gate declines it (a bucket may be empty), the decoded request goes on to ``rest`` with the
    same refusal."""
    unknown = tokens.mint(KeyKind.SERVER)
    with pytest.raises(Exception):
        h.manager.authenticate(unknown.token)  # first sight: remembered as unknown
    passed_on, refused = [], []
    take = True

    def refuse(context, key_id, error):
        refused.append((context, key_id, error))
        return take

    decoded = []
    real_decode = fastpath.safe_deserializer(pb.AuthenticateRequest)

    def decode(wire):
        decoded.append(wire)
        return real_decode(wire)

    front_wire = h.servicer.authenticate_front(lambda r, c, f: passed_on.append((r, f)) or "rest", decode, refuse)
    wire = pb.AuthenticateRequest(credential=unknown.token, required_scopes=["messages:read"]).SerializeToString()
    # The probe's refusal (decoded), now remembered by these bytes: the gate's accounting too.
    assert front_wire(wire, "ctx") is None
    assert refused == [("ctx", "", KNOWN_UNKNOWN)] and passed_on == []
    decoded.clear()
    refused.clear()
    for _ in range(3):
        assert front_wire(wire, "ctx") is None
    assert refused == [("ctx", unknown.key_id, KNOWN_UNKNOWN)] * 3
    assert decoded == [] and passed_on == []
    take = False  # the gate must see the request
    assert front_wire(wire, "ctx") == "rest"
    assert passed_on[0][0].credential == unknown.token and passed_on[0][1] is KNOWN_UNKNOWN
    assert h.manager.cache.memo.refusals() == 1


def test_authenticate_reports_expiry(h):
    when = utcnow().replace(microsecond=0) + timedelta(days=2)
    expire = timestamp_pb2.Timestamp()
    expire.FromDatetime(when)
    issued = h.issue(expire_time=expire)
    got = h.ok("Authenticate", pb.AuthenticateRequest(credential=issued.secret))
    assert got.principal.expire_time == expire


def test_verify_widget_key(h):
    issued = h.issue(kind=res.KEY_KIND_WIDGET, allowed_origins=["https://app.example"])
    got = h.ok("VerifyWidgetKey", pb.VerifyWidgetKeyRequest(public_key=issued.secret, origin="https://app.example"))
    assert (got.workspace_id, got.key_id) == ("ws-1", issued.key.key_id)


def test_rotate(h):
    issued = h.issue()
    got = h.ok("Rotate", pb.RotateRequest(key_id=issued.key.key_id), h.admin_md)
    assert tokens.parse(got.secret).key_id == got.key.key_id
    assert got.key.rotated_from == issued.key.key_id
    assert got.previous_key.key_id == issued.key.key_id
    assert got.previous_key.state == res.KEY_STATE_ROTATED
    assert got.previous_key.rotated_to == got.key.key_id
    grace = got.previous_key.grace_expire_time.ToDatetime(tzinfo=UTC) - utcnow()
    assert timedelta(hours=23) < grace <= timedelta(hours=24)
    # An explicit grace period.
    again = h.ok(
        "Rotate",
        pb.RotateRequest(key_id=got.key.key_id, grace_period=duration_pb2.Duration(seconds=3600)),
        h.admin_md,
    )
    grace = again.previous_key.grace_expire_time.ToDatetime(tzinfo=UTC) - utcnow()
    assert timedelta(minutes=55) < grace <= timedelta(hours=1)
    # Both the old and the new credential authenticate during the grace.
    h.ok("Authenticate", pb.AuthenticateRequest(credential=issued.secret))
    h.ok("Authenticate", pb.AuthenticateRequest(credential=again.secret))


def test_revoke(h):
    issued = h.issue()
    got = h.ok("Revoke", pb.RevokeRequest(key_id=issued.key.key_id, reason="leaked"), h.admin_md)
    assert got.key.state == res.KEY_STATE_REVOKED
    assert got.key.revoke_reason == "leaked"
    assert got.key.HasField("revoke_time")
    again = h.ok("Revoke", pb.RevokeRequest(key_id=issued.key.key_id), h.admin_md)
    assert again.key.revoke_time == got.key.revoke_time


def test_get_key(h):
    issued = h.issue()
    got = h.ok("GetKey", pb.GetKeyRequest(key_id=issued.key.key_id), h.admin_md)
    assert got.key == issued.key
    assert issued.secret not in str(got)


def test_list_keys(h):
    issued = [h.issue(workspace_id="ws-list").key.key_id for _ in range(5)]
    seen, token = [], ""
    while True:
        page = h.ok("ListKeys", pb.ListKeysRequest(workspace_id="ws-list", page_size=2, page_token=token), h.admin_md)
        assert len(page.keys) <= 2
        seen += [k.key_id for k in page.keys]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(issued)
    everything = h.ok("ListKeys", pb.ListKeysRequest(), h.admin_md)
    assert len(everything.keys) == 5  # five keys; the admin key is never listed
    assert {k.key_id for k in everything.keys} >= set(issued)


def test_key_message_never_carries_a_digest():
    names = {f.name for f in res.Key.DESCRIPTOR.fields}
    assert not {n for n in names if "digest" in n or "secret" in n or "pepper" in n}


# -- failures: status codes --------------------------------------------------------------------


def test_authenticate_failures(h):
    server = h.issue(scopes=["messages:read"])
    widget = h.issue(kind=res.KEY_KIND_WIDGET)
    cases = [
        (pb.AuthenticateRequest(credential=""), grpc.StatusCode.UNAUTHENTICATED),
        (pb.AuthenticateRequest(credential="x" * (1 << 20)), grpc.StatusCode.UNAUTHENTICATED),
        (pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token), grpc.StatusCode.UNAUTHENTICATED),
        (pb.AuthenticateRequest(credential=widget.secret), grpc.StatusCode.PERMISSION_DENIED),
        (pb.AuthenticateRequest(credential=h.admin_secret), grpc.StatusCode.PERMISSION_DENIED),
        (
            pb.AuthenticateRequest(credential=server.secret, required_scopes=["messages:write"]),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            pb.AuthenticateRequest(credential=server.secret, required_scopes=["nope:read"]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for request, expected in cases:
        code, details = h.fails("Authenticate", request)
        assert code is expected, (request.credential[:20], details)
        assert server.secret not in details and widget.secret not in details and h.admin_secret not in details
    h.ok("Revoke", pb.RevokeRequest(key_id=server.key.key_id), h.admin_md)
    code, details = h.fails("Authenticate", pb.AuthenticateRequest(credential=server.secret))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in details


def test_verify_widget_key_failures(h):
    widget = h.issue(kind=res.KEY_KIND_WIDGET, allowed_origins=["https://app.example"])
    server = h.issue()
    assert h.fails("VerifyWidgetKey", pb.VerifyWidgetKeyRequest(public_key=server.secret))[0] is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert h.fails(
        "VerifyWidgetKey", pb.VerifyWidgetKeyRequest(public_key=widget.secret, origin="https://evil.example")
    )[0] is (grpc.StatusCode.PERMISSION_DENIED)
    assert h.fails("VerifyWidgetKey", pb.VerifyWidgetKeyRequest(public_key=widget.secret, origin="not an origin"))[
        0
    ] is (grpc.StatusCode.INVALID_ARGUMENT)
    assert h.fails("VerifyWidgetKey", pb.VerifyWidgetKeyRequest(public_key="woes_pk_x"))[0] is (
        grpc.StatusCode.UNAUTHENTICATED
    )


@pytest.mark.parametrize(
    "method,request_",
    [
        ("IssueKey", pb.IssueKeyRequest(workspace_id="ws", kind=res.KEY_KIND_SERVER, scopes=["messages:read"])),
        ("Rotate", pb.RotateRequest(key_id="A" * 12)),
        ("Revoke", pb.RevokeRequest(key_id="A" * 12)),
        ("GetKey", pb.GetKeyRequest(key_id="A" * 12)),
        ("ListKeys", pb.ListKeysRequest()),
    ],
)
def test_admin_rpcs_need_an_admin_credential(h, method, request_):
    server = h.issue()
    assert h.fails(method, request_)[0] is grpc.StatusCode.UNAUTHENTICATED
    assert h.fails(method, request_, (("authorization", "Basic abc"),))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert h.fails(method, request_, (("authorization", "Bearer garbage"),))[0] is grpc.StatusCode.UNAUTHENTICATED
    bearer_server = (("authorization", f"Bearer {server.secret}"),)
    code, details = h.fails(method, request_, bearer_server)
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert server.secret not in details


def test_admin_failures(h):
    issued = h.issue()
    assert h.fails("GetKey", pb.GetKeyRequest(key_id="A" * 12), h.admin_md)[0] is grpc.StatusCode.NOT_FOUND
    assert h.fails("GetKey", pb.GetKeyRequest(key_id="short"), h.admin_md)[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert h.fails("IssueKey", pb.IssueKeyRequest(workspace_id="ws"), h.admin_md)[0] is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    h.issue(request_id="dup", scopes=["messages:read"])
    assert h.fails(
        "IssueKey",
        pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_SERVER, scopes=["webhooks:read"], request_id="dup"),
        h.admin_md,
    )[0] is (grpc.StatusCode.ALREADY_EXISTS)
    for grace in (duration_pb2.Duration(seconds=-1), duration_pb2.Duration(seconds=30 * 86400)):
        code, _ = h.fails("Rotate", pb.RotateRequest(key_id=issued.key.key_id, grace_period=grace), h.admin_md)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
    h.ok("Revoke", pb.RevokeRequest(key_id=issued.key.key_id), h.admin_md)
    assert h.fails("Rotate", pb.RotateRequest(key_id=issued.key.key_id), h.admin_md)[0] is (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert h.fails("ListKeys", pb.ListKeysRequest(page_size=-1), h.admin_md)[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert h.fails("ListKeys", pb.ListKeysRequest(page_token="nope"), h.admin_md)[0] is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert len(h.ok("ListKeys", pb.ListKeysRequest(page_size=10**6), h.admin_md).keys) == 2  # no admin key


def test_issue_key_with_an_unrepresentable_expire_time_is_invalid_argument(h):
    request = pb.IssueKeyRequest(workspace_id="ws", kind=res.KEY_KIND_SERVER, scopes=["messages:read"])
    request.expire_time.seconds = 10**12  # beyond year 9999
    assert h.fails("IssueKey", request, h.admin_md)[0] is grpc.StatusCode.INVALID_ARGUMENT


def test_store_unavailable_is_unavailable(pepper, sqlite_url):
    store = SqlStore(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres", create_schema=False)
    try:
        servicer = service.AuthServicer(credential_manager(store, pepper))
        server = grpc_testing.server_from_dictionary({SERVICE: servicer}, grpc_testing.strict_real_time())
        request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
        _, _, code, _ = server.invoke_unary_unary(
            SERVICE.methods_by_name["Authenticate"], (), request, None
        ).termination()
        assert code is grpc.StatusCode.UNAVAILABLE
        admin = (("authorization", f"Bearer {tokens.mint(KeyKind.ADMIN).token}"),)
        _, _, code, _ = server.invoke_unary_unary(
            SERVICE.methods_by_name["ListKeys"], admin, pb.ListKeysRequest(), None
        ).termination()
        assert code is grpc.StatusCode.UNAVAILABLE
    finally:
        store.close()


# -- error mapping and conversions (pure) --------------------------------------------------------


def _details(status):
    info, bad = None, None
    for any_ in status.details:
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
    return info, bad


def test_status_for_carries_error_info():
    status = status_for(InsufficientScope(["messages:write", "webhooks:read"]))
    assert status.code == code_pb2.PERMISSION_DENIED
    info, bad = _details(status)
    assert (info.domain, info.reason) == ("auth.woes", "INSUFFICIENT_SCOPE")
    assert dict(info.metadata) == {"missing_scopes": "messages:write,webhooks:read"}
    assert bad is None
    assert "messages:write" in status.message


def test_status_for_invalid_argument_carries_field_violations():
    status = status_for(InvalidArgument([FieldViolation("scopes", "unknown"), FieldViolation("kind", "required")]))
    assert status.code == code_pb2.INVALID_ARGUMENT
    info, bad = _details(status)
    assert info.reason == "INVALID_ARGUMENT"
    assert [(v.field, v.description) for v in bad.field_violations] == [("scopes", "unknown"), ("kind", "required")]


@pytest.mark.parametrize(
    "error,code",
    [
        (CredentialRevoked("x"), code_pb2.UNAUTHENTICATED),
        (KeyNotFound("AAAAAAAAAAAA"), code_pb2.NOT_FOUND),
        (StoreUnavailable(), code_pb2.UNAVAILABLE),
    ],
)
def test_status_codes(error, code):
    status = status_for(error)
    assert status.code == code
    info, _ = _details(status)
    assert info.reason == error.reason


def test_key_to_pb_derives_expired_state():
    past = utcnow() - timedelta(seconds=1)
    record = KeyRecord(
        key_id="A" * 12,
        workspace_id="ws",
        kind=KeyKind.SERVER,
        display_name="",
        scopes=("messages:read",),
        allowed_origins=(),
        digest=b"\x00" * 32,
        pepper_id="p",
        hint="h",
        create_time=past - timedelta(days=1),
        expire_time=past,
    )
    assert convert.key_to_pb(record).state == res.KEY_STATE_EXPIRED
    rotated = KeyRecord(**{**record.__dict__, "expire_time": None, "stored_state": StoredState.ROTATED})
    assert convert.key_to_pb(rotated).state == res.KEY_STATE_ROTATED
    assert b"\x00" * 32 not in convert.key_to_pb(record).SerializeToString()
