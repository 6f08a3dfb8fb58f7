"""Caller policy: each caller reaches exactly its RPC groups; refusals are audited."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import conversations_pb2 as cpb
from woes.auth.v1 import resources_pb2 as res

from auth_service.api import policy as policy_mod
from auth_service.domain import tokens
from auth_service.domain.errors import ConfigError
from auth_service.domain.keys.rules import IssueSpec
from auth_service.domain.tokens import KeyKind
from tests.conftest import start_live_server
from tests.support.rich_errors import call_error
from tests.support.services import widget_backend_md
from tests.support.tls import stub, tls_channel, tls_settings

POLICY_TOML = """
default = []
throttled = ["gateway"]  # in these tests: its failed authentications are its own

[callers]
gateway = ["verify"]
admin-tool = ["verify", "admin"]
lab-runner = ["lab_reveal"]
widget-backend = ["widget_secrets"]
"""


def test_rpc_groups():
    assert policy_mod.group_of("Authenticate") == "verify"
    assert policy_mod.group_of("VerifyWidgetKey") == "verify"
    assert policy_mod.group_of("VerifyConversationSecret") == "verify"
    for name in ("IssueKey", "Rotate", "Revoke", "GetKey", "ListKeys", "ListAudit", "SomethingNew"):
        assert policy_mod.group_of(name) == "admin", name
    assert policy_mod.group_of("RevealTestCredential") == "lab_reveal"
    assert policy_mod.group_of("IssueConversationSecret") == "widget_secrets"


def test_defaults_are_least_privilege():
    mtls = policy_mod.default_policy(tls=True)
    assert mtls.groups_for("anything") == {"verify"}
    assert not mtls.allows("admin-tool", "admin") and not mtls.allows("lab-runner", "lab_reveal")
    # Plaintext loopback (development) cannot tell callers apart: the per-RPC credentials decide there.
    plain = policy_mod.default_policy(tls=False)
    assert plain.groups_for(policy_mod.ANONYMOUS) == {"verify", "admin", "lab_reveal", "widget_secrets"}
    assert plain.groups_for("gateway") == frozenset()


def test_policy_files_json_and_toml(tmp_path):
    toml_path = tmp_path / "policy.toml"
    toml_path.write_text(POLICY_TOML)
    p = policy_mod.load_policy(str(toml_path), tls=True)
    assert p.groups_for("admin-tool") == {"verify", "admin"}
    assert p.groups_for("stranger") == frozenset()
    json_path = tmp_path / "policy.json"
    json_path.write_text(json.dumps({"default": ["verify"], "callers": {"lab-runner": ["lab_reveal"]}}))
    p = policy_mod.load_policy(str(json_path), tls=False)
    assert p.groups_for("anonymous") == {"verify"}
    assert p.groups_for("lab-runner") == {"lab_reveal"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('default = ["everything"]', "unknown groups"),
        ('callers = { gateway = "verify" }', "list of group names"),
        ('grants = ["verify"]', "unknown keys"),
        ("default = [", "not valid"),
    ],
)
def test_bad_policy_files_are_refused(tmp_path, text, message):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        policy_mod.load_policy(str(path), tls=True)
    with pytest.raises(ConfigError, match="cannot read"):
        policy_mod.load_policy(str(tmp_path / "missing.toml"), tls=True)


def test_denial_sampler_is_bounded_and_counts():
    s = policy_mod.DenialSampler(interval=60, max_entries=2)
    assert s.admit("a", "admin", now=0) == 0
    assert s.admit("a", "admin", now=1) is None
    assert s.admit("a", "admin", now=2) is None
    assert s.admit("a", "admin", now=61) == 2
    s.admit("b", "admin", now=0)
    s.admit("c", "admin", now=0)
    assert len(s._seen) == 2


@pytest.fixture
def mtls_policy_server(sqlite_url, pepper, tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    srv = start_live_server(sqlite_url, pepper, policy_file=str(path), **tls_settings())
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


def _calls(srv, secret: str):
    """One call per group; returns the status code name of each (OK or the refusal)."""
    admin_md = srv.admin_md
    widget = srv.manager.issue_key("test", IssueSpec(workspace_id="ws-p", kind=KeyKind.WIDGET)).secret
    backend_md = widget_backend_md(srv)
    conversation = cpb.IssueConversationSecretRequest(public_key=widget, conversation_id="c-1")
    calls = {
        "verify": lambda s: s.Authenticate(pb.AuthenticateRequest(credential=secret), timeout=10),
        "admin": lambda s: s.GetKey(pb.GetKeyRequest(key_id=secret[8:20]), metadata=admin_md, timeout=10),
        "widget_secrets": lambda s: s.IssueConversationSecret(conversation, metadata=backend_md, timeout=10),
    }
    return calls


def _outcome(fn, channel) -> str:
    try:
        fn(stub(channel))
    except grpc.RpcError as err:
        return err.code().name
    return "OK"


def test_each_caller_reaches_exactly_its_groups(mtls_policy_server):
    srv = mtls_policy_server
    secret = srv.manager.issue_key(
        "test", IssueSpec(workspace_id="ws-p", kind=KeyKind.SERVER, scopes=("conversations:read",))
    ).secret
    calls = _calls(srv, secret)
    denied = "PERMISSION_DENIED"
    expected = {
        "gateway": {"verify": "OK", "admin": denied, "widget_secrets": denied},
        # The admin group no longer holds IssueConversationSecret: the widget backend needs no admin power.
        "admin-tool": {"verify": "OK", "admin": "OK", "widget_secrets": denied},
        "lab-runner": {"verify": denied, "admin": denied, "widget_secrets": denied},
        "widget-backend": {"verify": denied, "admin": denied, "widget_secrets": "OK"},
        "intruder": {"verify": denied, "admin": denied, "widget_secrets": denied},
    }
    seen = {}
    for client in expected:
        with tls_channel(srv.runtime.port, client) as channel:
            seen[client] = {group: _outcome(fn, channel) for group, fn in calls.items()}
    assert seen == expected


def test_refusal_is_permission_denied_with_reason_and_audited(mtls_policy_server):
    srv = mtls_policy_server
    with tls_channel(srv.runtime.port, "gateway") as channel:
        err = call_error(
            stub(channel).IssueKey,
            pb.IssueKeyRequest(workspace_id="ws-p", kind=res.KEY_KIND_SERVER, scopes=["conversations:read"]),
            metadata=srv.admin_md,
            timeout=10,
        )
        again = call_error(stub(channel).ListKeys, pb.ListKeysRequest(), metadata=srv.admin_md, timeout=10)
    assert err.code is grpc.StatusCode.PERMISSION_DENIED
    assert err.reason == "CALLER_NOT_ALLOWED"
    assert err.domain == "auth.woes"
    assert err.metadata == {"caller": "gateway", "group": "admin"}
    assert again.reason == "CALLER_NOT_ALLOWED"
    denials = [e for e in srv.runtime.store.list_audit(limit=100) if e.action == "policy.deny"]
    # Two refusals of one caller and group within a minute: one audit row.
    assert len(denials) == 1
    assert denials[0].actor == "caller:gateway"
    assert denials[0].outcome == "denied"
    assert "group=admin" in denials[0].detail
    # The refused IssueKey did nothing.
    assert srv.manager.list_keys("ws-p", 0, "").keys == []


def test_on_mtls_the_memo_serves_repeats_only_to_callers_the_policy_admits(mtls_policy_server):
    """With mTLS and a policy, Authenticate's first frame checks the certificate's identity, then
    takes the request's bytes: a repeat of a granted request is granted from the memo (no HMAC)
    to an admitted caller, and the very same bytes from a caller the policy does not admit are
    still refused. A repeat of a refusal is charged to the certificate's identity."""
    srv = mtls_policy_server
    manager = srv.manager
    secret = manager.issue_key(
        "test", IssueSpec(workspace_id="ws-p", kind=KeyKind.SERVER, scopes=("conversations:read",))
    ).secret
    request = pb.AuthenticateRequest(credential=secret, required_scopes=["conversations:read"], caller="svc")
    unknown = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token, caller="svc")
    with tls_channel(srv.runtime.port, "gateway") as channel:
        first = stub(channel).Authenticate(request, timeout=10)  # the store read, then cached
        stub(channel).Authenticate(request, timeout=10)  # the probe grants it and remembers its bytes
        assert len(manager.cache.memo) == 1
        real_mac, hashed = manager._mac, []
        manager._mac = lambda data: hashed.append(data) or real_mac(data)
        try:
            grants = manager.cache.probe_grants
            for _ in range(3):
                assert stub(channel).Authenticate(request, timeout=10) == first
            assert manager.cache.probe_grants == grants + 3 and hashed == []  # from the memo
        finally:
            manager._mac = real_mac
        for _ in range(4):
            assert call_error(stub(channel).Authenticate, unknown, timeout=10).reason == "CREDENTIAL_UNKNOWN"
        assert manager.cache.memo.refusals() == 1
    failed = srv.runtime.gate.throttle.callers._buckets
    assert set(failed) == {"gateway"}  # every refusal charged to the certificate's identity, none to a peer
    for client in ("intruder", "lab-runner"):
        with tls_channel(srv.runtime.port, client) as channel:
            err = call_error(stub(channel).Authenticate, request, timeout=10)
        assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    assert len(manager.cache.memo) == 1


