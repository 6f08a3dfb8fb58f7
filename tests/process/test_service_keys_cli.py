"""The service's own credentials from the command line with database access (``bootstrap-internal``,
``service-keys list|rotate``, ``bootstrap-admin``), run as real processes against a real server;
and the migration that moves internal permissions off existing admin keys."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from sqlalchemy import create_engine, select
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res

from auth_service.app.services import credential_manager
from auth_service.domain import permissions, tokens
from auth_service.domain.tokens import KeyKind
from auth_service.store import SqlStore, migrate
from auth_service.store.schema import changes
from tests import conftest
from tests.support.process import base_env, cli, start_serve
from tests.support.rich_errors import call_error
from tests.support.rpc import secret_forms

CONVERSATIONS, REVEAL = permissions.ISSUE_CONVERSATION_SECRETS, permissions.REVEAL_TEST_CREDENTIALS


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server process and an admin credential made by the real bootstrap command."""
    data_dir = tmp_path_factory.mktemp("service-keys")
    server = start_serve(data_dir)
    boot = cli("bootstrap-admin", "--name", "ops", env=base_env(data_dir))
    assert boot.returncode == 0, boot.stderr
    server.admin = boot.stdout.rstrip("\n").splitlines()[-1]
    conftest.MINTED.add(server.admin)
    pepper = (data_dir / "dev-pepper").read_text().strip()
    conftest.OTHER_SECRETS.add(pepper.split(":", 1)[1])
    channel = grpc.insecure_channel(server.target)
    server.stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    yield server
    channel.close()
    assert server.stop() == 0


def run(served, *args: str):
    return cli(*args, env=base_env(served.data_dir))


def new_credential(out) -> str:
    """The credential a command printed as its last line (checked to be alone there and not in the log)."""
    assert out.returncode == 0, out.stderr
    secret = out.stdout.rstrip("\n").splitlines()[-1]
    conftest.MINTED.add(secret)
    assert tokens.TOKEN_REGEX.fullmatch(secret)
    assert out.stdout.count(secret) == 1
    for form in secret_forms(secret):
        assert form not in out.stderr
    assert secret[8:20] in out.stderr  # the log names the key by its id
    return secret


def md(secret: str):
    return (("authorization", f"Bearer {secret}"),)


def service_keys(served) -> dict[str, dict]:
    out = run(served, "service-keys", "list")
    assert out.returncode == 0, out.stderr
    return {k["key_id"]: k for k in json.loads(out.stdout)["keys"]}


def test_bootstrap_internal_prints_the_credential_last_and_it_issues_conversation_secrets(served):
    out = run(served, "bootstrap-internal", "--name", "widget backend", "--permission", CONVERSATIONS)
    secret = new_credential(out)
    assert secret.startswith("woes_ik_")
    assert CONVERSATIONS in out.stdout
    widget = served.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-cli", kind=res.KEY_KIND_WIDGET), metadata=md(served.admin)
    ).secret
    conftest.MINTED.add(widget)
    request = cpb.IssueConversationSecretRequest(public_key=widget, conversation_id="c-1")
    assert served.stub.IssueConversationSecret(request, metadata=md(secret)).workspace_id == "ws-cli"
    # The admin credential the operator holds cannot do it.
    err = call_error(served.stub.IssueConversationSecret, request, metadata=md(served.admin))
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "INTERNAL_PERMISSION_REQUIRED")
    # Nor is the internal credential an admin one.
    err = call_error(served.stub.ListKeys, pb.ListKeysRequest(), metadata=md(secret))
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ADMIN_CREDENTIAL")
    listed = service_keys(served)[secret[8:20]]
    assert (listed["kind"], listed["permissions"], listed["state"]) == ("internal", [CONVERSATIONS], "active")
    assert secret not in json.dumps(listed)


def test_bootstrap_commands_refuse_what_they_must_not_make(served):
    before = set(service_keys(served))
    refused = run(served, "bootstrap-admin", "--name", "runner", "--permission", REVEAL)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "bootstrap-internal" in refused.stderr
    unknown = run(served, "bootstrap-internal", "--name", "x", "--permission", "lab:everything")
    assert unknown.returncode == 2 and "unknown internal permissions" in unknown.stderr
    assert tokens.TOKEN_REGEX.search(unknown.stdout) is None
    none = run(served, "bootstrap-internal", "--name", "x")
    assert none.returncode == 2 and "--permission" in none.stderr
    assert set(service_keys(served)) == before


