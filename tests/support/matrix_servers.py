"""The two ``woes-auth serve`` processes the authorization matrix runs against, and the callers'
channels: a plaintext loopback server with the built-in policy, and an mTLS server with the test
policy stated in ``docs/security.md``. Admin and internal credentials are made by the real
``bootstrap-admin`` and ``bootstrap-internal`` commands."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from woes.auth.v1 import auth_service_pb2_grpc as pb_grpc

from tests import conftest
from tests.support.matrix_helpers import ISSUE, REVEAL, World, build_world
from tests.support.process import ServeProcess, base_env, cli, start_serve
from tests.support.tls import dev_certs, other_ca_certs, tls_settings


@dataclass
class Served:
    process: ServeProcess
    channel: grpc.Channel
    world: World

    @property
    def port(self) -> int:
        return self.process.port


def _last_line(out) -> str:
    assert out.returncode == 0, out.stderr
    secret = out.stdout.rstrip("\n").splitlines()[-1]
    conftest.MINTED.add(secret)
    return secret


def _service_keys(data_dir: Path) -> dict[str, str]:
    env = base_env(data_dir)
    return {
        "admin": _last_line(cli("bootstrap-admin", "--name", "matrix admin", env=env)),
        "internal reveal": _last_line(
            cli("bootstrap-internal", "--name", "test runner", "--permission", REVEAL, env=env)
        ),
        "internal issue": _last_line(
            cli("bootstrap-internal", "--name", "widget backend", "--permission", ISSUE, env=env)
        ),
    }


def _remember_pepper(data_dir: Path) -> None:
    pepper = data_dir / "dev-pepper"
    if pepper.exists():
        conftest.OTHER_SECRETS.add(pepper.read_text().strip().split(":", 1)[1])


@contextlib.contextmanager
def plaintext_server(data_dir: Path) -> Iterator[Served]:
    """``woes-auth serve`` on plaintext loopback, built-in policy, its own SQLite database."""
    process = start_serve(data_dir)
    try:
        _remember_pepper(data_dir)
        keys = _service_keys(data_dir)
        with grpc.insecure_channel(process.target) as channel:
            stub = pb_grpc.AuthServiceStub(channel)
            yield Served(process, channel, build_world(stub, channel, keys))
    finally:
        assert process.stop() == 0, process.log()[-2000:]


def _tls_env(policy_file: Path) -> dict[str, str]:
    settings = tls_settings()
    return {
        "WOES_AUTH_TLS_CERT": settings["tls_cert"],
        "WOES_AUTH_TLS_KEY": settings["tls_key"],
        "WOES_AUTH_TLS_CLIENT_CA": settings["tls_client_ca"],
        "WOES_AUTH_POLICY_FILE": str(policy_file),
    }


def _wait_serving_tls(process: ServeProcess, channel: grpc.Channel, within: float = 60) -> None:
    deadline = time.monotonic() + within
    health = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        assert process.proc.poll() is None, process.log()[-2000:]
        try:
            if (
                health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                return
        except grpc.RpcError:
            time.sleep(0.2)
    raise AssertionError("the mTLS server did not become SERVING:\n" + process.log()[-2000:])


def _channel(port: int, cert: Path, key: Path) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(dev_certs() / "ca.pem").read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def _named(port: int, name: str, certs: Path | None = None) -> grpc.Channel:
    certs = certs or dev_certs()
    return _channel(port, certs / f"{name}.pem", certs / f"{name}-key.pem")


@contextlib.contextmanager
def mtls_server(data_dir: Path, policy: str) -> Iterator[Served]:
    """``woes-auth serve`` with mTLS (the development CA) and the caller policy ``policy`` (TOML).
    The world is made through the ``admin-tool`` and ``widget-backend`` identities, which the policy
    must admit to the admin and ``widget_secrets`` groups."""
    data_dir.mkdir(parents=True, exist_ok=True)
    policy_file = data_dir / "policy.toml"
    policy_file.write_text(policy)
    process = start_serve(data_dir, wait=False, **_tls_env(policy_file))
    try:
        with _named(process.port, "admin-tool") as admin, _named(process.port, "widget-backend") as widget:
            _wait_serving_tls(process, admin)
            _remember_pepper(data_dir)
            keys = _service_keys(data_dir)
            yield Served(process, admin, build_world(pb_grpc.AuthServiceStub(admin), widget, keys))
    finally:
        assert process.stop() == 0, process.log()[-2000:]


def no_uri_san_certificate(folder: Path) -> tuple[Path, Path]:
    """A client certificate of the development CA whose only SAN is a DNS name: no service URI."""
    ca_cert = x509.load_pem_x509_certificate((dev_certs() / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((dev_certs() / "ca-key.pem").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-uri")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("no-uri.woes.test")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "no-uri.pem", folder / "no-uri-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    for line in key_path.read_text().splitlines():
        if line and not line.startswith("-----"):
            conftest.OTHER_SECRETS.add(line)
    return cert_path, key_path


@contextlib.contextmanager
def caller_channels(port: int, folder: Path) -> Iterator[dict[str, grpc.Channel]]:
    """One channel per mTLS caller column of the callers table."""
    channels = {name: _named(port, name) for name in ("gateway", "admin-tool", "lab-runner", "widget-backend")}
    channels["no URI SAN"] = _channel(port, *no_uri_san_certificate(folder))
    channels["foreign CA"] = _named(port, "gateway", other_ca_certs())
    try:
        yield channels
    finally:
        for channel in channels.values():
            channel.close()
