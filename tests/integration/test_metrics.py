"""Prometheus /metrics on its own port: calls, latency, cache, failures, throttling, feed lag."""

from __future__ import annotations

import logging
import socket
import urllib.request

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from auth_service.app import runtime as server_mod
from auth_service.app.config import Settings
from auth_service.domain import tokens
from auth_service.domain.tokens import KeyKind
from tests.conftest import free_port, start_live_server
from tests.support.rich_errors import call_error, throttled_plaintext_policy


@pytest.fixture
def metered_server(sqlite_url, pepper, tmp_path):
    srv = start_live_server(
        sqlite_url,
        pepper,
        metrics_listen="127.0.0.1:0",
        throttle_caller="3/0.01",
        policy_file=throttled_plaintext_policy(tmp_path),
    )
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in /metrics")


def test_metrics_are_off_by_default(live_server):
    assert live_server.runtime.metrics is None


def test_metrics_answer_with_the_listed_series(metered_server):
    srv = metered_server
    issued = srv.stub.IssueKey(
        pb.IssueKeyRequest(workspace_id="ws-m", kind=res.KEY_KIND_SERVER, scopes=["conversations:read"]),
        metadata=srv.admin_md,
        timeout=10,
    )
    for _ in range(3):
        srv.stub.Authenticate(pb.AuthenticateRequest(credential=issued.secret), timeout=10)
    bad = issued.secret[:20] + "_" + "A" * 49  # right shape, wrong checksum
    assert (
        call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential=bad), timeout=10).reason
        == "CREDENTIAL_MALFORMED"
    )
    assert (
        call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential="nope"), timeout=10).reason
        == "CREDENTIAL_MALFORMED"
    )
    assert (
        call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential="nope"), timeout=10).reason
        == "CREDENTIAL_MALFORMED"
    )
    throttled = call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential="nope"), timeout=10)
    assert throttled.code is grpc.StatusCode.RESOURCE_EXHAUSTED

    text = _scrape(srv.runtime.metrics.port)
    assert _value(text, 'woes_auth_rpc_calls_total{code="OK",method="Authenticate"}') == 3
    assert _value(text, 'woes_auth_rpc_calls_total{code="OK",method="IssueKey"}') == 1
    assert _value(text, 'woes_auth_rpc_calls_total{code="UNAUTHENTICATED",method="Authenticate"}') == 3
    assert _value(text, 'woes_auth_rpc_calls_total{code="RESOURCE_EXHAUSTED",method="Authenticate"}') == 1
    assert _value(text, 'woes_auth_rpc_duration_seconds_count{method="Authenticate"}') == 7
    assert _value(text, 'woes_auth_rpc_duration_seconds_bucket{le="+Inf",method="Authenticate"}') == 7
    assert _value(text, 'woes_auth_authentication_failures_total{reason="CREDENTIAL_MALFORMED"}') == 3
    assert _value(text, 'woes_auth_throttled_total{scope="caller"}') == 1
    # One miss (the first Authenticate read the store), then hits.
    assert _value(text, "woes_auth_cache_hits_total") == 2
    assert _value(text, "woes_auth_cache_misses_total") >= 1
    assert 0 < _value(text, "woes_auth_cache_hit_ratio") < 1
    assert _value(text, "woes_auth_cache_entries") >= 1
    assert 0 <= _value(text, "woes_auth_change_feed_staleness_seconds") < 60
    assert "woes_auth_cache_negative_hits_total" in text
    assert "woes_auth_policy_denials_total" in text
    assert issued.secret not in text


def test_each_worker_serves_metrics_on_its_own_port(sqlite_url, pepper):
    grpc_port = free_port()
    while True:  # a base port whose successor is free (and not the gRPC port)
        base = free_port()
        if base + 1 != grpc_port and _port_free(base + 1):
            break
    settings = Settings(listen=f"127.0.0.1:{grpc_port}", database_url=sqlite_url, metrics_listen=f"127.0.0.1:{base}")
    runtime = server_mod.build(settings, pepper, worker=1)
    try:
        assert runtime.metrics_listen == ("127.0.0.1", base + 1)
        server_mod.start(runtime)
        assert runtime.metrics.port == base + 1
        assert "woes_auth_cache_hit_ratio" in _scrape(base + 1)
    finally:
        runtime.stop(0.5)


def test_with_metrics_and_an_access_log_repeats_come_from_the_memo_and_each_call_is_recorded_once(
    sqlite_url, pepper, caplog
):
    """Metrics and the access log time and record the call around the front over bytes: repeats of
    a granted or refused request are answered from the memo, and every call is counted and logged
    exactly once, with its code, reason and the key id it presented."""
    srv = start_live_server(sqlite_url, pepper, metrics_listen="127.0.0.1:0", access_log=True)
    try:
        issued = srv.stub.IssueKey(
            pb.IssueKeyRequest(workspace_id="ws-m", kind=res.KEY_KIND_SERVER, scopes=["conversations:read"]),
            metadata=srv.admin_md,
            timeout=10,
        )
        granted = pb.AuthenticateRequest(credential=issued.secret, required_scopes=["conversations:read"])
        unknown_token = tokens.mint(KeyKind.SERVER)
        unknown = pb.AuthenticateRequest(credential=unknown_token.token)
        caplog.set_level(logging.INFO, logger="auth_service.access")
        for _ in range(5):
            srv.stub.Authenticate(granted, timeout=10)
        for _ in range(4):
            assert call_error(srv.stub.Authenticate, unknown, timeout=10).reason == "CREDENTIAL_UNKNOWN"
        cache = srv.manager.cache
        assert len(cache.memo) == 1 and cache.memo.refusals() == 1
        assert cache.probe_grants == 4  # the first call read the store; the second the probe; then the memo
        text = _scrape(srv.runtime.metrics.port)
        assert _value(text, 'woes_auth_rpc_calls_total{code="OK",method="Authenticate"}') == 5
        assert _value(text, 'woes_auth_rpc_calls_total{code="UNAUTHENTICATED",method="Authenticate"}') == 4
        assert _value(text, 'woes_auth_rpc_duration_seconds_count{method="Authenticate"}') == 9
        assert _value(text, 'woes_auth_authentication_failures_total{reason="CREDENTIAL_UNKNOWN"}') == 4
        access = [r for r in caplog.records if r.name == "auth_service.access" and r.method == "Authenticate"]
        assert [(r.code, r.key_id) for r in access] == [("OK", issued.key.key_id)] * 5 + [
            ("UNAUTHENTICATED", unknown_token.key_id)
        ] * 4
        assert {r.reason for r in access[5:]} == {"CREDENTIAL_UNKNOWN"}
        assert all(issued.secret not in r.getMessage() for r in access)
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
