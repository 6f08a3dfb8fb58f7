"""The operator commands of the other credential kinds, run as a real CLI process against a real server."""

from __future__ import annotations

import json
import secrets

from auth_service.domain import permissions
from auth_service.domain.keys import service_keys
from tests import conftest
from tests.support.process import base_env, cli


def _env(live_server, tmp_path, admin_secret: str, internal_secret: str = "") -> dict[str, str]:
    env = base_env(tmp_path, WOES_AUTH_SERVER=live_server.target, WOES_AUTH_ADMIN_CREDENTIAL=admin_secret)
    if internal_secret:
        env["WOES_AUTH_INTERNAL_CREDENTIAL"] = internal_secret
    return env


def test_test_credentials_put_list_reveal_and_audit(live_server, tmp_path):
    manager = live_server.manager
    revealer = service_keys.bootstrap_internal(manager, "lab runner", (permissions.REVEAL_TEST_CREDENTIALS,)).secret
    other = service_keys.bootstrap_internal(manager, "widget backend", (permissions.ISSUE_CONVERSATION_SECRETS,)).secret
    plain_env = _env(live_server, tmp_path, live_server.admin_secret)
    lab_env = _env(live_server, tmp_path, live_server.admin_secret, revealer)
    other_env = _env(live_server, tmp_path, live_server.admin_secret, other)
    material = "sk_live_" + secrets.token_urlsafe(24)
    conftest.OTHER_SECRETS.add(material)

    put = cli(
        "test-credentials",
        "put",
        "--workspace",
        "ws-cli",
        "--name",
        "crm",
        "--url",
        "https://api.example.com",
        env=plain_env,
        stdin=material,
    )
    assert put.returncode == 0, put.stderr
    assert material not in put.stdout and material not in put.stderr
    credential_id = json.loads(put.stdout)["credential"]["credential_id"]

    listed = cli("test-credentials", "list", "--workspace", "ws-cli", env=plain_env)
    assert listed.returncode == 0, listed.stderr
    assert credential_id in listed.stdout and material not in listed.stdout

    # The admin credential is not sent for a reveal: the command needs an internal credential.
    missing = cli("test-credentials", "reveal", credential_id, "--workspace", "ws-cli", env=plain_env)
    assert missing.returncode == 2 and "WOES_AUTH_INTERNAL_CREDENTIAL" in missing.stderr
    refused = cli("test-credentials", "reveal", credential_id, "--workspace", "ws-cli", env=other_env)
    assert refused.returncode == 1
    assert "PERMISSION_DENIED INTERNAL_PERMISSION_REQUIRED" in refused.stderr
    assert material not in refused.stdout + refused.stderr

    revealed = cli(
        "test-credentials", "reveal", credential_id, "--workspace", "ws-cli", "--reason", "cli test", env=lab_env
    )
    assert revealed.returncode == 0, revealed.stderr
    assert material in revealed.stdout
    assert material not in revealed.stderr

    audit = cli("audit", "list", "--workspace", "ws-cli", "--action", "test_credential.reveal", env=plain_env)
    assert audit.returncode == 0, audit.stderr
    outcomes = sorted(e["outcome"] for e in json.loads(audit.stdout).get("events", []))
    assert outcomes == ["denied", "ok"], audit.stdout
    assert material not in audit.stdout

    deleted = cli("test-credentials", "delete", credential_id, "--workspace", "ws-cli", env=plain_env)
    assert deleted.returncode == 0, deleted.stderr
    gone = cli("test-credentials", "get", credential_id, "--workspace", "ws-cli", env=plain_env)
    assert gone.returncode == 1 and "TEST_CREDENTIAL_NOT_FOUND" in gone.stderr


def test_conversations_issue_verify_revoke(live_server, tmp_path):
    from woes.auth.v1 import auth_service_pb2 as pb
    from woes.auth.v1 import resources_pb2 as res

    backend = service_keys.bootstrap_internal(
        live_server.manager, "widget backend", (permissions.ISSUE_CONVERSATION_SECRETS,)
    ).secret
    env = _env(live_server, tmp_path, live_server.admin_secret, backend)
    widget = live_server.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-cli-conv", kind=res.KEY_KIND_WIDGET), metadata=live_server.admin_md
    ).secret
    # An admin credential alone issues no conversation secret.
    admin_only = _env(live_server, tmp_path, live_server.admin_secret)
    refused = cli("conversations", "issue", "--public-key", widget, "--conversation", "c-1", env=admin_only)
    assert refused.returncode == 2 and "WOES_AUTH_INTERNAL_CREDENTIAL" in refused.stderr
    issued = cli("conversations", "issue", "--public-key", widget, "--conversation", "c-1", env=env)
    assert issued.returncode == 0, issued.stderr
    secret = json.loads(issued.stdout)["secret"]
    conftest.MINTED.add(secret)
    assert secret not in issued.stderr

    secret_file = tmp_path / "conversation-secret"
    secret_file.write_text(secret)
    ok = cli(
        "conversations",
        "verify",
        "--public-key",
        widget,
        "--conversation",
        "c-1",
        "--secret-file",
        str(secret_file),
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["conversation_id"] == "c-1"
    other = cli(
        "conversations",
        "verify",
        "--public-key",
        widget,
        "--conversation",
        "c-2",
        "--secret-file",
        str(secret_file),
        env=env,
    )
    assert other.returncode == 1 and "CONVERSATION_SECRET_INVALID" in other.stderr
    assert secret not in other.stdout + other.stderr
