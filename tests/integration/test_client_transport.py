"""The client's transport: retries only of UNAVAILABLE, deadlines, one channel, TLS with client certificates, cache."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from woes_auth_client import (
    AsyncAuthClient,
    AuthClient,
    AuthDeadlineExceeded,
    AuthUnavailable,
    CredentialRevoked,
    MicroCache,
    RetryPolicy,
    StoreUnavailable,
    TLSConfig,
)
from woes_auth_client.channel import settings_from_env

from tests.support.client import FakeAuthService, status_with_reason

UNAVAILABLE = status_with_reason(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
REVOKED = status_with_reason(grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_REVOKED")


@pytest.fixture
def fake():
    service = FakeAuthService()
    yield service
    service.stop()


def test_unavailable_is_retried_by_the_service_config(fake):
    fake.failures = [UNAVAILABLE, UNAVAILABLE]
    fake.start()
    with AuthClient(fake.target, retry=RetryPolicy(max_attempts=4, initial_backoff=0.01)) as client:
        principal = client.authenticate("cred")
    assert principal.workspace_id == "ws-fake"
    assert fake.attempts == 3
    # gRPC itself retried (gRFC A6 marks each retry with the number of earlier attempts).
    assert [m.get("grpc-previous-rpc-attempts") for m in fake.metadata] == [None, "1", "2"]


def test_retries_stop_at_max_attempts(fake):
    fake.failures = [UNAVAILABLE] * 10
    fake.start()
    with AuthClient(fake.target, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01)) as client:
        with pytest.raises(StoreUnavailable):
            client.authenticate("cred")
    assert fake.attempts == 3


def test_unauthenticated_is_never_retried(fake):
    fake.failures = [REVOKED, REVOKED, REVOKED]
    fake.start()
    with AuthClient(fake.target, retry=RetryPolicy(max_attempts=5, initial_backoff=0.01)) as client:
        with pytest.raises(CredentialRevoked):
            client.authenticate("cred")
    assert fake.attempts == 1


def test_without_retry_policy_one_attempt(fake):
    fake.failures = [UNAVAILABLE]
    fake.start()
    with AuthClient(fake.target, retry=None) as client:
        with pytest.raises(StoreUnavailable):
            client.authenticate("cred")
    assert fake.attempts == 1


def test_async_client_retries_unavailable_only(fake):
    fake.failures = [UNAVAILABLE, REVOKED, UNAVAILABLE]
    fake.start()

    async def run():
        async with AsyncAuthClient(fake.target, retry=RetryPolicy(initial_backoff=0.01)) as client:
            with pytest.raises(CredentialRevoked):
                await client.authenticate("cred")
            attempts_after_first = fake.attempts
            principal = await client.authenticate("cred")
            return attempts_after_first, principal

    attempts_after_first, principal = asyncio.run(run())
    assert attempts_after_first == 2  # UNAVAILABLE retried, then REVOKED final
    assert fake.attempts == 4 and principal.workspace_id == "ws-fake"


def test_deadline_expiry_sync(fake):
    fake.delay = 30
    fake.start()
    with AuthClient(fake.target, timeout=0.3) as client:
        with pytest.raises(AuthDeadlineExceeded) as info:
            client.authenticate("cred")
        assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert isinstance(info.value, AuthUnavailable)  # a caller fails closed the same way
        with pytest.raises(AuthDeadlineExceeded), AuthClient(fake.target) as other:
            other.authenticate("cred", timeout=0.2)
    assert fake.attempts == 2  # a deadline is not retried


def test_deadline_expiry_async(fake):
    fake.delay = 30
    fake.start()

    async def run():
        async with AsyncAuthClient(fake.target, timeout=0.3) as client:
            await client.authenticate("cred")

    with pytest.raises(AuthDeadlineExceeded):
        asyncio.run(run())


def test_one_channel_is_reused(fake):
    fake.start()
    with AuthClient(fake.target) as client:
        for _ in range(5):
            client.authenticate("cred")
        channel = client._channel
        client.authenticate("cred")
        assert client._channel is channel
    assert fake.attempts == 6
    assert len(set(fake.peers)) == 1, fake.peers  # one connection from one port


def test_micro_cache_answers_repeats_within_its_ttl(fake):
    fake.start()
    now = [100.0]
    cache = MicroCache(ttl=1.0, max_entries=2, clock=lambda: now[0])
    with AuthClient(fake.target, cache=cache) as client:
        client.authenticate("cred-a", ["messages:read"])
        client.authenticate("cred-a", ["messages:read"])
        assert fake.attempts == 1
        client.authenticate("cred-a", ["messages:write"])  # other scopes: another entry
        assert fake.attempts == 2
        now[0] += 1.0
        client.authenticate("cred-a", ["messages:read"])  # expired
        assert fake.attempts == 3
        client.authenticate("cred-b")
        client.authenticate("cred-c")
        assert len(cache) == 2  # bounded
        assert "cred-a" not in repr(cache)
    with pytest.raises(ValueError):
        MicroCache(ttl=120)


def test_micro_cache_keeps_no_failure(fake):
    fake.failures = [REVOKED]
    fake.start()
    with AuthClient(fake.target, cache=MicroCache()) as client:
        with pytest.raises(CredentialRevoked):
            client.authenticate("cred")
        client.authenticate("cred")
    assert fake.attempts == 2


def test_plaintext_refused_off_loopback_unless_insecure():
    with pytest.raises(ValueError, match="plaintext"):
        AuthClient("woes-auth.internal:50051")
    AuthClient("woes-auth.internal:50051", insecure=True).close()
    AuthClient("localhost:50051").close()
    AuthClient("[::1]:50051").close()
    settings, timeout = settings_from_env({"WOES_AUTH_TARGET": "127.0.0.1:1", "WOES_AUTH_TIMEOUT": "0.5"})
    assert settings.target == "127.0.0.1:1" and timeout == 0.5 and settings.tls is None
    with pytest.raises(ValueError, match="WOES_AUTH_TARGET"):
        settings_from_env({})


# -- TLS with client certificates ------------------------------------------------------


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, san: str | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pki():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _cert("test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("woes-auth.test", server_key, ca_name, ca_key, ca=False, san="woes-auth.test")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("conversations", client_key, ca_name, ca_key, ca=False, san="conversations.test")
    return {
        "ca": _pem(ca),
        "server": (_key_pem(server_key), _pem(server)),
        "client": (_key_pem(client_key), _pem(client)),
    }


def test_tls_with_client_certificate(fake, pki, tmp_path):
    fake.start(grpc.ssl_server_credentials([pki["server"]], root_certificates=pki["ca"], require_client_auth=True))
    client_key, client_cert = pki["client"]
    for name, data in (("ca.pem", pki["ca"]), ("client.pem", client_cert), ("client.key", client_key)):
        (tmp_path / name).write_bytes(data)
    tls = TLSConfig.from_files(
        tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key", server_name="woes-auth.test"
    )
    assert "PRIVATE KEY" not in repr(tls)
    with AuthClient(fake.target, tls=tls) as client:
        assert client.authenticate("cred").workspace_id == "ws-fake"
        assert "tls" in repr(client)
    assert fake.attempts == 1

    # Without a client certificate the server refuses the handshake: no answer, so AuthUnavailable.
    with AuthClient(fake.target, tls=TLSConfig(pki["ca"], server_name="woes-auth.test"), timeout=3) as client:
        with pytest.raises(AuthUnavailable):
            client.authenticate("cred")
    assert fake.attempts == 1

    with pytest.raises(ValueError):
        TLSConfig(pki["ca"], certificate_chain=client_cert)
