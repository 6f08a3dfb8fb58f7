"""Throttling of failed authentications: a brute-forcing caller is slowed down, valid callers are not."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import auth_service_pb2_grpc

from auth_service import tokens
from auth_service.config import ConfigError, Settings, parse_rate
from auth_service.credentials import IssueSpec
from auth_service.errors import CredentialUnknown, TooManyFailures
from auth_service.interceptors import CallGate, throttled_status
from auth_service.policy import VERIFY, load_policy
from auth_service.throttle import Throttle, TokenBuckets
from auth_service.tokens import KeyKind
from tests.conftest import start_live_server
from tests.helpers import rich_error

# Channels with equal arguments share one connection (and so one plaintext caller identity) unless told not to.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


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


def test_rates_are_validated():
    assert parse_rate("50/5") == (50.0, 5.0)
    for bad in ("50", "0/1", "5/0", "a/b"):
        with pytest.raises(ConfigError):
            parse_rate(bad)
    with pytest.raises(ConfigError, match="THROTTLE_KEY"):
        Settings(throttle_key="x").validate()


def test_throttle_failures_feed_both_buckets():
    t = Throttle(caller=(2, 0.001), key=(5, 0.001))
    t.failed("c1", "KEY")
    t.failed("c1", "KEY")
    assert t.caller_retry_after("c1") > 0
    assert t.caller_retry_after("c2") == 0
    assert t.key_retry_after("KEY") == 0
    assert t.key_retry_after("") == 0


@pytest.fixture
def throttled_server(sqlite_url, pepper):
    # Slow refill so that timing on a busy machine cannot matter.
    srv = start_live_server(sqlite_url, pepper, throttle_caller="5/0.01", throttle_key="8/0.01")
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


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


def test_brute_forcing_caller_is_throttled_while_valid_callers_succeed(throttled_server):
    srv = throttled_server
    victim = _issue(srv, "ws-victim")
    other = _issue(srv, "ws-other")
    never_used = _issue(srv, "ws-new")
    victim_key_id = tokens.parse(victim).key_id
    attacker_channel = grpc.insecure_channel(srv.target, options=OWN_CONNECTION)
    valid_channel = grpc.insecure_channel(srv.target, options=OWN_CONNECTION)
    attacker = auth_service_pb2_grpc.AuthServiceStub(attacker_channel)
    valid = auth_service_pb2_grpc.AuthServiceStub(valid_channel)
    try:
        codes = []
        for _ in range(12):
            # Guesses with a valid format and checksum for the victim's (public) key id.
            guess = tokens.mint(KeyKind.SERVER, victim_key_id).token
            result = _outcome(attacker, guess)
            codes.append(result.code() if result != "OK" else "OK")
            # The valid caller, with the attacked key and with another key, keeps succeeding throughout.
            assert _outcome(valid, victim) == "OK"
            assert _outcome(valid, other) == "OK"
        assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
        assert codes[5:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 7
        # Once throttled, the caller is refused before any work for anything not verified recently,
        # even a valid credential that is not cached yet ...
        with pytest.raises(grpc.RpcError) as exc:
            attacker.Authenticate(pb.AuthenticateRequest(credential=never_used), timeout=10)
        err = rich_error(exc.value)
        assert (err.code, err.reason, err.metadata) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_FAILURES",
            {"scope": "caller"},
        )
        assert 1 <= _retry_delay(exc.value) <= 200
        # ... while credentials verified recently and still live keep passing, even from this caller.
        assert _outcome(attacker, victim) == "OK"
    finally:
        attacker_channel.close()
        valid_channel.close()
    assert srv.runtime.gate.throttle.refused["caller"] >= 8


def test_key_id_limit_spans_callers_but_keeps_serving_the_valid_credential(throttled_server):
    srv = throttled_server
    victim = _issue(srv, "ws-victim")
    victim_key_id = tokens.parse(victim).key_id
    results = []
    # Many callers (connections), each below its own limit, together exhaust the key id's bucket (8).
    for _ in range(3):
        with grpc.insecure_channel(srv.target, options=OWN_CONNECTION) as channel:
            s = auth_service_pb2_grpc.AuthServiceStub(channel)
            for _ in range(4):
                results.append(_outcome(s, tokens.mint(KeyKind.SERVER, victim_key_id).token))
            assert _outcome(s, victim) == "OK"
    reasons = [rich_error(r).reason for r in results]
    assert reasons[:8] == ["CREDENTIAL_UNKNOWN"] * 8
    assert reasons[8:] == ["TOO_MANY_FAILURES"] * 4
    assert {rich_error(r).metadata["scope"] for r in results[8:]} == {"key_id"}
    assert all(_retry_delay(r) > 0 for r in results[8:])


def test_malformed_credentials_count_against_the_caller(throttled_server):
    srv = throttled_server
    with grpc.insecure_channel(srv.target, options=OWN_CONNECTION) as channel:
        s = auth_service_pb2_grpc.AuthServiceStub(channel)
        reasons = [rich_error(_outcome(s, f"garbage-{n}")).reason for n in range(7)]
    assert reasons == ["CREDENTIAL_MALFORMED"] * 5 + ["TOO_MANY_FAILURES"] * 2


def test_a_revoked_key_is_not_known_good(throttled_server):
    srv = throttled_server
    secret = _issue(srv, "ws-r")
    with grpc.insecure_channel(srv.target, options=OWN_CONNECTION) as channel:
        s = auth_service_pb2_grpc.AuthServiceStub(channel)
        assert _outcome(s, secret) == "OK"  # cached
        srv.manager.revoke("test", tokens.parse(secret).key_id, "test")
        reasons = [rich_error(_outcome(s, secret)).reason for _ in range(7)]
    assert reasons == ["CREDENTIAL_REVOKED"] * 5 + ["TOO_MANY_FAILURES"] * 2


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


def test_the_gate_reads_no_peer_while_no_bucket_is_empty_and_refuses_once_one_is():
    throttle = Throttle(caller=(3, 0.001), key=(1000, 0.001))
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=throttle)
    inner = grpc.unary_unary_rpc_method_handler(lambda request, context: b"answer")
    behavior = gate._wrap("Authenticate", VERIFY, inner, throttled=True).unary_unary
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    # Failures that leave tokens in their buckets (many callers and key ids): nothing is read per call.
    for n in range(50):
        throttle.failed(f"ipv4:127.0.0.1:{6000 + n}", tokens.new_key_id())
    context = _CountingContext()
    assert behavior(request, context) == b"answer"
    assert context.peers == 0
    # This connection uses up its failures: its calls are looked at, and refused.
    for _ in range(3):
        throttle.failed("ipv4:127.0.0.1:5000", "")
    assert _refused_with(behavior, request, context) == "RESOURCE_EXHAUSTED"
    assert context.peers == 1
    assert throttle.refused["caller"] == 1


def test_a_refusal_returned_by_the_handler_is_charged_like_a_raised_one():
    throttle = Throttle(caller=(2, 0.001), key=(1000, 0.001))
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=throttle)

    def refusing(request, context):
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        return None

    handler = grpc.unary_unary_rpc_method_handler(refusing)
    behavior = gate.wrap("/woes.auth.v1.AuthService/Authenticate", handler).unary_unary
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    assert behavior(request, _CountingContext()) is None
    assert behavior(request, _CountingContext()) is None
    assert throttle.callers.retry_after("ipv4:127.0.0.1:5000") > 0  # both failures were charged
    context = _CountingContext()
    assert _refused_with(behavior, request, context) == "RESOURCE_EXHAUSTED"
    # Returned, not raised (the handler sends bytes as they are), with its RetryInfo trailer.
    assert any(name == "grpc-status-details-bin" for name, _ in context.trailing)


def test_the_probe_answers_first_and_is_never_throttled():
    throttle = Throttle(caller=(1, 0.001), key=(1000, 0.001))
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=throttle)
    calls = []

    def inner(request, context):
        calls.append(request)
        return b"from the handler"

    probe_answers = {"granted"}
    behavior = gate.wrap(
        "/woes.auth.v1.AuthService/Authenticate",
        grpc.unary_unary_rpc_method_handler(inner),
        probe=lambda request: b"from the probe" if request.caller in probe_answers else None,
    ).unary_unary
    throttle.failed("ipv4:127.0.0.1:5000", "")  # this connection has used up its failures
    granted = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token, caller="granted")
    assert behavior(granted, _CountingContext()) == b"from the probe"
    assert calls == []
    other = pb.AuthenticateRequest(credential=granted.credential, caller="other")
    assert _refused_with(behavior, other, _CountingContext()) == "RESOURCE_EXHAUSTED"
    assert calls == []


def test_services_other_than_the_gated_ones_pass_through_untouched():
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=Throttle())
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"ok")
    assert gate.wrap("/grpc.health.v1.Health/Check", handler) is handler


def test_throttled_statuses_are_built_once_per_scope_and_delay():
    first = throttled_status(TooManyFailures("key_id", 0.4321))
    assert throttled_status(TooManyFailures("key_id", 0.435)) is first  # both round up to 0.44 s
    assert throttled_status(TooManyFailures("caller", 0.435)) is not first
    trailer = dict(first.trailing_metadata)["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status_pb2.Status.FromString(trailer).details if d.Is(retry.DESCRIPTOR))
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (0, 440_000_000)


def test_a_limit_turned_off_records_nothing_and_the_gate_never_reads_the_peer():
    assert parse_rate("off") is None and parse_rate(" OFF ") is None
    throttle = Throttle(caller=parse_rate("off"), key=(2, 0.001))
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=throttle)

    def refusing(request, context):
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        return None

    behavior = gate.wrap("/woes.auth.v1.AuthService/Authenticate", grpc.unary_unary_rpc_method_handler(refusing))
    behavior = behavior.unary_unary
    context = _CountingContext()
    for _ in range(5):
        behavior(pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token), context)
    assert context.peers == 0  # no caller limit: who the caller is does not matter
    assert len(throttle.callers) == 0 and not throttle.callers.any_blocked()
    # The key-id limit still holds.
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    assert [_refused_with(behavior, request, _CountingContext()) for _ in range(3)] == [
        "UNAUTHENTICATED",
        "UNAUTHENTICATED",
        "RESOURCE_EXHAUSTED",
    ]
    both_off = Throttle(caller=None, key=None)
    both_off.failed("ipv4:127.0.0.1:1", "k" * 12)
    assert len(both_off.keys) == 0 and both_off.keys.retry_after("k" * 12) == 0.0


def test_a_refusal_found_by_the_probe_is_throttled_first_then_answered_and_charged():
    throttle = Throttle(caller=None, key=(2, 0.001))
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=throttle)
    answered = []

    def answer_refusal(request, context, error):
        answered.append(error.reason)
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        return None

    behavior = gate.wrap(
        "/woes.auth.v1.AuthService/Authenticate",
        grpc.unary_unary_rpc_method_handler(lambda request, context: pytest.fail("the handler was called")),
        probe=lambda request: CredentialUnknown("unknown credential"),
        answer_refusal=answer_refusal,
    ).unary_unary
    request = pb.AuthenticateRequest(credential=tokens.mint(KeyKind.SERVER).token)
    got = [_refused_with(behavior, request, _CountingContext()) for _ in range(3)]
    assert got == ["UNAUTHENTICATED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"]
    assert answered == ["CREDENTIAL_UNKNOWN"] * 2  # the third was refused by the key-id limit first


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


def test_a_refusal_found_from_the_bytes_is_answered_and_charged_until_a_bucket_may_be_empty():
    """The gate's part of a refusal the front found from the request's bytes alone (the memo's
    record of one): answered and charged to the key id (and the caller, read only when that limit
    is on) while no bucket is empty; once one may be, declined untouched for the gate proper."""
    answered = []

    def answer_refusal(request, context, error):
        answered.append((request, error.reason))
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        return None

    error = CredentialUnknown("unknown credential")
    throttle = Throttle(caller=None, key=(2, 0.001))
    refuse = _front_refuse(CallGate(policy=load_policy(None, False), tls=False, throttle=throttle), answer_refusal)
    key_id = tokens.new_key_id()
    context = _CountingContext()
    assert refuse(context, key_id, error) is True
    assert refuse(context, key_id, error) is True
    assert answered == [(None, "CREDENTIAL_UNKNOWN")] * 2 and context.code() is grpc.StatusCode.UNAUTHENTICATED
    assert context.peers == 0  # no caller limit: no peer read
    assert throttle.keys.retry_after(key_id) > 0  # both charged to the key id: its bucket is empty
    untouched = _CountingContext()
    assert refuse(untouched, key_id, error) is False  # the gate proper decides (and throttles) now
    assert len(answered) == 2 and untouched.code() is None and untouched.peers == 0

    with_callers = Throttle(caller=(1000, 0.001), key=(1000, 0.001))
    gate = CallGate(policy=load_policy(None, False), tls=False, throttle=with_callers)
    refuse = _front_refuse(gate, answer_refusal)
    context = _CountingContext()
    assert refuse(context, key_id, error) is True
    assert context.peers == 1
    assert list(with_callers.callers._buckets) == ["ipv4:127.0.0.1:5000"]  # one failure each
    assert list(with_callers.keys._buckets) == [key_id]


def test_a_flood_of_one_unknown_credential_is_refused_from_its_bytes_and_still_throttled(sqlite_url, pepper):
    """Over a real server: the first sight is refused by the full rule (a store read) and
    remembered by the request's bytes; the repeats come from the memo's refusal record (no store
    read, no HMAC), carry the same rich status as the long way's, and are charged to the key id
    until its limit refuses them."""
    srv = start_live_server(sqlite_url, pepper, throttle_caller="off", throttle_key="6/0.01")
    try:
        credential = tokens.mint(KeyKind.SERVER).token
        request = pb.AuthenticateRequest(credential=credential, required_scopes=["messages:read"], caller="svc")
        errors = []
        manager = srv.manager
        for n in range(8):
            with pytest.raises(grpc.RpcError) as exc:
                srv.stub.Authenticate(request, timeout=10)
            errors.append(exc.value)
            if n == 0:  # the first sight, refused by the full rule after a store read, remembered
                assert manager.cache.memo.refusals() == 1
        assert manager.store_reads == 1  # the first sight only
        assert manager.cache.memo.refusals() == 1 and len(manager.cache.memo) == 0
        rich = [rich_error(e) for e in errors]
        assert [r.reason for r in rich] == ["CREDENTIAL_UNKNOWN"] * 6 + ["TOO_MANY_FAILURES"] * 2
        assert {r.code for r in rich[:6]} == {grpc.StatusCode.UNAUTHENTICATED}
        # The memo's refusals (the second call on) are the long way's, status details and all.
        details = [dict(e.trailing_metadata())["grpc-status-details-bin"] for e in errors[:6]]
        assert len(set(details)) == 1 and {e.details() for e in errors[:6]} == {errors[0].details()}
        assert {r.metadata.get("scope") for r in rich[6:]} == {"key_id"}
        assert srv.runtime.gate.throttle.refused["key_id"] == 2
    finally:
        srv.channel.close()
        srv.runtime.stop(0.5)
