"""Shared helpers of the security tests: development certificates, TLS servers and channels."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import grpc
from woes.auth.v1 import auth_service_pb2_grpc

from auth_service.api import tls
from tests import conftest

CLIENTS = ("gateway", "admin-tool", "lab-runner", "widget-backend", "intruder")


def _remember_keys(folder: Path) -> None:
    # Private keys are secrets of the suite: the final log scan looks for their bodies.
    for key in folder.glob("*-key.pem"):
        for line in key.read_text().splitlines():
            if line and not line.startswith("-----"):
                conftest.OTHER_SECRETS.add(line)


@functools.cache
def dev_certs() -> Path:
    """One set of development certificates for the whole run (CA, server, the CLIENTS)."""
    folder = Path(tempfile.mkdtemp(prefix="woes-auth-certs-"))
    tls.write_dev_certs(folder, CLIENTS)
    _remember_keys(folder)
    return folder


@functools.cache
def other_ca_certs() -> Path:
    """A second, unrelated CA with a client certificate named like a real caller."""
    folder = Path(tempfile.mkdtemp(prefix="woes-auth-other-ca-"))
    tls.write_dev_certs(folder, ("gateway",))
    _remember_keys(folder)
    return folder


def tls_settings(certs: Path | None = None) -> dict:
    certs = certs or dev_certs()
    return {
        "tls_cert": str(certs / "server.pem"),
        "tls_key": str(certs / "server-key.pem"),
        "tls_client_ca": str(certs / "ca.pem"),
    }


def tls_channel(port: int, client: str | None, certs: Path | None = None, server_ca: Path | None = None):
    """A channel to ``localhost:port`` trusting the dev CA, presenting ``client``'s certificate if given."""
    certs = certs or dev_certs()
    ca = server_ca or dev_certs() / "ca.pem"
    if client is None:
        creds = tls.channel_credentials(ca)
    else:
        creds = tls.channel_credentials(ca, certs / f"{client}.pem", certs / f"{client}-key.pem")
    return grpc.secure_channel(f"localhost:{port}", creds)


def stub(channel) -> auth_service_pb2_grpc.AuthServiceStub:
    return auth_service_pb2_grpc.AuthServiceStub(channel)
