"""Every RPC and every error reason over a real server on an ephemeral port and a real channel."""

from __future__ import annotations

import ast
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2
from sqlalchemy import create_engine, text
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import errors_pb2
from woes.auth.v1 import resources_pb2 as res

from auth_service.domain import permissions, tokens
from auth_service.domain.keys import service_keys
from tests import conftest
from tests.support.paths import TESTS
from tests.support.rpc import assert_error, digest_forms, fail, issue, secret_forms

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def _grace(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _auth(srv, secret: str, scopes=(), caller: str = ""):
    return srv.stub.Authenticate(
        pb.AuthenticateRequest(credential=secret, required_scopes=list(scopes), caller=caller), timeout=30
    )


def _auth_fail(srv, secret: str, scopes=()):
    return fail(srv.stub.Authenticate, pb.AuthenticateRequest(credential=secret, required_scopes=list(scopes)))


# -- success paths ----------------------------------------------------------------


def test_issue_key_returns_the_credential_once_with_its_metadata(live_server_any_db):
    srv = live_server_any_db
    expire = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    resp = srv.stub.IssueKey(
        pb.IssueKeyRequest(
            workspace_id="ws-issue",
            kind=res.KEY_KIND_SERVER,
            display_name="billing backend",
            scopes=["messages:read", "conversations:write", "messages:read"],
            expire_time=_ts(expire),
        ),
        metadata=srv.admin_md,
        timeout=30,
    )
    assert tokens.TOKEN_REGEX.fullmatch(resp.secret)
    assert resp.secret.startswith("woes_sk_" + resp.key.key_id + "_")
    assert not resp.replayed
    key = resp.key
    assert key.workspace_id == "ws-issue"
    assert key.kind == res.KEY_KIND_SERVER
    assert key.display_name == "billing backend"
    assert list(key.scopes) == ["conversations:write", "messages:read"]
    assert key.state == res.KEY_STATE_ACTIVE
    assert key.create_time.seconds > 0
    assert key.expire_time.ToDatetime(tzinfo=UTC) == expire
    assert key.hint.startswith("woes_sk_" + key.key_id) and key.hint.endswith(resp.secret[-4:])
    assert resp.secret not in key.SerializeToString().decode("latin-1")


def test_authenticate_answers_the_principal(live_server_any_db):
    srv = live_server_any_db
    issued = issue(srv, workspace_id="ws-a", scopes=["conversations:write", "messages:read"])
    got = _auth(srv, issued.secret, ["conversations:read", "conversations:write", "messages:read"], caller="inbox")
    p = got.principal
    assert p.key_id == issued.key.key_id
    assert p.workspace_id == "ws-a"
    assert p.kind == res.KEY_KIND_SERVER
    assert list(p.scopes) == ["conversations:write", "messages:read"]
    assert not p.HasField("expire_time")
    # Without required scopes it only says who the caller is.
    assert _auth(srv, issued.secret).principal.key_id == issued.key.key_id


def test_authenticate_reports_the_expiry(live_server):
    expire = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    issued = issue(live_server, expire_time=_ts(expire))
    p = _auth(live_server, issued.secret).principal
    assert p.expire_time.ToDatetime(tzinfo=UTC) == expire


def test_verify_widget_key(live_server_any_db):
    srv = live_server_any_db
    open_key = issue(srv, kind=res.KEY_KIND_WIDGET, workspace_id="ws-w")
    got = srv.stub.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=open_key.secret), timeout=30)
    assert (got.workspace_id, got.key_id) == ("ws-w", open_key.key.key_id)
    assert open_key.secret.startswith("woes_pk_")

    limited = issue(srv, kind=res.KEY_KIND_WIDGET, workspace_id="ws-w", allowed_origins=["https://Shop.Example"])
    assert list(limited.key.allowed_origins) == ["https://shop.example"]
    for origin in ("https://shop.example", "https://SHOP.example:443"):
        got = srv.stub.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=limited.secret, origin=origin), timeout=30)
        assert got.key_id == limited.key.key_id