def test_health_is_open_to_any_certified_caller(mtls_policy_server):
    with tls_channel(mtls_policy_server.runtime.port, "intruder") as channel:
        got = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert got.status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_callers_identified_by_their_admin_credential(sqlite_url, pepper, tmp_path):
    from auth_service.app.services import credential_manager
    from auth_service.store import SqlStore

    store = SqlStore(sqlite_url)
    named_admin = credential_manager(store, pepper).bootstrap_admin("named admin").secret
    store.close()
    # The policy names that admin key (identity key:<key id>); the anonymous plaintext caller may only verify.
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps({"default": [], "callers": {"anonymous": ["verify"], f"key:{named_admin[8:20]}": ["admin"]}})
    )
    srv = start_live_server(sqlite_url, pepper, policy_file=str(path))
    try:
        ok = srv.stub.GetKey(
            pb.GetKeyRequest(key_id=named_admin[8:20]),
            metadata=(("authorization", f"Bearer {named_admin}"),),
            timeout=10,
        )
        assert ok.key.display_name == "named admin"
        # The fixture's own admin credential is valid, but the policy does not name it.
        denied = call_error(srv.stub.ListKeys, pb.ListKeysRequest(), metadata=srv.admin_md, timeout=10)
        assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
        anonymous = call_error(srv.stub.ListKeys, pb.ListKeysRequest(), timeout=10)
        assert anonymous.metadata["caller"] == "anonymous"
        verify = call_error(srv.stub.Authenticate, pb.AuthenticateRequest(credential="woes_sk_x"), timeout=10)
        assert verify.reason == "CREDENTIAL_MALFORMED"  # verify reached the servicer
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
