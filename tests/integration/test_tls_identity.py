"""A caller's identity comes from its certificate's URI SAN ``spiffe://woes/service/<name>`` only.

A DNS or email SAN carrying the same text is no identity: the client CA may sign host names and
mail addresses for other purposes, and nothing stops such a value from reading like a service
URI. Over a real mTLS server with a policy, certificates of the development CA that differ only
in their SANs reach exactly the groups of the identity their URI SAN names, or of ``unnamed``.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.api import tls
from auth_service.domain.keys.rules import IssueSpec
from auth_service.domain.tokens import KeyKind
from tests import conftest
from tests.conftest import start_live_server
from tests.support.rich_errors import call_error
from tests.support.tls import dev_certs, stub, tls_settings

POLICY = 'default = []\n[callers]\ngateway = ["verify"]\nadmin-tool = ["verify", "admin"]\n'


def _dev_ca() -> tls.DevCa:
    certs = dev_certs()
    cert = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((certs / "ca-key.pem").read_bytes(), password=None)
    return tls.DevCa(cert, key)


def _client(folder: Path, name: str, sans: list[x509.GeneralName]) -> tuple[Path, Path]:
    """A client certificate of the development CA with exactly ``sans``."""
    cert, key = _dev_ca().issue(name, sans, server=False)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls._write_key(key_path, key)
    for line in key_path.read_text().splitlines():
        if line and not line.startswith("-----"):
            conftest.OTHER_SECRETS.add(line)
    return cert_path, key_path


def _channel(port: int, cert: Path, key: Path) -> grpc.Channel:
    creds = tls.channel_credentials(dev_certs() / "ca.pem", cert, key)
    return grpc.secure_channel(f"localhost:{port}", creds)


@pytest.fixture
def server(sqlite_url, pepper, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    srv = start_live_server(sqlite_url, pepper, policy_file=str(policy), **tls_settings())
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


def _uri(name: str) -> x509.GeneralName:
    return x509.UniformResourceIdentifier(tls.service_uri(name))


CASES = {
    # certificate name: (its SANs, the identity it must get)
    "uri-admin-tool": ([_uri("admin-tool")], "admin-tool"),
    "uri-gateway-dns-admin-tool": ([x509.DNSName(tls.service_uri("admin-tool")), _uri("gateway")], "gateway"),
    "dns-admin-tool": ([x509.DNSName(tls.service_uri("admin-tool"))], tls.UNNAMED),
    "email-admin-tool": ([x509.RFC822Name(tls.service_uri("admin-tool"))], tls.UNNAMED),
    "dns-gateway": ([x509.DNSName(tls.service_uri("gateway"))], tls.UNNAMED),
    "email-gateway": ([x509.RFC822Name(tls.service_uri("gateway"))], tls.UNNAMED),
    "two-uris": ([_uri("gateway"), _uri("admin-tool")], tls.UNNAMED),
}
GROUPS = {"admin-tool": ("verify", "admin"), "gateway": ("verify",), tls.UNNAMED: ()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_identity_is_taken_from_the_uri_san_only(server, tmp_path, case):
    sans, identity = CASES[case]
    cert, key = _client(tmp_path, case, sans)
    secret = server.manager.issue_key(
        "test", IssueSpec(workspace_id="ws-san", kind=KeyKind.SERVER, scopes=("conversations:read",))
    ).secret
    calls = {
        "verify": (lambda s: s.Authenticate, pb.AuthenticateRequest(credential=secret)),
        "admin": (lambda s: s.ListKeys, pb.ListKeysRequest(workspace_id="ws-san")),
    }
    with _channel(server.runtime.port, cert, key) as channel:
        for group, (method, request) in calls.items():
            rpc = method(stub(channel))
            if group in GROUPS[identity]:
                rpc(request, metadata=server.admin_md, timeout=10)
                continue
            err = call_error(rpc, request, metadata=server.admin_md, timeout=10)
            assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED"), case
            assert err.metadata.get("caller") == identity, case


def test_identity_from_sans_reads_uri_values_only():
    uri = tls.service_uri("gateway")
    assert tls.identity_from_auth_context({"transport_security_type": [b"ssl"], "peer_uri": [uri.encode()]}) == (
        "gateway"
    )
    for key in ("x509_subject_alternative_name", "peer_dns", "peer_email"):
        context = {"transport_security_type": [b"ssl"], key: [uri.encode()]}
        assert tls.identity_from_auth_context(context) == tls.UNNAMED, key