def test_revoke_is_immediate_and_idempotent(live_server_any_db):
    srv = live_server_any_db
    issued = issue(srv)
    _auth(srv, issued.secret)  # now cached
    first = srv.stub.Revoke(
        pb.RevokeRequest(key_id=issued.key.key_id, reason="left the company"), metadata=srv.admin_md, timeout=30
    )
    assert first.key.state == res.KEY_STATE_REVOKED
    assert first.key.revoke_reason == "left the company"
    assert first.key.HasField("revoke_time")
    assert_error(_auth_fail(srv, issued.secret), UNAUTH, "CREDENTIAL_REVOKED")
    again = srv.stub.Revoke(pb.RevokeRequest(key_id=issued.key.key_id), metadata=srv.admin_md, timeout=30)
    assert again.key.state == res.KEY_STATE_REVOKED
    assert again.key.revoke_time == first.key.revoke_time


def test_get_key(live_server_any_db):
    srv = live_server_any_db
    issued = issue(srv, workspace_id="ws-get", display_name="crm sync")
    got = srv.stub.GetKey(pb.GetKeyRequest(key_id=issued.key.key_id), metadata=srv.admin_md, timeout=30).key
    assert got.key_id == issued.key.key_id
    assert got.display_name == "crm sync"
    assert got.hint == issued.key.hint
    assert got.state == res.KEY_STATE_ACTIVE


def test_get_and_list_never_carry_the_secret_or_its_digest(live_server_any_db):
    srv = live_server_any_db
    issued = [
        issue(srv, workspace_id="ws-s"),
        issue(srv, workspace_id="ws-s", kind=res.KEY_KIND_WIDGET),
        issue(srv, workspace_id="ws-s", scopes=["webhooks:read"]),
    ]
    wire = [
        srv.stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-s"), metadata=srv.admin_md, timeout=30),
        srv.stub.ListKeys(pb.ListKeysRequest(), metadata=srv.admin_md, timeout=30),
    ] + [srv.stub.GetKey(pb.GetKeyRequest(key_id=i.key.key_id), metadata=srv.admin_md, timeout=30) for i in issued]
    assert len(wire[0].keys) == 3
    blob = b"\n".join(m.SerializeToString() for m in wire)
    for i in issued:
        assert i.key.key_id.encode() in blob  # the metadata is there ...
        for form in secret_forms(i.secret):  # ... the secret is not
            assert form.encode() not in blob
        stored = srv.manager.store.get_key(i.key.key_id)
        for form in digest_forms(stored.digest):
            assert form not in blob


def test_list_keys_pages_newest_first(live_server_any_db):
    srv = live_server_any_db
    ids = [issue(srv, workspace_id="ws-page").key.key_id for _ in range(5)]
    others = [issue(srv, workspace_id="ws-other").key.key_id for _ in range(2)]
    seen, token, pages = [], "", 0
    while True:
        page = srv.stub.ListKeys(
            pb.ListKeysRequest(workspace_id="ws-page", page_size=2, page_token=token), metadata=srv.admin_md, timeout=30
        )
        pages += 1
        assert len(page.keys) <= 2
        seen.extend(page.keys)
        token = page.next_page_token
        if not token:
            break
        assert pages < 10
    assert pages == 3
    assert sorted(k.key_id for k in seen) == sorted(ids)
    assert all(k.workspace_id == "ws-page" for k in seen)
    stamps = [(k.create_time.seconds, k.create_time.nanos) for k in seen]
    assert stamps == sorted(stamps, reverse=True)
    everything = srv.stub.ListKeys(pb.ListKeysRequest(page_size=1000), metadata=srv.admin_md, timeout=30)
    assert set(ids + others) <= {k.key_id for k in everything.keys}
    # A token is bound to its filter.
    first = srv.stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-page", page_size=2), metadata=srv.admin_md)
    err = fail(
        srv.stub.ListKeys,
        pb.ListKeysRequest(workspace_id="ws-other", page_token=first.next_page_token),
        metadata=srv.admin_md,
    )
    assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in err.violations] == ["page_token"]


