"""Throttling of failed authentications.

What must hold: a credential that verifies is never refused because of what anyone else sent.
There is no limit per key id (key ids are public); guesses cost memory lookups, not store reads;
a caller is throttled only when the policy lists it as ``throttled`` (its failures are its own).
"""

from __future__ import annotations

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2 as actx
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc

from auth_service.api.gate import CallGate, throttled_status
from auth_service.api.policy import VERIFY, load_policy, parse_policy
from auth_service.api.throttle import Throttle, TokenBuckets, address_of
from auth_service.app.config import Settings, parse_rate
from auth_service.domain import tokens
from auth_service.domain.errors import ConfigError, CredentialUnknown, TooManyFailures
from auth_service.domain.keys.rules import IssueSpec
from auth_service.domain.tokens import KeyKind
from tests.conftest import start_live_server
from tests.support.rich_errors import rich_error, throttled_plaintext_policy

# Channels with equal arguments share one connection unless told not to.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
ANONYMOUS_THROTTLED = {"callers": {"anonymous": ["verify", "admin"]}, "throttled": ["anonymous"]}


def test_token_bucket_burst_and_refill():
    b = TokenBuckets(burst=3, rate=0.5)
    assert b.retry_after("k", now=0) == 0
    for _ in range(3):
        b.take("k", now=0)
    assert b.retry_after("k", now=0) == pytest.approx(2.0)
    assert b.retry_after("k", now=1) == pytest.approx(1.0)
    assert b.retry_after("k", now=2) == 0
    assert b.retry_after("other", now=0) == 0


def test_token_buckets_are_bounded():
    b = TokenBuckets(burst=1, rate=1, max_entries=100)
    for n in range(5000):
        b.take(f"key{n}", now=0)
    assert len(b) <= 100
    assert b.retry_after("key4999", now=0) > 0


def test_refilled_buckets_are_forgotten_as_failures_go_on():
    """A flood of key ids that each fail once leaves only what failed within the refill time."""
    b = TokenBuckets(burst=2, rate=1, max_entries=100_000)  # one failure refills within 1 s
    for n in range(5000):
        b.take(f"once{n}", now=n / 100)  # 100 new key ids a second
        if n % 7 == 0:
            b.take("guesser", now=n / 100)  # one key id failing all along
    assert len(b) <= 100 + 2  # the last second's key ids (and the guesser), not all 5,000
    assert b.retry_after("guesser", now=50.0) > 0  # still empty: a busy bucket is never forgotten
    assert b.retry_after("once4999", now=49.99) == 0  # one failure of two left a token


def test_only_empty_buckets_are_blocked_and_only_until_they_refill():
    b = TokenBuckets(burst=3, rate=0.5)
    b.take("k", now=0)
    b.take("k", now=0)
    b.take("other", now=0)
    assert b.blocked == {}  # failures that left a token block nothing
    assert not b.any_blocked(now=0)
    b.take("k", now=0)  # the last token
    assert b.blocked == {"k": pytest.approx(2.0)}
    assert b.any_blocked(now=1.9)
    assert b.retry_after("k", now=1.9) > 0
    assert not b.any_blocked(now=2.0)  # refilled: dropped, and valid calls stop looking
    assert b.blocked == {}
    assert b.retry_after("k", now=2.0) == 0


def test_blocked_is_a_superset_of_the_empty_buckets_under_many_keys():
    b = TokenBuckets(burst=2, rate=1, max_entries=1000)
    for n in range(3000):
        b.take(f"key{n % 700}", now=n / 1000)
    now = 3.0
    for n in range(700):
        key = f"key{n}"
        if b.retry_after(key, now=now) > 0:
            assert key in b.blocked and b.blocked[key] > now
    assert len(b.blocked) <= 1000


def test_rates_are_validated_and_the_key_id_limit_is_gone(monkeypatch):
    assert parse_rate("50/5") == (50.0, 5.0)
    for bad in ("50", "0/1", "5/0", "a/b"):
        with pytest.raises(ConfigError):
            parse_rate(bad)
    with pytest.raises(ConfigError, match="THROTTLE_CALLER"):
        Settings(throttle_caller="x").validate()
    monkeypatch.setenv("WOES_AUTH_THROTTLE_KEY", "20/2")
    with pytest.raises(ConfigError, match="THROTTLE_KEY is no longer a setting"):
        Settings.from_env()


