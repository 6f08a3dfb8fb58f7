"""The Envoy ext_authz adapter, called with the CheckRequest Envoy's ext_authz filter sends (gRPC mode)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as actx
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2
from woes.auth.v1.resources_pb2 import KEY_KIND_WIDGET

from tests.support.client import issue, revoke, start_switchable_server

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def check_request(headers: dict[str, str], required_scopes: str | None = "conversations:read", raw: bool = False):
    """What Envoy sends for `GET https://api.woes.test/v1/conversations?limit=5`."""
    base = {
        ":authority": "api.woes.test",
        ":method": "GET",
        ":path": "/v1/conversations?limit=5",
        ":scheme": "https",
        "user-agent": "curl/8.5.0",
        "accept": "*/*",
        "x-forwarded-proto": "https",
        "x-request-id": "3f0c9a51-8d3b-4c55-9a36-0f4e3f0c2b10",
        **headers,
    }
    http = actx.AttributeContext.HttpRequest(
        id="11493370232165741373",
        method="GET",
        path="/v1/conversations?limit=5",
        host="api.woes.test",
        scheme="https",
        protocol="HTTP/1.1",
    )
    if raw:
        http.header_map.headers.extend(base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in base.items())
    else:
        http.headers.update(base)
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return ext.CheckRequest(
        attributes=actx.AttributeContext(
            source=actx.AttributeContext.Peer(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="10.1.2.3", port_value=50714)
                )
            ),
            destination=actx.AttributeContext.Peer(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="10.1.9.9", port_value=8443)
                )
            ),
            request=actx.AttributeContext.Request(time=now, http=http),
            context_extensions={} if required_scopes is None else {"required_scopes": required_scopes},
        )
    )


@pytest.fixture
def authz(live_server):
    return ext_grpc.AuthorizationStub(live_server.channel)


def ok_headers(response) -> dict[str, str]:
    assert response.WhichOneof("http_response") == "ok_response", response
    for option in response.ok_response.headers:
        assert option.append_action == OVERWRITE, "a client-sent x-woes-* header must be replaced, not kept"
    return {o.header.key: o.header.value for o in response.ok_response.headers}


def denial(response, secrets=()) -> tuple[int, dict]:
    assert response.WhichOneof("http_response") == "denied_response", response
    assert response.status.code != code_pb2.OK
    denied = response.denied_response
    everything = response.SerializeToString()
    for secret in secrets:
        assert secret.encode() not in everything
    headers = {o.header.key: o.header.value for o in denied.headers}
    assert headers["content-type"] == "application/json"
    return denied.status.code, json.loads(denied.body)["error"]


def test_allow_adds_identity_headers_and_strips_the_credential(live_server, authz):
    key = issue(live_server, "ws-envoy", ["conversations:write", "messages:read"])
    response = authz.Check(
        check_request({"authorization": f"Bearer {key.secret}", "x-woes-workspace-id": "ws-victim"}), timeout=10
    )
    assert response.status.code == code_pb2.OK
    headers = ok_headers(response)
    assert headers == {
        "x-woes-workspace-id": "ws-envoy",
        "x-woes-key-id": key.key.key_id,
        "x-woes-scopes": "conversations:write,messages:read",
    }
    assert list(response.ok_response.headers_to_remove) == ["authorization"]
    assert key.secret.encode() not in response.SerializeToString()

    # Envoy with `encode_raw_headers` sends header_map instead of headers.
    response = authz.Check(check_request({"authorization": f"Bearer {key.secret}"}, raw=True), timeout=10)
    assert ok_headers(response)["x-woes-workspace-id"] == "ws-envoy"

    # No route scopes: any valid server credential passes.
    response = authz.Check(check_request({"authorization": f"bearer {key.secret}"}, required_scopes=None), timeout=10)
    assert response.status.code == code_pb2.OK


def test_deny_401_for_missing_malformed_and_revoked(live_server, authz):
    status, body = denial(authz.Check(check_request({}), timeout=10))
    assert status == 401 and body["reason"] == "CREDENTIAL_MALFORMED" and body["status"] == "UNAUTHENTICATED"

    key = issue(live_server)
    response = authz.Check(check_request({"authorization": f"Token {key.secret}"}), timeout=10)
    status, _ = denial(response, [key.secret])
    assert status == 401
    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert {o.header.key for o in response.denied_response.headers} >= {"www-authenticate"}

    response = authz.Check(check_request({"authorization": f"Bearer {key.secret}, Bearer {key.secret}"}), timeout=10)
    assert denial(response, [key.secret])[0] == 401

    revoke(live_server, key.key.key_id)
    status, body = denial(
        authz.Check(check_request({"authorization": f"Bearer {key.secret}"}), timeout=10), [key.secret]
    )
    assert status == 401 and body["reason"] == "CREDENTIAL_REVOKED"


def test_deny_403_for_missing_scope_and_widget_keys(live_server, authz):
    key = issue(live_server, scopes=["messages:read"])
    response = authz.Check(check_request({"authorization": f"Bearer {key.secret}"}, "conversations:read"), timeout=10)
    status, body = denial(response, [key.secret])
    assert status == 403 and body["reason"] == "INSUFFICIENT_SCOPE" and "conversations:read" in body["message"]
    assert response.status.code == code_pb2.PERMISSION_DENIED

    widget = issue(live_server, kind=KEY_KIND_WIDGET)
    response = authz.Check(check_request({"authorization": f"Bearer {widget.secret}"}), timeout=10)
    status, body = denial(response, [widget.secret])
    assert status == 403 and body["reason"] == "WIDGET_KEY_NOT_API_CREDENTIAL"


def test_bad_route_configuration_is_500_not_a_client_error(live_server, authz):
    key = issue(live_server)
    response = authz.Check(check_request({"authorization": f"Bearer {key.secret}"}, "nonsense:read"), timeout=10)
    status, body = denial(response, [key.secret])
    assert status == 500 and body["reason"] == "INTERNAL"


def test_deny_503_when_the_store_is_down(sqlite_url, pepper):
    live, store = start_switchable_server(sqlite_url, pepper)
    try:
        key = issue(live)
        store.down.set()
        response = ext_grpc.AuthorizationStub(live.channel).Check(
            check_request({"authorization": f"Bearer {key.secret}"}), timeout=10
        )
        status, body = denial(response, [key.secret])
        assert status == 503 and body["reason"] == "STORE_UNAVAILABLE"
        assert response.status.code == code_pb2.UNAVAILABLE
    finally:
        live.channel.close()
        live.runtime.stop(0.5)


def test_grpcurl_lists_the_authorization_service(live_server):
    grpcurl = Path(sys.executable).parent / "grpcurl"
    out = subprocess.run(
        [str(grpcurl), "-plaintext", live_server.target, "list"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "envoy.service.auth.v3.Authorization" in out.stdout.split()
    assert "woes.auth.v1.AuthService" in out.stdout.split()