def test_rotate_keeps_the_old_key_for_the_grace_then_expires_it(live_server_any_db):
    srv = live_server_any_db
    old = issue(srv, workspace_id="ws-rot", scopes=["channels:write"])
    _auth(srv, old.secret)  # cached before the rotation
    resp = srv.stub.Rotate(
        pb.RotateRequest(key_id=old.key.key_id, grace_period=_grace(2)), metadata=srv.admin_md, timeout=30
    )
    assert tokens.TOKEN_REGEX.fullmatch(resp.secret) and resp.secret != old.secret
    assert resp.key.rotated_from == old.key.key_id
    assert resp.key.workspace_id == "ws-rot" and list(resp.key.scopes) == ["channels:write"]
    assert resp.previous_key.state == res.KEY_STATE_ROTATED
    assert resp.previous_key.rotated_to == resp.key.key_id
    grace_end = resp.previous_key.grace_expire_time.ToDatetime(tzinfo=UTC).timestamp()
    assert _auth(srv, resp.secret).principal.key_id == resp.key.key_id

    # Within the grace the old credential works (checked only if the call really ran inside it).
    try:
        got = _auth(srv, old.secret)
        answered = time.time()
        assert got.principal.expire_time.ToDatetime(tzinfo=UTC).timestamp() == pytest.approx(grace_end, abs=1e-3)
    except grpc.RpcError:
        answered = time.time()
        assert answered >= grace_end, "the old key was refused inside its grace period"
    while time.time() < grace_end + 0.2:
        time.sleep(0.1)
    assert_error(_auth_fail(srv, old.secret), UNAUTH, "CREDENTIAL_EXPIRED")
    assert _auth(srv, resp.secret).principal.key_id == resp.key.key_id


def test_rotate_with_long_grace_keeps_both_and_zero_grace_ends_at_once(live_server):
    srv = live_server
    old = issue(srv)
    resp = srv.stub.Rotate(pb.RotateRequest(key_id=old.key.key_id, grace_period=_grace(3600)), metadata=srv.admin_md)
    assert _auth(srv, old.secret).principal.key_id == old.key.key_id
    assert _auth(srv, resp.secret).principal.key_id == resp.key.key_id

    other = issue(srv)
    _auth(srv, other.secret)
    rotated = srv.stub.Rotate(pb.RotateRequest(key_id=other.key.key_id, grace_period=_grace(0)), metadata=srv.admin_md)
    assert_error(_auth_fail(srv, other.secret), UNAUTH, "CREDENTIAL_EXPIRED")
    assert _auth(srv, rotated.secret).principal.key_id == rotated.key.key_id


def test_rotate_default_grace_is_a_day_and_never_outlives_the_key(live_server):
    srv = live_server
    plain = issue(srv)
    resp = srv.stub.Rotate(pb.RotateRequest(key_id=plain.key.key_id), metadata=srv.admin_md)
    grace = resp.previous_key.grace_expire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(hours=23) < grace <= timedelta(hours=24)

    expire = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    short = issue(srv, expire_time=_ts(expire))
    resp = srv.stub.Rotate(
        pb.RotateRequest(key_id=short.key.key_id, grace_period=_grace(7 * 86400)), metadata=srv.admin_md
    )
    assert resp.previous_key.grace_expire_time.ToDatetime(tzinfo=UTC) == expire
    assert resp.key.expire_time.ToDatetime(tzinfo=UTC) == expire


def test_concurrent_rotations_over_the_wire_have_one_winner(live_server_any_db):
    srv = live_server_any_db
    key_id = issue(srv).key.key_id
    n = 6
    barrier = threading.Barrier(n)
    outcomes: list = [None] * n

    def rotate(i):
        barrier.wait(timeout=30)
        try:
            outcomes[i] = srv.stub.Rotate(pb.RotateRequest(key_id=key_id), metadata=srv.admin_md, timeout=60)
        except grpc.RpcError as err:
            outcomes[i] = err

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    winners = [o for o in outcomes if isinstance(o, pb.RotateResponse)]
    losers = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(winners) == 1, outcomes
    assert len(losers) == n - 1
    from tests.support.rich_errors import rich_error

    for err in losers:
        assert_error(rich_error(err), grpc.StatusCode.FAILED_PRECONDITION, "KEY_NOT_ROTATABLE")
    got = srv.stub.GetKey(pb.GetKeyRequest(key_id=key_id), metadata=srv.admin_md).key
    assert got.rotated_to == winners[0].key.key_id
    listed = srv.stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-1"), metadata=srv.admin_md).keys
    assert len(listed) == 2  # the original and exactly one replacement


