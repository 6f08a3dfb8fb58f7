"""API test credentials over a real server: metadata only, reveal with the permission only, integrity."""

import grpc
import pytest
from sqlalchemy import select, update
from woes.auth.v1 import test_credentials_pb2 as tpb

from auth_service.domain import permissions
from auth_service.domain.keys import service_keys
from auth_service.store.schema import test_credentials as tc_table
from tests.support.services import Errors, audit_events, internal_md, leaked_in, new_plaintext, revealer_md

URL = "https://api.customer.example/v1"


def _put(srv, name, material, workspace="ws-lab", kind=tpb.TEST_CREDENTIAL_KIND_BEARER_TOKEN, url=URL):
    return srv.stub.PutTestCredential(
        tpb.PutTestCredentialRequest(
            workspace_id=workspace, name=name, kind=kind, secret_material=material, target_base_url=url
        ),
        metadata=srv.admin_md,
    )


def _reveal(srv, md, credential_id, workspace="ws-lab", reason="run-1"):
    return srv.stub.RevealTestCredential(
        tpb.RevealTestCredentialRequest(workspace_id=workspace, credential_id=credential_id, reason=reason),
        metadata=md,
    )


def _sql(srv):
    return srv.runtime.services.db


def test_round_trip_metadata_only(live_server_any_db):
    srv = live_server_any_db
    material = new_plaintext()
    put = _put(srv, "billing api", material)
    assert put.created and put.credential.kek_id == "kek1"
    cid = put.credential.credential_id
    got = srv.stub.GetTestCredential(
        tpb.GetTestCredentialRequest(workspace_id="ws-lab", credential_id=cid), metadata=srv.admin_md
    )
    listed = srv.stub.ListTestCredentials(tpb.ListTestCredentialsRequest(workspace_id="ws-lab"), metadata=srv.admin_md)
    assert got.credential.name == "billing api" and got.credential.target_base_url == URL
    assert [c.credential_id for c in listed.credentials] == [cid]
    for message in (put, got, listed):
        assert material.encode() not in message.SerializeToString()

    revealed = _reveal(srv, revealer_md(srv), cid)
    assert revealed.secret_material == material and revealed.credential.target_base_url == URL

    # put with the same name replaces the material, keeps the id
    material2 = new_plaintext()
    again = _put(srv, "billing api", material2, kind=tpb.TEST_CREDENTIAL_KIND_API_KEY)
    assert not again.created and again.credential.credential_id == cid
    assert again.credential.kind == tpb.TEST_CREDENTIAL_KIND_API_KEY
    md = revealer_md(srv)
    assert _reveal(srv, md, cid).secret_material == material2
    assert (
        srv.stub.GetTestCredential(
            tpb.GetTestCredentialRequest(workspace_id="ws-lab", credential_id=cid), metadata=srv.admin_md
        ).credential.reveal_count
        == 2
    )

    # another workspace does not see it
    errors = Errors()
    err = errors(
        srv.stub.GetTestCredential,
        tpb.GetTestCredentialRequest(workspace_id="ws-other", credential_id=cid),
        metadata=srv.admin_md,
    )
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "TEST_CREDENTIAL_NOT_FOUND")
    assert errors(_reveal, srv, md, cid, workspace="ws-other").reason == "TEST_CREDENTIAL_NOT_FOUND"

    # delete erases the row, material included
    srv.stub.DeleteTestCredential(
        tpb.DeleteTestCredentialRequest(workspace_id="ws-lab", credential_id=cid), metadata=srv.admin_md
    )
    rows = _sql(srv).reading(lambda conn: conn.execute(select(tc_table)).all())
    assert rows == []
    assert errors(_reveal, srv, md, cid).code is grpc.StatusCode.NOT_FOUND
    actions = [e.action for e in audit_events(srv, workspace_id="ws-lab")]
    for action in (
        "test_credential.put",
        "test_credential.replace",
        "test_credential.delete",
        "test_credential.reveal",
    ):
        assert action in actions
    assert not leaked_in(errors.texts() + [str(e) for e in audit_events(srv)])


def test_reveal_without_permission_is_refused_and_audited(live_server_any_db):
    srv = live_server_any_db
    material = new_plaintext()
    cid = _put(srv, "crm", material).credential.credential_id
    errors = Errors()
    err = errors(_reveal, srv, srv.admin_md, cid)  # an admin key holds no internal permission
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_PERMISSION_REQUIRED")
    assert err.metadata == {"permission": "lab:test_credentials:reveal", "kind": "admin"}
    widget_backend = internal_md(srv, permissions.ISSUE_CONVERSATION_SECRETS)
    err = errors(_reveal, srv, widget_backend, cid)  # an internal key holding another permission
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_PERMISSION_REQUIRED")
    assert err.metadata == {"permission": "lab:test_credentials:reveal"}
    err = errors(_reveal, srv, (), cid)  # no credential at all
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INTERNAL_CREDENTIAL_REQUIRED")
    # Every refusal of an internal credential is audited (the others are counted as failures).
    events = audit_events(srv, action="test_credential.reveal")
    assert [(e.outcome, e.key_id, e.workspace_id) for e in events] == [("denied", cid, "ws-lab")]
    assert events[0].actor == "internal:" + widget_backend[0][1][len("Bearer woes_ik_") :][:12]
    # no RPC grants the permission; bootstrap-internal refuses unknown permissions
    from auth_service.domain.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        service_keys.bootstrap_internal(srv.manager, "x", ("lab:everything",))
    assert not leaked_in(errors.texts() + [str(e) for e in events])