def _until(check, within: float = 10.0):
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_service_keys_rotate_replaces_an_internal_key(served):
    old = new_credential(run(served, "bootstrap-internal", "--name", "lab runner", "--permission", REVEAL))
    widget_key = served.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-cli", kind=res.KEY_KIND_WIDGET), metadata=md(served.admin)
    )
    request = cpb.IssueConversationSecretRequest(public_key=widget_key.secret, conversation_id="c-2")
    conftest.MINTED.add(widget_key.secret)
    # Cached by the server as verified, before the rotation.
    assert call_error(served.stub.IssueConversationSecret, request, metadata=md(old)).reason == (
        "INTERNAL_PERMISSION_REQUIRED"
    )

    out = run(served, "service-keys", "rotate", old[8:20])
    new = new_credential(out)
    assert new.startswith("woes_ik_") and "stops working now" in out.stdout
    listed = service_keys(served)
    assert listed[new[8:20]]["permissions"] == [REVEAL] and listed[new[8:20]]["rotated_from"] == old[8:20]
    assert listed[old[8:20]]["state"] == "rotated"

    def old_refused():
        err = call_error(served.stub.IssueConversationSecret, request, metadata=md(old))
        assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_EXPIRED")

    _until(old_refused)  # the server learns of it through the change feed
    assert call_error(served.stub.IssueConversationSecret, request, metadata=md(new)).reason == (
        "INTERNAL_PERMISSION_REQUIRED"  # the new credential holds what the old one held, no more
    )

    graced = run(served, "service-keys", "rotate", new[8:20], "--grace-seconds", "600")
    newest = new_credential(graced)
    assert "keeps working until" in graced.stdout
    assert service_keys(served)[newest[8:20]]["rotated_from"] == new[8:20]
    again = run(served, "service-keys", "rotate", new[8:20])
    assert again.returncode == 1 and "KEY_NOT_ROTATABLE" in again.stderr
    workspace = run(served, "service-keys", "rotate", widget_key.key.key_id)
    assert workspace.returncode == 1 and "KEY_NOT_ROTATABLE" in workspace.stderr
    assert run(served, "service-keys", "rotate", newest[8:20], "--grace-seconds", "-1").returncode == 2


def test_an_admin_key_is_rotated_by_the_command_not_the_api(served):
    second = new_credential(run(served, "bootstrap-admin", "--name", "second"))
    err = call_error(served.stub.Rotate, pb.RotateRequest(key_id=second[8:20]), metadata=md(second))
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "KEY_NOT_ROTATABLE")
    replacement = new_credential(run(served, "service-keys", "rotate", second[8:20]))
    assert replacement.startswith("woes_ak_")
    got = served.stub.GetKey(pb.GetKeyRequest(key_id=second[8:20]), metadata=md(replacement)).key
    assert (got.state, got.rotated_to) == (res.KEY_STATE_ROTATED, replacement[8:20])


# -- moving an existing deployment ------------------------------------------------------------


def test_migration_moves_internal_permissions_off_admin_keys(database_url, pepper):
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, "0003")  # the revision before 0004
        store = SqlStore(database_url, create_schema=False)
        manager = credential_manager(store, pepper)
        # Admin keys as 'bootstrap-admin --permission' made them before internal credentials existed.
        runner = manager.bootstrap_service_key(
            KeyKind.ADMIN, "test runner", (REVEAL,), "bootstrap-admin", "admin.bootstrap"
        )
        plain = manager.bootstrap_admin("ops")
        internal_key = manager.bootstrap_service_key(
            KeyKind.INTERNAL, "kept", (CONVERSATIONS,), "t", "internal.bootstrap"
        )
        seq_before = store.latest_change()
        migrate.upgrade(engine)
        assert store.schema_status().up_to_date
        assert store.get_key(runner.key.key_id).scopes == ()
        assert store.get_key(plain.key.key_id).scopes == ()
        assert store.get_key(internal_key.key.key_id).scopes == (CONVERSATIONS,)  # internal keys keep theirs
        events = [e for e in store.list_audit(limit=100) if e.action == "admin.permissions_removed"]
        assert [(e.key_id, e.actor) for e in events] == [(runner.key.key_id, "system:migration-0004")]
        assert REVEAL in events[0].detail and "bootstrap-internal" in events[0].detail
        with engine.connect() as conn:
            fed = conn.execute(select(changes.c.key_id, changes.c.change).where(changes.c.seq > seq_before)).all()
        assert [tuple(row) for row in fed] == [(runner.key.key_id, "permissions")]  # servers drop the cached key
        # The admin key still works as an admin key.
        assert manager.authenticate_admin(runner.secret).key_id == runner.key.key_id
        migrate.upgrade(engine)  # nothing left to do
        assert len([e for e in store.list_audit(limit=100) if e.action == "admin.permissions_removed"]) == 1
        store.close()
    finally:
        engine.dispose()
