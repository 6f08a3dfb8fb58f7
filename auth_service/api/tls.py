"""Transport security: development certificates, server credentials, caller identities.

Callers of this service are identified by their client certificate. A caller
certificate names its service in a subject alternative name of type URI:

    spiffe://woes/service/<name>

where ``<name>`` is 1 to 64 characters of ``a-z 0-9 . _ -``. That name is the
caller's identity in the policy file (:mod:`auth_service.api.policy`). Only URI
SANs count: the same text in a DNS or email SAN names nobody. A certificate
without such a URI SAN, or with URI SANs naming two services (but signed by
the client CA), is the identity ``unnamed``, which gets only the policy's
default groups.

``woes-auth dev-certs`` writes a development CA, a server certificate for
``localhost``/``127.0.0.1``/``::1`` and one client certificate per named
service. Private keys are written 0600. They are for development and tests:
production certificates come from the platform's CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_PREFIX = "spiffe://woes/service/"
SERVICE_NAME_RE = re.compile(r"[a-z0-9._-]{1,64}")
UNNAMED = "unnamed"
DEFAULT_CLIENTS = ("gateway", "admin-tool", "lab-runner")


def service_uri(name: str) -> str:
    if not SERVICE_NAME_RE.fullmatch(name):
        raise ValueError("a service name is 1 to 64 characters of a-z 0-9 . _ -")
    return SPIFFE_PREFIX + name


def identity_from_sans(uris: list[str]) -> str:
    """The caller's service name from its certificate's URI SAN values, or ``unnamed``.

    Exactly one service may be named: a certificate whose URI SANs name two different services
    is ``unnamed`` (a SPIFFE identity document carries one). Pass URI SANs only: a DNS or email
    SAN that reads like a service URI is no identity."""
    names = set()
    for value in uris:
        if value.startswith(SPIFFE_PREFIX):
            name = value[len(SPIFFE_PREFIX) :]
            if SERVICE_NAME_RE.fullmatch(name):
                names.add(name)
    return names.pop() if len(names) == 1 else UNNAMED


def identity_from_auth_context(auth_context: dict) -> str | None:
    """The caller identity of a gRPC call, or ``None`` when the transport is not TLS.

    Only the verified peer certificate's URI SANs count, which gRPC lists under ``peer_uri``;
    ``x509_subject_alternative_name`` mixes every SAN type (DNS, email, IP) and is not read.
    """
    if not auth_context or b"ssl" not in auth_context.get("transport_security_type", ()):
        return None
    uris = [
        raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        for raw in auth_context.get("peer_uri", ())
    ]
    return identity_from_sans(uris)


# -- server credentials -----------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path


def server_credentials(files: TlsFiles):
    """gRPC server credentials that require a client certificate signed by ``client_ca``."""
    import grpc

    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=files.client_ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(ca: Path, cert: Path | None = None, key: Path | None = None):
    """Client side: trust ``ca`` and present ``cert``/``key`` when given."""
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


# -- development certificates ---------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


@dataclass(frozen=True)
class DevCa:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "woes-auth development CA", days: int = 365) -> DevCa:
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self, common_name: str, sans: list[x509.GeneralName], *, server: bool, days: int = 365
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _new_key()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            _builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                self.cert.subject,
                key.public_key(),
                days,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


def write_dev_certs(out: Path, clients: tuple[str, ...] | list[str] = DEFAULT_CLIENTS) -> dict[str, Path]:
    """Write ca.pem (+ ca-key.pem), server.pem/server-key.pem and <client>.pem/<client>-key.pem.

    Returns the written paths by role (``ca``, ``server``, ``server-key``, ``client:<name>``, ...).
    """
    names = list(dict.fromkeys(clients))
    for name in names:
        service_uri(name)  # validates
    out.mkdir(parents=True, exist_ok=True)
    ca = DevCa.create()
    written: dict[str, Path] = {}
    _write_cert(out / "ca.pem", ca.cert)
    _write_key(out / "ca-key.pem", ca.key)
    written["ca"], written["ca-key"] = out / "ca.pem", out / "ca-key.pem"
    server_cert, server_key = ca.issue(
        "localhost",
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
        server=True,
    )
    _write_cert(out / "server.pem", server_cert)
    _write_key(out / "server-key.pem", server_key)
    written["server"], written["server-key"] = out / "server.pem", out / "server-key.pem"
    for name in names:
        cert, key = ca.issue(name, [x509.UniformResourceIdentifier(service_uri(name))], server=False)
        _write_cert(out / f"{name}.pem", cert)
        _write_key(out / f"{name}-key.pem", key)
        written[f"client:{name}"], written[f"client-key:{name}"] = out / f"{name}.pem", out / f"{name}-key.pem"
    return written
