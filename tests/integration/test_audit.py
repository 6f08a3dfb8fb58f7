"""Audit listing (filters, paging), aggregated failed authentications, usage metadata in GetKey."""

import time

import grpc
from google.protobuf import timestamp_pb2
from woes.auth.v1 import audit_pb2 as apb
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import tokens
from tests.support.services import Errors, audit_events, issue, leaked_in


def test_list_filters_and_pages(live_server_any_db):
    srv = live_server_any_db
    a = issue(srv, "ws-1")
    issue(srv, "ws-2")
    srv.stub.Revoke(pb.RevokeRequest(key_id=a.key.key_id, reason="test"), metadata=srv.admin_md)
    assert [e.action for e in audit_events(srv, key_id=a.key.key_id)] == ["key.revoke", "key.issue"]
    assert {e.workspace_id for e in audit_events(srv, workspace_id="ws-2")} == {"ws-2"}
    assert [e.key_id for e in audit_events(srv, action="key.revoke")] == [a.key.key_id]
    everything = audit_events(srv)
    assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
    # time range: nothing before the first event, everything from it
    first = everything[-1].time
    before = timestamp_pb2.Timestamp(seconds=first.seconds - 3600)
    assert audit_events(srv, end_time=before) == []
    assert len(audit_events(srv, start_time=before)) == len(everything)
    # pages of 1 cover everything once
    seen, token = [], ""
    while True:
        page = srv.stub.ListAuditEvents(
            apb.ListAuditEventsRequest(page_size=1, page_token=token), metadata=srv.admin_md
        )
        seen += [e.id for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seen == [e.id for e in everything]
    # a page token of another filter is refused; so is a non-admin caller
    errors = Errors()
    page = srv.stub.ListAuditEvents(apb.ListAuditEventsRequest(page_size=1), metadata=srv.admin_md)
    err = errors(
        srv.stub.ListAuditEvents,
        apb.ListAuditEventsRequest(workspace_id="ws-1", page_token=page.next_page_token),
        metadata=srv.admin_md,
    )
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT and err.violations[0][0] == "page_token"
    err = errors(srv.stub.ListAuditEvents, apb.ListAuditEventsRequest())
    assert err.reason == "ADMIN_CREDENTIAL_REQUIRED"
    assert not leaked_in([str(e) for e in everything] + errors.texts())


def test_failed_authentications_are_aggregated(live_server_any_db):
    srv = live_server_any_db
    revoked = issue(srv, "ws-1")
    srv.stub.Revoke(pb.RevokeRequest(key_id=revoked.key.key_id), metadata=srv.admin_md)
    errors = Errors()
    for _ in range(300):  # a flood of made-up, well-formed credentials
        errors(srv.stub.Authenticate, pb.AuthenticateRequest(credential=tokens.mint(tokens.KeyKind.SERVER).token))
    for _ in range(20):
        errors(srv.stub.Authenticate, pb.AuthenticateRequest(credential=revoked.secret))
    for _ in range(5):
        errors(srv.stub.Authenticate, pb.AuthenticateRequest(credential="garbage"))
    rows_before = len(audit_events(srv))
    written = srv.runtime.services.failures.flush()
    rows = audit_events(srv, action="auth.failures")
    assert written == len(rows) == 3, [(r.key_id, r.outcome) for r in rows]
    counts = {(r.key_id, r.outcome): int(r.detail.split()[0].split("=")[1]) for r in rows}
    assert counts == {
        ("", "CREDENTIAL_UNKNOWN"): 300,
        (revoked.key.key_id, "CREDENTIAL_REVOKED"): 20,
        ("", "CREDENTIAL_MALFORMED"): 5,
    }
    assert len(audit_events(srv)) == rows_before + 3
    assert srv.runtime.services.failures.flush() == 0
    assert not leaked_in([str(r) for r in rows] + errors.texts())


def test_failure_counter_is_bounded():
    from auth_service.sync.failures import FailureCounter

    counter = FailureCounter(store=None, max_keys=10)
    for n in range(1000):
        counter.record("Authenticate", "CREDENTIAL_REVOKED", f"{n:012d}")
    assert counter.pending() == 11  # ten keys and one overflow entry
    assert counter._counts[("Authenticate", "", "OVERFLOW")][0] == 990


def test_get_key_shows_usage(live_server_any_db):
    srv = live_server_any_db
    key = issue(srv, "ws-1")
    for caller in ("svc-a", "svc-b", "svc-b"):
        srv.stub.Authenticate(pb.AuthenticateRequest(credential=key.secret, caller=caller))
    srv.runtime.usage.flush()
    got = srv.stub.GetKey(pb.GetKeyRequest(key_id=key.key.key_id), metadata=srv.admin_md).key
    assert got.use_count == 3 and got.last_caller == "svc-b"
    assert abs(got.last_used_time.seconds - time.time()) < 600
    widget = issue(srv, "ws-1", res.KEY_KIND_WIDGET)
    srv.stub.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=widget.secret))
    srv.runtime.usage.flush()
    assert srv.stub.GetKey(pb.GetKeyRequest(key_id=widget.key.key_id), metadata=srv.admin_md).key.use_count == 1
