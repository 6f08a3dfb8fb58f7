"""The ``woes-auth`` command: bootstrap-admin and the ``keys`` admin commands against a running server."""

from __future__ import annotations

import json

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc

from auth_service.domain import tokens
from tests import conftest
from tests.support.process import base_env, cli, start_serve
from tests.support.rpc import secret_forms


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server process for the module, with an admin created by the real bootstrap command."""
    data_dir = tmp_path_factory.mktemp("cli")
    server = start_serve(data_dir)
    boot = cli("bootstrap-admin", "--name", "ops laptop", env=base_env(data_dir))
    admin = boot.stdout.rstrip("\n").splitlines()[-1] if boot.returncode == 0 else ""
    if admin:
        conftest.MINTED.add(admin)
    pepper = (data_dir / "dev-pepper").read_text().strip()
    conftest.OTHER_SECRETS.add(pepper.split(":", 1)[1])
    server.boot = boot
    server.admin = admin
    yield server
    assert server.stop() == 0


def keys(served, *args: str, admin: str | None = None, **env: str):
    environment = base_env(served.data_dir, WOES_AUTH_SERVER=served.target, **env)
    environment["WOES_AUTH_ADMIN_CREDENTIAL"] = served.admin if admin is None else admin
    return cli("keys", *args, env=environment)


def ok_json(out) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _authenticate(served, secret: str):
    with grpc.insecure_channel(served.target) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        return stub.Authenticate(pb.AuthenticateRequest(credential=secret), timeout=30)


def test_bootstrap_admin_prints_the_credential_alone_on_the_last_line_and_never_logs_it(served):
    boot = served.boot
    assert boot.returncode == 0, boot.stderr
    last = boot.stdout.rstrip("\n").splitlines()[-1]
    assert last == served.admin
    assert tokens.TOKEN_REGEX.fullmatch(last) and last.startswith("woes_ak_")
    assert boot.stdout.count(last) == 1
    assert boot.stderr.strip(), "bootstrap-admin logs what it did"
    for form in secret_forms(last):
        assert form not in boot.stderr
    key_id = last.split("_")[2]
    assert key_id in boot.stderr  # the log names the key, not the secret
    admin_key = ok_json(keys(served, "get", key_id))["key"]
    assert admin_key["kind"] == "KEY_KIND_ADMIN" and admin_key["display_name"] == "ops laptop"


def test_keys_issue_get_list_rotate_revoke(served):
    issued = ok_json(
        keys(served, "issue", "--workspace", "ws-cli", "--name", "sync job", "--scope", "conversations:write")
    )
    secret = issued["secret"]
    conftest.MINTED.add(secret)
    key_id = issued["key"]["key_id"]
    assert secret.startswith(f"woes_sk_{key_id}_")
    assert issued["key"]["scopes"] == ["conversations:write"]
    assert _authenticate(served, secret).principal.workspace_id == "ws-cli"

    got = keys(served, "get", key_id)
    assert ok_json(got)["key"]["display_name"] == "sync job"
    listed = keys(served, "list", "--workspace", "ws-cli", "--page-size", "10")
    assert key_id in [k["key_id"] for k in ok_json(listed)["keys"]]
    for out in (got, listed):
        for form in secret_forms(secret):
            assert form not in out.stdout

    rotated = ok_json(keys(served, "rotate", key_id, "--grace-seconds", "0"))
    conftest.MINTED.add(rotated["secret"])
    assert rotated["key"]["rotated_from"] == key_id
    assert rotated["previous_key"]["state"] == "KEY_STATE_ROTATED"
    assert _authenticate(served, rotated["secret"]).principal.key_id == rotated["key"]["key_id"]
    with pytest.raises(grpc.RpcError) as refused:
        _authenticate(served, secret)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    revoked = ok_json(keys(served, "revoke", rotated["key"]["key_id"], "--reason", "done"))
    assert revoked["key"]["state"] == "KEY_STATE_REVOKED"
    assert revoked["key"]["revoke_reason"] == "done"


def test_keys_issue_a_widget_key_with_origins(served):
    issued = ok_json(
        keys(served, "issue", "--workspace", "ws-cli", "--kind", "widget", "--origin", "https://shop.example")
    )
    conftest.MINTED.add(issued["secret"])
    assert issued["secret"].startswith("woes_pk_")
    assert issued["key"]["allowed_origins"] == ["https://shop.example"]


def test_keys_issue_with_request_id_replays(served):
    args = ("issue", "--workspace", "ws-cli", "--scope", "messages:read", "--request-id", "cli-retry-1")
    first = ok_json(keys(served, *args))
    conftest.MINTED.add(first["secret"])
    second = ok_json(keys(served, *args))
    assert second["replayed"] is True
    assert "secret" not in second  # empty: the secret is never stored
    assert second["key"]["key_id"] == first["key"]["key_id"]


def test_admin_credential_file(served, tmp_path):
    path = tmp_path / "admin"
    path.write_text(served.admin + "\n")
    path.chmod(0o600)
    out = keys(served, "--admin-credential-file", str(path), "list", admin="")
    assert "keys" in ok_json(out)


@pytest.mark.parametrize(
    "args, code_and_reason, violation",
    [
        (("get", "AAAAAAAAAAAA"), "NOT_FOUND KEY_NOT_FOUND", None),
        (("get", "not-a-key-id"), "INVALID_ARGUMENT INVALID_ARGUMENT", "key_id:"),
        (("issue", "--workspace", "ws-cli", "--scope", "billing:read"), "INVALID_ARGUMENT INVALID_ARGUMENT", "scopes:"),
        (("rotate", "AAAAAAAAAAAA", "--grace-seconds", "-5"), "INVALID_ARGUMENT INVALID_ARGUMENT", "grace_period:"),
        (("list", "--page-size", "-1"), "INVALID_ARGUMENT INVALID_ARGUMENT", "page_size:"),
    ],
)
def test_errors_print_code_and_reason_and_exit_1(served, args, code_and_reason, violation):
    out = keys(served, *args)
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"error: {code_and_reason}:" in out.stderr
    if violation:
        assert f"  {violation}" in out.stderr


def test_a_workspace_key_is_not_an_admin_credential(served):
    issued = ok_json(keys(served, "issue", "--workspace", "ws-cli", "--scope", "messages:read"))
    conftest.MINTED.add(issued["secret"])
    out = keys(served, "list", admin=issued["secret"])
    assert out.returncode == 1
    assert "error: PERMISSION_DENIED NOT_ADMIN_CREDENTIAL:" in out.stderr
    for form in secret_forms(issued["secret"]):
        assert form not in out.stderr


def test_a_revoked_admin_credential_is_refused(served):
    boot = cli("bootstrap-admin", "--name", "temp admin", env=base_env(served.data_dir))
    assert boot.returncode == 0, boot.stderr
    temp = boot.stdout.rstrip("\n").splitlines()[-1]
    conftest.MINTED.add(temp)
    assert keys(served, "list", admin=temp).returncode == 0
    ok_json(keys(served, "revoke", temp.split("_")[2], "--reason", "temporary"))
    out = keys(served, "list", admin=temp)
    assert out.returncode == 1
    assert "error: UNAUTHENTICATED CREDENTIAL_REVOKED:" in out.stderr


def test_no_admin_credential_is_a_usage_error(served):
    out = keys(served, "list", admin="")
    assert out.returncode == 2
    assert "WOES_AUTH_ADMIN_CREDENTIAL" in out.stderr


def test_an_unreachable_server_is_unavailable(served):
    environment = base_env(served.data_dir, WOES_AUTH_SERVER=f"127.0.0.1:{conftest.free_port()}")
    environment["WOES_AUTH_ADMIN_CREDENTIAL"] = served.admin
    out = cli("keys", "--timeout", "3", "list", env=environment)
    assert out.returncode == 1
    assert "error: UNAVAILABLE" in out.stderr or "error: DEADLINE_EXCEEDED" in out.stderr


def test_usage_errors_are_reported_without_a_traceback(served, tmp_path):
    out = keys(served, "issue", "--workspace", "ws-cli", "--scope", "messages:read", "--expire-time", "next tuesday")
    assert out.returncode == 2
    assert "--expire-time" in out.stderr and "Traceback" not in out.stderr
    out = keys(served, "--admin-credential-file", str(tmp_path / "missing"), "list", admin="")
    assert out.returncode == 2
    assert "cannot read the admin credential file" in out.stderr and "Traceback" not in out.stderr


def test_issue_with_an_expire_time(served):
    issued = ok_json(
        keys(
            served,
            "issue",
            "--workspace",
            "ws-cli",
            "--scope",
            "messages:read",
            "--expire-time",
            "2099-01-01T00:00:00Z",
        )
    )
    conftest.MINTED.add(issued["secret"])
    assert issued["key"]["expire_time"] == "2099-01-01T00:00:00Z"