def test_plaintext_callers_are_charged_by_address_not_connection():
    assert address_of("ipv4:127.0.0.1:5000") == "ipv4:127.0.0.1"
    assert address_of("ipv6:[::1]:5000") == "ipv6:[::1]"
    assert address_of("unix:/run/woes.sock") == "unix:/run/woes.sock"
    t = Throttle(caller=(2, 0.001), throttled={"anonymous"})
    t.failed(t.bucket_of("anonymous", "ipv4:127.0.0.1:5000"))
    t.failed(t.bucket_of("anonymous", "ipv4:127.0.0.1:5001"))  # a new connection: the same caller
    assert t.caller_retry_after("ipv4:127.0.0.1") > 0
    assert t.bucket_of("gateway", None) is None  # not listed: never charged


def test_only_the_callers_the_policy_lists_are_throttled():
    policy = parse_policy({"default": ["verify"], "throttled": ["lab-runner"]}, "test")
    assert policy.throttled == {"lab-runner"}
    t = Throttle(caller=(2, 0.001), throttled=policy.throttled)
    assert t.bucket_of("lab-runner", None) == "lab-runner"
    assert t.bucket_of("gateway", None) is None
    with pytest.raises(ConfigError, match="throttled"):
        parse_policy({"throttled": "lab-runner"}, "test")
    # Without a policy that lists callers, nothing is ever charged.
    assert Throttle().charges_callers is False
    assert load_policy(None, tls=True).throttled == frozenset()


class _CountingContext:
    """Just enough of a servicer context to see what the gate reads and what status it sets."""

    def __init__(self):
        self.peers = 0
        self._code = None

    def peer(self) -> str:
        self.peers += 1
        return "ipv4:127.0.0.1:5000"

    def set_code(self, code):
        self._code = code

    def set_details(self, details):
        self.details = details

    def set_trailing_metadata(self, metadata):
        self.trailing = metadata

    def code(self):
        return self._code

    def abort_with_status(self, status):
        raise RuntimeError(f"aborted: {status.code.name}")


def _refused_with(behavior, request, context) -> str:
    """The status code name a gated call ended with, raised (abort) or returned (rpc.set_status)."""
    try:
        answer = behavior(request, context)
    except RuntimeError as exc:
        return str(exc).removeprefix("aborted: ")
    assert answer is None
    return context.code().name


def _gate(throttle: Throttle, tls: bool = False) -> CallGate:
    policy = parse_policy({**ANONYMOUS_THROTTLED, "default": ["verify"]}, "test")
    return CallGate(policy=policy, tls=tls, throttle=throttle)


def _refusing(request, context):
    context.set_code(grpc.StatusCode.UNAUTHENTICATED)
    return None


def test_by_default_failures_charge_nobody_and_the_gate_never_reads_the_peer():
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=Throttle())
    behavior = gate.wrap("/woes.auth.v1.AuthService/Authenticate", grpc.unary_unary_rpc_method_handler(_refusing))
    context = _CountingContext()
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    codes = {_refused_with(behavior.unary_unary, request, context) for _ in range(2000)}
    assert codes == {"UNAUTHENTICATED"}  # never RESOURCE_EXHAUSTED, however many failures
    assert context.peers == 0


def test_the_gate_reads_no_peer_while_no_bucket_is_empty_and_refuses_once_one_is():
    throttle = Throttle(caller=(3, 0.001), throttled={"anonymous"})
    inner = grpc.unary_unary_rpc_method_handler(lambda request, context: b"answer")
    behavior = _gate(throttle)._wrap("Authenticate", VERIFY, inner, throttled=True).unary_unary
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    for n in range(50):  # failures that leave tokens in their buckets: nothing is read per call
        throttle.failed(f"ipv4:10.0.0.{n}")
    context = _CountingContext()
    assert behavior(request, context) == b"answer"
    assert context.peers == 0
    for _ in range(3):  # this address uses up its failures: its calls are looked at, and refused
        throttle.failed("ipv4:127.0.0.1")
    assert _refused_with(behavior, request, context) == "RESOURCE_EXHAUSTED"
    assert context.peers == 1
    assert throttle.refused["caller"] == 1