def test_issue_key_request_id_replays_the_first_key(live_server_any_db):
    srv = live_server_any_db
    fields = dict(workspace_id="ws-idem", scopes=["customers:read"], request_id="7d9f3c1e-retry")
    first = issue(srv, **fields)
    second = issue(srv, **fields)
    assert first.secret and not first.replayed
    assert second.replayed and second.secret == ""
    assert second.key.key_id == first.key.key_id
    listed = srv.stub.ListKeys(pb.ListKeysRequest(workspace_id="ws-idem"), metadata=srv.admin_md).keys
    assert [k.key_id for k in listed] == [first.key.key_id]
    err = fail(
        srv.stub.IssueKey,
        pb.IssueKeyRequest(
            workspace_id="ws-idem",
            kind=res.KEY_KIND_SERVER,
            scopes=["customers:write"],
            request_id=fields["request_id"],
        ),
        metadata=srv.admin_md,
    )
    assert_error(err, grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert err.metadata.get("request_id") == fields["request_id"]


# -- admin RPCs: who may call them -------------------------------------------------

ADMIN_CALLS = {
    "IssueKey": lambda: pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_SERVER, scopes=["messages:read"]),
    "Rotate": lambda: pb.RotateRequest(key_id="A" * tokens.KEY_ID_LEN),
    "Revoke": lambda: pb.RevokeRequest(key_id="A" * tokens.KEY_ID_LEN),
    "GetKey": lambda: pb.GetKeyRequest(key_id="A" * tokens.KEY_ID_LEN),
    "ListKeys": lambda: pb.ListKeysRequest(),
}


@pytest.mark.parametrize("method", sorted(ADMIN_CALLS))
def test_admin_rpcs_need_an_admin_credential(live_server, method):
    srv = live_server
    call = getattr(srv.stub, method)
    server_key = issue(srv).secret
    widget_key = issue(srv, kind=res.KEY_KIND_WIDGET).secret
    for metadata in ((), (("authorization", "Bearer "),), (("authorization", f"Basic {srv.admin_secret}"),)):
        assert_error(fail(call, ADMIN_CALLS[method](), metadata=metadata), UNAUTH, "ADMIN_CREDENTIAL_REQUIRED")
    internal_key = service_keys.bootstrap_internal(srv.manager, "internal", tuple(permissions.RPC_OF)).secret
    for secret, kind in ((server_key, "server"), (widget_key, "widget"), (internal_key, "internal")):
        err = fail(call, ADMIN_CALLS[method](), metadata=(("authorization", f"Bearer {secret}"),))
        assert_error(err, DENIED, "NOT_ADMIN_CREDENTIAL")
        assert err.metadata.get("kind") == kind
    err = fail(call, ADMIN_CALLS[method](), metadata=(("authorization", "Bearer woes_ak_nonsense"),))
    assert_error(err, UNAUTH, "CREDENTIAL_MALFORMED")


def test_a_revoked_admin_credential_is_refused(live_server):
    srv = live_server
    second = srv.manager.bootstrap_admin("second admin")
    conftest.MINTED.add(second.secret)
    md = (("authorization", f"Bearer {second.secret}"),)
    mine = pb.GetKeyRequest(key_id=second.key.key_id)
    assert srv.stub.GetKey(mine, metadata=md).key.state == res.KEY_STATE_ACTIVE  # works while active
    srv.stub.Revoke(pb.RevokeRequest(key_id=second.key.key_id, reason="rotation"), metadata=srv.admin_md)
    for method in sorted(ADMIN_CALLS):
        assert_error(fail(getattr(srv.stub, method), ADMIN_CALLS[method](), metadata=md), UNAUTH, "CREDENTIAL_REVOKED")
    # the first admin is unaffected
    assert srv.stub.GetKey(mine, metadata=srv.admin_md).key.state == res.KEY_STATE_REVOKED


# -- every reason of errors.proto -----------------------------------------------------


