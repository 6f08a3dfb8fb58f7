"""The real grpcurl binary against a live server: health, reflection listing and Authenticate."""

from __future__ import annotations

import json

from tests import conftest
from tests.support.grpcurl import grpcurl
from tests.support.rpc import issue


def test_health_check_answers_serving(live_server):
    out = grpcurl(live_server.target, "grpc.health.v1.Health/Check")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"status": "SERVING"}
    out = grpcurl("-d", '{"service": "woes.auth.v1.AuthService"}', live_server.target, "grpc.health.v1.Health/Check")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"status": "SERVING"}


def test_list_names_the_services(live_server):
    out = grpcurl(live_server.target, "list")
    assert out.returncode == 0, out.stderr
    services = set(out.stdout.split())
    assert {"woes.auth.v1.AuthService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    described = grpcurl(live_server.target, "describe", "woes.auth.v1.AuthService")
    assert described.returncode == 0, described.stderr
    for rpc in ("Authenticate", "VerifyWidgetKey", "IssueKey", "Rotate", "Revoke", "GetKey", "ListKeys"):
        assert f"rpc {rpc} (" in described.stdout


def test_authenticate_through_grpcurl(live_server):
    issued = issue(live_server, workspace_id="ws-curl", scopes=["messages:write"])
    # The credential goes through stdin (-d @), so it never appears in a process list.
    request = json.dumps({"credential": issued.secret, "required_scopes": ["messages:read"]})
    out = grpcurl("-d", "@", live_server.target, "woes.auth.v1.AuthService/Authenticate", stdin=request)
    assert out.returncode == 0, out.stderr
    principal = json.loads(out.stdout)["principal"]
    assert principal["key_id"] == issued.key.key_id
    assert principal["workspace_id"] == "ws-curl"
    assert principal["kind"] == "KEY_KIND_SERVER"
    assert principal["scopes"] == ["messages:write"]


def test_a_bad_credential_through_grpcurl_is_unauthenticated(live_server):
    bad = json.dumps({"credential": "woes_sk_not-a-real-credential"})
    out = grpcurl("-d", "@", live_server.target, "woes.auth.v1.AuthService/Authenticate", stdin=bad)
    assert out.returncode != 0
    assert "Code: Unauthenticated" in out.stderr
    assert "not-a-real-credential" not in out.stderr


def test_admin_rpc_through_grpcurl_with_bearer_metadata(live_server):
    body = json.dumps({"workspace_id": "ws-curl", "kind": "KEY_KIND_WIDGET"})
    out = grpcurl(
        "-H",
        f"authorization: Bearer {live_server.admin_secret}",
        "-d",
        body,
        live_server.target,
        "woes.auth.v1.AuthService/IssueKey",
    )
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout)
    conftest.MINTED.add(key["secret"])
    assert key["key"]["kind"] == "KEY_KIND_WIDGET"
    assert key["secret"].startswith("woes_pk_")
    refused = grpcurl("-d", body, live_server.target, "woes.auth.v1.AuthService/IssueKey")
    assert "Code: Unauthenticated" in refused.stderr