def test_a_refusal_returned_by_the_handler_is_charged_like_a_raised_one():
    throttle = Throttle(caller=(2, 0.001), throttled={"anonymous"})
    handler = grpc.unary_unary_rpc_method_handler(_refusing)
    behavior = _gate(throttle).wrap("/woes.auth.v1.AuthService/Authenticate", handler).unary_unary
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    assert behavior(request, _CountingContext()) is None
    assert behavior(request, _CountingContext()) is None
    assert throttle.callers.retry_after("ipv4:127.0.0.1") > 0  # both failures were charged
    context = _CountingContext()
    assert _refused_with(behavior, request, context) == "RESOURCE_EXHAUSTED"
    assert any(name == "grpc-status-details-bin" for name, _ in context.trailing)


def test_the_probe_answers_first_and_is_never_throttled():
    throttle = Throttle(caller=(1, 0.001), throttled={"anonymous"})
    calls = []

    def inner(request, context):
        calls.append(request)
        return b"from the handler"

    behavior = (
        _gate(throttle)
        .wrap(
            "/woes.auth.v1.AuthService/Authenticate",
            grpc.unary_unary_rpc_method_handler(inner),
            probe=lambda request: b"from the probe" if request.caller == "granted" else None,
        )
        .unary_unary
    )
    throttle.failed("ipv4:127.0.0.1")  # this address has used up its failures
    granted = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token, caller="granted")
    assert behavior(granted, _CountingContext()) == b"from the probe"
    other = pb.AuthenticateRequest(credential=granted.credential, caller="other")
    assert _refused_with(behavior, other, _CountingContext()) == "RESOURCE_EXHAUSTED"
    assert calls == []


def test_services_other_than_the_gated_ones_pass_through_untouched():
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=Throttle())
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"ok")
    assert gate.wrap("/grpc.health.v1.Health/Check", handler) is handler