def test_reason_credential_malformed(live_server):
    issued = issue(live_server)
    for bad in ("", "woes_sk_short", issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")):
        err = _auth_fail(live_server, bad)
        assert_error(err, UNAUTH, "CREDENTIAL_MALFORMED")


def test_reason_credential_unknown(live_server_any_db):
    srv = live_server_any_db
    issued = issue(srv)
    never_issued = tokens.mint(tokens.KeyKind.SERVER).token
    wrong_secret = tokens.mint(tokens.KeyKind.SERVER, key_id=issued.key.key_id).token
    for cred in (never_issued, wrong_secret, never_issued):  # the repeat is answered from the negative cache
        assert_error(_auth_fail(srv, cred), UNAUTH, "CREDENTIAL_UNKNOWN")
    assert _auth(srv, issued.secret).principal.key_id == issued.key.key_id


def test_reason_credential_revoked(live_server):
    issued = issue(live_server)
    live_server.stub.Revoke(pb.RevokeRequest(key_id=issued.key.key_id), metadata=live_server.admin_md)
    err = _auth_fail(live_server, issued.secret)
    assert_error(err, UNAUTH, "CREDENTIAL_REVOKED")
    assert err.metadata.get("key_id") == issued.key.key_id
    widget = issue(live_server, kind=res.KEY_KIND_WIDGET)
    live_server.stub.Revoke(pb.RevokeRequest(key_id=widget.key.key_id), metadata=live_server.admin_md)
    err = fail(live_server.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=widget.secret))
    assert_error(err, UNAUTH, "CREDENTIAL_REVOKED")


def test_reason_credential_expired(live_server):
    # Far enough ahead that IssueKey accepts it even on a loaded machine, close enough to wait for.
    expire = datetime.now(UTC) + timedelta(seconds=3)
    issued = issue(live_server, expire_time=_ts(expire))
    while datetime.now(UTC) < expire + timedelta(milliseconds=200):
        time.sleep(0.1)
    assert_error(_auth_fail(live_server, issued.secret), UNAUTH, "CREDENTIAL_EXPIRED")
    got = live_server.stub.GetKey(pb.GetKeyRequest(key_id=issued.key.key_id), metadata=live_server.admin_md).key
    assert got.state == res.KEY_STATE_EXPIRED


def test_reason_widget_key_not_api_credential(live_server):
    widget = issue(live_server, kind=res.KEY_KIND_WIDGET)
    assert_error(_auth_fail(live_server, widget.secret), DENIED, "WIDGET_KEY_NOT_API_CREDENTIAL")


def test_reason_credential_not_widget_key(live_server):
    server_key = issue(live_server)
    err = fail(live_server.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=server_key.secret))
    assert_error(err, DENIED, "CREDENTIAL_NOT_WIDGET_KEY")
    assert err.metadata.get("kind") == "server"
    err = fail(live_server.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=live_server.admin_secret))
    assert_error(err, DENIED, "CREDENTIAL_NOT_WIDGET_KEY")


def test_reason_credential_kind_not_accepted(live_server):
    err = _auth_fail(live_server, live_server.admin_secret)
    assert_error(err, DENIED, "CREDENTIAL_KIND_NOT_ACCEPTED")
    assert err.metadata.get("kind") == "admin"


def test_reason_insufficient_scope(live_server):
    issued = issue(live_server, scopes=["conversations:read", "messages:write"])
    err = _auth_fail(live_server, issued.secret, ["messages:read", "conversations:write", "webhooks:read"])
    assert_error(err, DENIED, "INSUFFICIENT_SCOPE")
    assert err.metadata.get("missing_scopes") == "conversations:write,webhooks:read"


def test_reason_origin_not_allowed(live_server):
    widget = issue(live_server, kind=res.KEY_KIND_WIDGET, allowed_origins=["https://shop.example"])
    for origin in ("https://evil.example", "http://shop.example", "https://shop.example:8443", ""):
        err = fail(live_server.stub.VerifyWidgetKey, pb.VerifyWidgetKeyRequest(public_key=widget.secret, origin=origin))
        assert_error(err, DENIED, "ORIGIN_NOT_ALLOWED")


def test_reason_invalid_argument_lists_field_violations(live_server):
    err = fail(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(workspace_id="no spaces please", kind=res.KEY_KIND_SERVER, scopes=["billing:read"]),
        metadata=live_server.admin_md,
    )
    assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in err.violations] == ["workspace_id", "scopes"]
    assert "billing:read" in dict(err.violations)["scopes"]
    err = fail(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_WIDGET, scopes=["messages:read"]),
        metadata=live_server.admin_md,
    )
    assert [f for f, _ in err.violations] == ["scopes"]
    err = fail(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(workspace_id="ws-1", kind=res.KEY_KIND_ADMIN),
        metadata=live_server.admin_md,
    )
    assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in err.violations] == ["kind"]
    err = fail(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(
            workspace_id="ws-1",
            kind=res.KEY_KIND_SERVER,
            scopes=["messages:read"],
            expire_time=_ts(datetime.now(UTC) - timedelta(minutes=1)),
        ),
        metadata=live_server.admin_md,
    )
    assert [f for f, _ in err.violations] == ["expire_time"]