def _row(srv, cid):
    return _sql(srv).reading(lambda conn: conn.execute(select(tc_table).where(tc_table.c.credential_id == cid)).one())


def _set(srv, cid, **values):
    _sql(srv).writing(
        lambda conn: conn.execute(update(tc_table).where(tc_table.c.credential_id == cid).values(**values))
    )


def test_tamper_swap_and_missing_key_fail_without_plaintext(live_server_any_db):
    srv = live_server_any_db
    md = revealer_md(srv)
    errors = Errors()
    m1, m2 = new_plaintext(), new_plaintext()
    a = _put(srv, "a", m1).credential.credential_id
    b = _put(srv, "b", m2).credential.credential_id
    row_a, row_b = _row(srv, a), _row(srv, b)

    # a flipped bit in the ciphertext
    tampered = bytearray(row_a.ciphertext)
    tampered[-1] ^= 1
    _set(srv, a, ciphertext=bytes(tampered))
    err = errors(_reveal, srv, md, a)
    assert (err.code, err.reason) == (grpc.StatusCode.INTERNAL, "TEST_CREDENTIAL_UNREADABLE")
    assert "ciphertext" in err.message
    # a flipped bit in the wrapped data key
    wrapped = bytearray(row_a.wrapped_key)
    wrapped[20] ^= 1
    _set(srv, a, ciphertext=row_a.ciphertext, wrapped_key=bytes(wrapped))
    assert errors(_reveal, srv, md, a).reason == "TEST_CREDENTIAL_UNREADABLE"

    # b's ciphertext and wrapped key copied into a's row: bound to b's id, refused in a
    _set(srv, a, ciphertext=row_b.ciphertext, wrapped_key=row_b.wrapped_key)
    err = errors(_reveal, srv, md, a)
    assert err.reason == "TEST_CREDENTIAL_UNREADABLE"
    # only the ciphertext swapped (a's own data key): refused too
    _set(srv, a, ciphertext=row_b.ciphertext, wrapped_key=row_a.wrapped_key)
    assert errors(_reveal, srv, md, a).reason == "TEST_CREDENTIAL_UNREADABLE"

    # a key id that is not configured, and no key id at all
    _set(srv, a, ciphertext=row_a.ciphertext, wrapped_key=row_a.wrapped_key, kek_id="gone")
    err = errors(_reveal, srv, md, a)
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "KEK_NOT_CONFIGURED")
    assert err.metadata["kek_id"] == "gone"
    _set(srv, a, kek_id="")
    assert errors(_reveal, srv, md, a).reason == "TEST_CREDENTIAL_UNREADABLE"

    # restored, it reads again; b was never affected
    _set(srv, a, kek_id=row_a.kek_id)
    assert _reveal(srv, md, a).secret_material == m1
    assert _reveal(srv, md, b).secret_material == m2

    texts = errors.texts() + [str(e) for e in audit_events(srv)]
    assert not leaked_in(texts)
    assert m1 not in "\n".join(texts) and m2 not in "\n".join(texts)
    failed = [e for e in audit_events(srv, action="test_credential.reveal") if e.outcome == "failed"]
    assert len(failed) == 6


def test_invalid_puts(live_server):
    srv = live_server
    errors = Errors()
    m = new_plaintext()
    cases = [
        ({"workspace": ""}, "workspace_id"),
        ({"url": "ftp://x.example"}, "target_base_url"),
        ({"url": "https://user:pw@x.example"}, "target_base_url"),
        ({"kind": tpb.TEST_CREDENTIAL_KIND_UNSPECIFIED}, "kind"),
    ]
    for overrides, field in cases:
        err = errors(_put, srv, "n", m, **overrides)
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT
        assert field in [v[0] for v in err.violations]
    err = errors(_put, srv, "n", "")
    assert "secret_material" in [v[0] for v in err.violations]
    err = errors(_put, srv, "n", "x" * 9000)
    assert "secret_material" in [v[0] for v in err.violations]
    assert not leaked_in(errors.texts())


def test_listing_pages(live_server):
    srv = live_server
    ids = {_put(srv, f"n{i}", new_plaintext()).credential.credential_id for i in range(5)}
    seen, token = [], ""
    while True:
        page = srv.stub.ListTestCredentials(
            tpb.ListTestCredentialsRequest(workspace_id="ws-lab", page_size=2, page_token=token), metadata=srv.admin_md
        )
        seen += [c.credential_id for c in page.credentials]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