def test_throttled_statuses_are_built_once_per_scope_and_delay():
    first = throttled_status(TooManyFailures("caller", 0.4321))
    assert throttled_status(TooManyFailures("caller", 0.435)) is first  # both round up to 0.44 s
    trailer = dict(first.trailing_metadata)["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status_pb2.Status.FromString(trailer).details if d.Is(retry.DESCRIPTOR))
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (0, 440_000_000)


def test_a_refusal_found_by_the_probe_is_throttled_first_then_answered_and_charged():
    throttle = Throttle(caller=(2, 0.001), throttled={"anonymous"})
    answered = []

    def answer_refusal(request, context, error):
        answered.append(error.reason)
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        return None

    behavior = (
        _gate(throttle)
        .wrap(
            "/woes.auth.v1.AuthService/Authenticate",
            grpc.unary_unary_rpc_method_handler(lambda request, context: pytest.fail("the handler was called")),
            probe=lambda request: CredentialUnknown("unknown credential"),
            answer_refusal=answer_refusal,
        )
        .unary_unary
    )
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    got = [_refused_with(behavior, request, _CountingContext()) for _ in range(3)]
    assert got == ["UNAUTHENTICATED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"]
    assert answered == ["CREDENTIAL_UNKNOWN"] * 2


def _front_refuse(gate: CallGate, answer_refusal):
    """The ``refuse`` the gate hands Authenticate's front over bytes (see CallGate.wrap)."""
    handed = {}

    def front(rest, decode, refuse):
        handed["refuse"] = refuse
        return lambda wire, context: None

    handler = grpc.unary_unary_rpc_method_handler(
        lambda request, context: pytest.fail("the handler was called"),
        request_deserializer=pb.AuthenticateRequest.FromString,
    )
    wrapped = gate.wrap(
        "/woes.auth.v1.AuthService/Authenticate",
        handler,
        probe=lambda request: None,
        answer_refusal=answer_refusal,
        front=front,
    )
    assert wrapped.request_deserializer is None  # the front takes the request's bytes
    return handed["refuse"]


def test_a_refusal_found_from_the_bytes_is_answered_and_charged_to_a_throttled_caller_only():
    answered = []

    def answer_refusal(request, context, error):
        answered.append(error.reason)
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        return None

    error = CredentialUnknown("unknown credential")
    key_id = tokens.new_key_id()
    # Nobody throttled (the default): answered, nothing read, nothing charged.
    nobody = Throttle()
    refuse = _front_refuse(CallGate(policy=load_policy(None, False), tls=False, throttle=nobody), answer_refusal)
    context = _CountingContext()
    assert all(refuse(context, key_id, error) for _ in range(100))
    assert context.peers == 0 and len(nobody.callers) == 0
    # Plaintext callers throttled: charged to the address until it may be empty, then declined.
    throttle = Throttle(caller=(2, 0.001), throttled={"anonymous"})
    refuse = _front_refuse(_gate(throttle), answer_refusal)
    assert refuse(_CountingContext(), key_id, error) and refuse(_CountingContext(), key_id, error)
    untouched = _CountingContext()
    assert refuse(untouched, key_id, error) is False  # the gate proper decides (and throttles) now
    assert untouched.code() is None and len(answered) == 102


def _issue(srv, workspace: str) -> str:
    return srv.manager.issue_key(
        "test", IssueSpec(workspace_id=workspace, kind=KeyKind.SERVER, scopes=("conversations:read",))
    ).secret


def _retry_delay(err: grpc.RpcError) -> float:
    status = rpc_status.from_call(err)
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    raise AssertionError("no RetryInfo detail")


def _outcome(stub, credential: str):
    try:
        stub.Authenticate(pb.AuthenticateRequest(credential=credential), timeout=10)
    except grpc.RpcError as err:
        return err
    return "OK"


def _guesses(key_id: str, n: int) -> list[str]:
    """Well-formed credentials (valid checksum) naming ``key_id`` with random secrets."""
    return [tokens.mint(KeyKind.SERVER, key_id).token for _ in range(n)]


def test_guesses_naming_a_key_id_never_lock_its_credential_out(live_server_any_db):
    """The review's reproduction: malformed strings and wrong secrets naming a key's (public) key id,
    then the key's real credential, not yet cached. It must verify, and the guesses must cost at
    most one store read."""
    srv = live_server_any_db
    secret = _issue(srv, "ws-victim")
    key_id = tokens.parse(secret).key_id
    reads = srv.manager.store_reads
    malformed = [f"woes_pk_{key_id}_x", f"woes_sk_{key_id}_x", f"woes_sk_{key_id}_" + "A" * 49]
    reasons = [rich_error(_outcome(srv.stub, malformed[n % 3])).reason for n in range(40)]
    assert set(reasons) <= {"CREDENTIAL_MALFORMED", "WIDGET_KEY_NOT_API_CREDENTIAL"}
    guesses = [rich_error(_outcome(srv.stub, g)) for g in _guesses(key_id, 60)]
    assert {(e.code, e.reason) for e in guesses} == {(grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_UNKNOWN")}
    assert srv.manager.store_reads - reads == 1  # the first guess read the record; the rest were checked in memory
    assert _outcome(srv.stub, secret) == "OK"
    assert srv.manager.store_reads - reads == 1  # and so was the real credential
    # More guesses once the real credential is cached: still no store read, still not locked out.
    for guess in _guesses(key_id, 30):
        assert rich_error(_outcome(srv.stub, guess)).reason == "CREDENTIAL_UNKNOWN"
    srv.manager.cache.clear()  # its entry gone: the credential verifies against a fresh read
    assert _outcome(srv.stub, secret) == "OK"
    assert srv.manager.store_reads - reads == 2


def test_a_flood_of_unknown_key_ids_costs_one_store_read_each_and_refuses_nobody(live_server):
    srv = live_server
    valid = _issue(srv, "ws-valid")
    reads = srv.manager.store_reads
    unknown_key_id = tokens.new_key_id()
    for guess in _guesses(unknown_key_id, 50):
        assert rich_error(_outcome(srv.stub, guess)).reason == "CREDENTIAL_UNKNOWN"
    assert srv.manager.store_reads - reads == 1
    for key_id in [tokens.new_key_id() for _ in range(20)]:
        for guess in _guesses(key_id, 3):
            assert rich_error(_outcome(srv.stub, guess)).reason == "CREDENTIAL_UNKNOWN"
    assert srv.manager.store_reads - reads == 21
    assert _outcome(srv.stub, valid) == "OK"
    assert srv.runtime.gate.throttle.refused == {"caller": 0}


@pytest.fixture
def throttled_server(sqlite_url, pepper, tmp_path):
    """Plaintext callers listed as throttled (by address), with a slow refill so that timing on a
    busy machine cannot matter."""
    srv = start_live_server(
        sqlite_url, pepper, throttle_caller="5/0.01", policy_file=throttled_plaintext_policy(tmp_path)
    )
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


def test_a_throttled_caller_is_refused_for_its_own_failures_but_keeps_verified_credentials(throttled_server):
    srv = throttled_server
    verified = _issue(srv, "ws-verified")
    never_used = _issue(srv, "ws-new")
    channel = grpc.insecure_channel(srv.target, options=OWN_CONNECTION)
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    try:
        assert _outcome(stub, verified) == "OK"
        codes = []
        for guess in _guesses(tokens.new_key_id(), 8):
            result = _outcome(stub, guess)
            codes.append(result.code())
            assert _outcome(stub, verified) == "OK"  # verified lately and live: never throttled
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        with pytest.raises(grpc.RpcError) as exc:  # its own failures: even a new valid credential waits
            stub.Authenticate(pb.AuthenticateRequest(credential=never_used), timeout=10)
        err = rich_error(exc.value)
        assert (err.code, err.reason, err.metadata) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_FAILURES",
            {"scope": "caller"},
        )
        assert 1 <= _retry_delay(exc.value) <= 200
    finally:
        channel.close()
    assert srv.runtime.gate.throttle.refused["caller"] >= 4


def _check(credential: str) -> ext.CheckRequest:
    http = actx.AttributeContext.HttpRequest(method="GET", path="/v1/conversations", host="api.woes.test")
    http.headers.update({"authorization": f"Bearer {credential}"})
    return ext.CheckRequest(
        attributes=actx.AttributeContext(
            request=actx.AttributeContext.Request(http=http),
            context_extensions={"required_scopes": "conversations:read"},
        )
    )


def test_envoy_check_refusals_are_counted_and_charged_like_authenticates(throttled_server):
    srv = throttled_server
    verified = _issue(srv, "ws-envoy")
    authz = ext_grpc.AuthorizationStub(srv.channel)
    assert authz.Check(_check(verified), timeout=10).status.code == code_pb2.OK
    answers = [authz.Check(_check(guess), timeout=10) for guess in _guesses(tokens.new_key_id(), 7)]
    assert [a.status.code for a in answers] == [code_pb2.UNAUTHENTICATED] * 5 + [code_pb2.RESOURCE_EXHAUSTED] * 2
    throttled = answers[-1].denied_response
    assert throttled.status.code == 429
    assert int({h.header.key: h.header.value for h in throttled.headers}["retry-after"]) >= 1
    assert authz.Check(_check(verified), timeout=10).status.code == code_pb2.OK  # known good: served
    # Counted as Authenticate's failures are: the aggregated audit rows name envoy.Check.
    failures = srv.runtime.servicer.services.failures
    failures.flush()
    rows = [e for e in srv.manager.store.list_audit(limit=1000) if e.action == "auth.failures"]
    assert {(e.actor, e.outcome) for e in rows} >= {("caller:envoy.Check", "CREDENTIAL_UNKNOWN")}


def test_a_flood_of_one_unknown_credential_is_refused_from_its_bytes(live_server):
    """The first sight is refused by the full rule (a store read) and remembered by the request's
    bytes; the repeats come from the memo's refusal record (no store read, no HMAC) with the same
    rich status as the long way's, and none is ever throttled."""
    srv = live_server
    credential = tokens.mint(KeyKind.SERVER).token
    request = pb.AuthenticateRequest(credential=credential, required_scopes=["messages:read"], caller="svc")
    manager = srv.manager
    reads = manager.store_reads
    errors = []
    for _ in range(30):
        with pytest.raises(grpc.RpcError) as exc:
            srv.stub.Authenticate(request, timeout=10)
        errors.append(exc.value)
    assert manager.store_reads - reads == 1
    assert manager.cache.memo.refusals() == 1 and len(manager.cache.memo) == 0
    assert {rich_error(e).reason for e in errors} == {"CREDENTIAL_UNKNOWN"}
    details = {dict(e.trailing_metadata())["grpc-status-details-bin"] for e in errors}
    assert len(details) == 1 and {e.details() for e in errors} == {errors[0].details()}