def test_reason_key_not_found(live_server):
    missing = tokens.new_key_id()
    for method in ("GetKey", "Rotate", "Revoke"):
        request = getattr(pb, f"{method}Request")(key_id=missing)
        err = fail(getattr(live_server.stub, method), request, metadata=live_server.admin_md)
        assert_error(err, grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND")
        assert err.metadata.get("key_id") == missing


def test_reason_key_not_rotatable(live_server):
    srv = live_server
    rotated = issue(srv)
    srv.stub.Rotate(pb.RotateRequest(key_id=rotated.key.key_id), metadata=srv.admin_md)
    revoked = issue(srv)
    srv.stub.Revoke(pb.RevokeRequest(key_id=revoked.key.key_id), metadata=srv.admin_md)
    for key_id, state in ((rotated.key.key_id, "rotated"), (revoked.key.key_id, "revoked")):
        err = fail(srv.stub.Rotate, pb.RotateRequest(key_id=key_id), metadata=srv.admin_md)
        assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "KEY_NOT_ROTATABLE")
        assert err.metadata.get("state") == state


def test_reason_request_id_reused(live_server):
    issue(live_server, request_id="req-1", display_name="first")
    err = fail(
        live_server.stub.IssueKey,
        pb.IssueKeyRequest(
            workspace_id="ws-1", kind=res.KEY_KIND_SERVER, scopes=["conversations:write"], request_id="req-1"
        ),
        metadata=live_server.admin_md,
    )
    assert_error(err, grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


def test_reason_admin_credential_required(live_server):
    err = fail(live_server.stub.ListKeys, pb.ListKeysRequest())
    assert_error(err, UNAUTH, "ADMIN_CREDENTIAL_REQUIRED")


def test_reason_not_admin_credential(live_server):
    md = (("authorization", f"Bearer {issue(live_server).secret}"),)
    assert_error(fail(live_server.stub.ListKeys, pb.ListKeysRequest(), metadata=md), DENIED, "NOT_ADMIN_CREDENTIAL")


@pytest.mark.postgres
def test_reason_store_unavailable_when_postgres_refuses_connections(postgres_url, pepper):
    """A real outage: the database stops accepting connections. Never UNAUTHENTICATED."""
    srv = conftest.start_live_server(postgres_url, pepper)
    name = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        cached = issue(srv)
        _auth(srv, cached.secret)  # verified and cached before the outage
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        never_seen = tokens.mint(tokens.KeyKind.SERVER).token
        assert_error(_auth_fail(srv, never_seen), grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
        err = fail(srv.stub.ListKeys, pb.ListKeysRequest(), metadata=srv.admin_md)
        assert_error(err, grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
        # The credential verified before the outage keeps working within the outage window.
        assert _auth(srv, cached.secret).principal.key_id == cached.key.key_id
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        srv.channel.close()
        srv.runtime.stop(0.5)


def test_reason_internal_hides_the_cause(live_server, monkeypatch):
    leaked = tokens.mint(tokens.KeyKind.SERVER).token

    def broken_get_key(key_id):
        raise RuntimeError(f"driver exploded while holding {leaked}")

    monkeypatch.setattr(live_server.manager.store, "get_key", broken_get_key)
    err = _auth_fail(live_server, tokens.mint(tokens.KeyKind.SERVER).token)
    assert_error(err, grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "exploded" not in err.message


REASON_TESTS = {
    "CREDENTIAL_MALFORMED": test_reason_credential_malformed,
    "CREDENTIAL_UNKNOWN": test_reason_credential_unknown,
    "CREDENTIAL_REVOKED": test_reason_credential_revoked,
    "CREDENTIAL_EXPIRED": test_reason_credential_expired,
    "WIDGET_KEY_NOT_API_CREDENTIAL": test_reason_widget_key_not_api_credential,
    "CREDENTIAL_NOT_WIDGET_KEY": test_reason_credential_not_widget_key,
    "CREDENTIAL_KIND_NOT_ACCEPTED": test_reason_credential_kind_not_accepted,
    "INSUFFICIENT_SCOPE": test_reason_insufficient_scope,
    "ORIGIN_NOT_ALLOWED": test_reason_origin_not_allowed,
    "INVALID_ARGUMENT": test_reason_invalid_argument_lists_field_violations,
    "KEY_NOT_FOUND": test_reason_key_not_found,
    "KEY_NOT_ROTATABLE": test_reason_key_not_rotatable,
    "REQUEST_ID_REUSED": test_reason_request_id_reused,
    "ADMIN_CREDENTIAL_REQUIRED": test_reason_admin_credential_required,
    "NOT_ADMIN_CREDENTIAL": test_reason_not_admin_credential,
    "STORE_UNAVAILABLE": test_reason_store_unavailable_when_postgres_refuses_connections,
    "INTERNAL": test_reason_internal_hides_the_cause,
}


# Reasons proven over a real server in their own test files (tests/<path>::<test>): the caller
# policy and throttling over mTLS and real connections, the other credential kinds' reasons.
REASONS_TESTED_ELSEWHERE = {
    "CALLER_NOT_ALLOWED": "integration/test_policy.py::test_refusal_is_permission_denied_with_reason_and_audited",
    "TOO_MANY_FAILURES": (
        "integration/test_throttle.py::"
        "test_a_throttled_caller_is_refused_for_its_own_failures_but_keeps_verified_credentials"
    ),
    "CONVERSATION_SECRET_INVALID": "integration/test_conversations.py::test_one_secret_opens_one_conversation_only",
    "CONVERSATION_SECRET_REVOKED": "integration/test_conversations.py::test_revoke_one_conversation",
    "CONVERSATION_WORKSPACE_MISMATCH": "integration/test_conversations.py::test_one_secret_opens_one_conversation_only",
    "INTERNAL_PERMISSION_REQUIRED": "integration/test_test_credentials.py::test_reveal_without_permission_is_refused_and_audited",
    "INTERNAL_CREDENTIAL_REQUIRED": (
        "integration/test_internal_credentials.py::"
        "test_issue_conversation_secret_needs_an_internal_credential_holding_its_permission"
    ),
    "TEST_CREDENTIAL_NOT_FOUND": "integration/test_test_credentials.py::test_round_trip_metadata_only",
    "KEK_NOT_CONFIGURED": "integration/test_test_credentials.py::test_tamper_swap_and_missing_key_fail_without_plaintext",
    "TEST_CREDENTIAL_UNREADABLE": "integration/test_test_credentials.py::test_tamper_swap_and_missing_key_fail_without_plaintext",
}


def _test_source(where: str) -> str:
    """The source of the test function ``path::name`` (path under tests/), read, not imported."""
    path, _, name = where.partition("::")
    source = (TESTS / path).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(source, node) or ""
    raise AssertionError(f"no test {name} in tests/{path}")


def test_every_reason_of_the_contract_has_a_test_here():
    published = {
        name.removeprefix("ERROR_REASON_")
        for name in errors_pb2.ErrorReason.keys()  # noqa: SIM118
        if name != "ERROR_REASON_UNSPECIFIED"
    }
    assert published == set(REASON_TESTS) | set(REASONS_TESTED_ELSEWHERE)
    for reason, where in REASONS_TESTED_ELSEWHERE.items():
        assert f'"{reason}"' in _test_source(where), f"{reason} is not asserted in tests/{where}"


def _ts(when: datetime):
    from google.protobuf import timestamp_pb2

    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def test_the_rpc_threads_are_as_many_as_configured(sqlite_url, pepper):
    """WOES_AUTH_THREADS bounds the threads that run handlers, however many calls are in flight."""
    before = {t.ident for t in threading.enumerate()}
    srv = conftest.start_live_server(sqlite_url, pepper, threads=2)
    try:
        secret = issue(srv, scopes=["conversations:read"]).secret
        request = pb.AuthenticateRequest(credential=secret, required_scopes=["conversations:read"])
        for _ in range(3):
            calls = [srv.stub.Authenticate.future(request, timeout=10) for _ in range(40)]
            assert all(call.result().principal.key_id for call in calls)
        ran = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("woes-auth-rpc")]
        assert 1 <= len(ran) <= 2
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
