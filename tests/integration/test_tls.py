"""mTLS: the server requires a client certificate signed by its client CA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import grpc
import pytest
from cryptography import x509
from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.api import tls
from auth_service.app.config import Settings
from auth_service.domain.errors import ConfigError
from auth_service.domain.keys.rules import IssueSpec
from auth_service.domain.tokens import KeyKind
from tests import conftest
from tests.conftest import free_port, new_pepper_text, server_log_path, start_live_server
from tests.support.tls import dev_certs, other_ca_certs, stub, tls_channel, tls_settings

GRPCURL = os.path.join(os.path.dirname(sys.executable), "grpcurl")


@pytest.fixture
def tls_server(sqlite_url, pepper):
    srv = start_live_server(sqlite_url, pepper, **tls_settings())
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


def _issue_server_key(srv) -> str:
    # The in-process manager issues directly (the gateway certificate may only verify).
    from auth_service.domain.keys.rules import IssueSpec
    from auth_service.domain.tokens import KeyKind

    issued = srv.manager.issue_key(
        "test", IssueSpec(workspace_id="ws-tls", kind=KeyKind.SERVER, scopes=("conversations:read",))
    )
    return issued.secret


def test_dev_certs_name_the_service_in_a_san_uri():
    certs = dev_certs()
    cert = x509.load_pem_x509_certificate((certs / "gateway.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://woes/service/gateway"]
    server = x509.load_pem_x509_certificate((certs / "server.pem").read_bytes())
    server_sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in server_sans.get_values_for_type(x509.DNSName)
    assert oct((certs / "gateway-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((certs / "ca-key.pem").stat().st_mode & 0o777) == "0o600"


def test_identity_from_sans():
    assert tls.identity_from_sans(["spiffe://woes/service/gateway"]) == "gateway"
    assert tls.identity_from_sans(["gateway.svc.woes"]) == tls.UNNAMED
    assert tls.identity_from_sans(["spiffe://woes/service/Bad Name"]) == tls.UNNAMED
    assert tls.identity_from_sans(["spiffe://other/service/gateway"]) == tls.UNNAMED
    assert tls.identity_from_auth_context({}) is None
    assert tls.identity_from_auth_context({"transport_security_type": [b"insecure"]}) is None


def test_certified_client_is_served(tls_server):
    secret = _issue_server_key(tls_server)
    with tls_channel(tls_server.runtime.port, "gateway") as channel:
        got = stub(channel).Authenticate(pb.AuthenticateRequest(credential=secret), timeout=10)
    assert got.principal.workspace_id == "ws-tls"


def test_client_without_certificate_is_refused(tls_server):
    secret = _issue_server_key(tls_server)
    with tls_channel(tls_server.runtime.port, None) as channel:
        with pytest.raises(grpc.RpcError) as err:
            stub(channel).Authenticate(pb.AuthenticateRequest(credential=secret), timeout=10)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_client_certificate_of_another_ca_is_refused(tls_server):
    secret = _issue_server_key(tls_server)
    # The client trusts the right server CA but presents a certificate signed by another CA.
    with tls_channel(tls_server.runtime.port, "gateway", certs=other_ca_certs()) as channel:
        with pytest.raises(grpc.RpcError) as err:
            stub(channel).Authenticate(pb.AuthenticateRequest(credential=secret), timeout=10)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_is_refused(tls_server):
    secret = _issue_server_key(tls_server)
    with pytest.raises(grpc.RpcError) as err:
        tls_server.stub.Authenticate(pb.AuthenticateRequest(credential=secret), timeout=10)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_tls_settings_must_be_complete(tmp_path):
    s = Settings(listen="127.0.0.1:0", tls_cert=str(dev_certs() / "server.pem"))
    with pytest.raises(ConfigError, match="WOES_AUTH_TLS_KEY"):
        s.validate()
    s = Settings(listen="127.0.0.1:0", **{**tls_settings(), "tls_client_ca": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="no such file"):
        s.validate()


def test_non_loopback_needs_tls_or_an_explicit_opt_in():
    with pytest.raises(ConfigError, match="plaintext"):
        Settings(listen="0.0.0.0:50051").validate()
    Settings(listen="0.0.0.0:50051", **tls_settings()).validate()
    Settings(listen="0.0.0.0:50051", allow_remote_plaintext=True).validate()


def _wait_for_line(path, needle: str, proc, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged within {timeout}s")


def _serve(tmp_path, env_extra: dict, args=()):
    port = free_port()
    log_path = server_log_path("tls-serve")
    pepper = new_pepper_text("p1")
    env = {
        **os.environ,
        "WOES_AUTH_DATA_DIR": str(tmp_path),
        "WOES_AUTH_PEPPER": pepper,
        "WOES_AUTH_WORKERS": "1",
        **env_extra,
    }
    fh = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "auth_service.cli", "serve", "--listen", f"127.0.0.1:{port}", *args],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )
    return proc, port, log_path, fh


def _stop(proc, fh):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    finally:
        fh.close()


def test_serve_with_mtls_says_so_and_answers_grpcurl_health_with_a_certificate(tmp_path):
    certs = dev_certs()
    proc, port, log_path, fh = _serve(
        tmp_path,
        {
            "WOES_AUTH_TLS_CERT": str(certs / "server.pem"),
            "WOES_AUTH_TLS_KEY": str(certs / "server-key.pem"),
            "WOES_AUTH_TLS_CLIENT_CA": str(certs / "ca.pem"),
        },
    )
    try:
        text = _wait_for_line(log_path, "serving woes.auth.v1.AuthService", proc)
        start = [json.loads(line) for line in text.splitlines() if "serving woes.auth.v1" in line][0]
        assert "mTLS" in start["message"] and "client certificates" in start["message"]
        base = [GRPCURL, "-cacert", str(certs / "ca.pem")]
        ok = subprocess.run(
            [
                *base,
                "-cert",
                str(certs / "gateway.pem"),
                "-key",
                str(certs / "gateway-key.pem"),
                f"localhost:{port}",
                "grpc.health.v1.Health/Check",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0, ok.stderr
        assert '"status": "SERVING"' in ok.stdout
        refused = subprocess.run(
            [*base, f"localhost:{port}", "grpc.health.v1.Health/Check"], capture_output=True, text=True, timeout=30
        )
        assert refused.returncode != 0
    finally:
        _stop(proc, fh)


def test_serve_plaintext_says_loopback_only(tmp_path):
    proc, _port, log_path, fh = _serve(tmp_path, {})
    try:
        text = _wait_for_line(log_path, "serving woes.auth.v1.AuthService", proc)
        start = [json.loads(line) for line in text.splitlines() if "serving woes.auth.v1" in line][0]
        assert "plaintext on loopback only" in start["message"]
    finally:
        _stop(proc, fh)


def test_dev_certs_command(tmp_path):
    from auth_service.cli import main as cli

    assert cli.main(["dev-certs", "--out", str(tmp_path / "c"), "--client", "billing"]) == 0
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["billing-key.pem", "billing.pem", "ca-key.pem", "ca.pem", "server-key.pem", "server.pem"]
    for key in (tmp_path / "c").glob("*-key.pem"):
        for line in key.read_text().splitlines():
            if not line.startswith("-----"):
                conftest.OTHER_SECRETS.add(line)
    assert cli.main(["dev-certs", "--out", str(tmp_path / "d"), "--client", "Not Valid"]) == 2


def test_dev_certs_issue_a_working_chain(tmp_path):
    written = tls.write_dev_certs(tmp_path, ["billing"])
    ca = x509.load_pem_x509_certificate(written["ca"].read_bytes())
    leaf = x509.load_pem_x509_certificate(written["client:billing"].read_bytes())
    leaf.verify_directly_issued_by(ca)
    for key in tmp_path.glob("*-key.pem"):
        for line in key.read_text().splitlines():
            if not line.startswith("-----"):
                conftest.OTHER_SECRETS.add(line)


def test_keys_command_speaks_mtls(sqlite_url, pepper, tmp_path, monkeypatch, capsys):
    from auth_service.cli import main as cli

    policy = tmp_path / "policy.toml"
    policy.write_text('default = ["verify"]\n[callers]\nadmin-tool = ["verify", "admin"]\n')
    srv = start_live_server(sqlite_url, pepper, policy_file=str(policy), **tls_settings())
    try:
        certs = dev_certs()
        monkeypatch.setenv("WOES_AUTH_ADMIN_CREDENTIAL", srv.admin_secret)
        base = ["keys", "--server", f"localhost:{srv.runtime.port}", "--tls-ca", str(certs / "ca.pem")]
        as_admin_tool = ["--tls-cert", str(certs / "admin-tool.pem"), "--tls-key", str(certs / "admin-tool-key.pem")]
        as_gateway = ["--tls-cert", str(certs / "gateway.pem"), "--tls-key", str(certs / "gateway-key.pem")]
        # ListKeys shows workspace keys only (never the admin key the server was started with).
        srv.manager.issue_key(
            "admin:test",
            IssueSpec("ws-mtls", KeyKind.SERVER, display_name="listed over mtls", scopes=("messages:read",)),
        )
        assert cli.main([*base, *as_admin_tool, "list"]) == 0
        assert '"display_name": "listed over mtls"' in capsys.readouterr().out
        assert cli.main([*base, *as_gateway, "list"]) == 1
        assert "PERMISSION_DENIED CALLER_NOT_ALLOWED" in capsys.readouterr().err
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
