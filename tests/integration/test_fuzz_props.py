"""Property tests (hypothesis): the token format, the request parsers, and every request message
through a real server."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from woes.auth.v1 import auth_service_pb2 as pb

from auth_service.domain import tokens
from auth_service.domain.errors import CredentialMalformed
from auth_service.domain.keys.rules import decode_page_token, encode_page_token
from auth_service.domain.tokens import ALPHABET, KeyKind
from auth_service.domain.validation import normalize_origin
from auth_service.ops import logs
from fuzz import targets
from tests.conftest import new_pepper_text, start_live_server

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
BASE62 = st.text(alphabet=ALPHABET, min_size=tokens.KEY_ID_LEN, max_size=tokens.KEY_ID_LEN)
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def _near_miss(token: str):
    """Strategies for strings close to a valid token: one character changed, cut, or extended."""
    return st.one_of(
        st.tuples(st.integers(0, len(token) - 1), st.characters(blacklist_categories=("Cs",))).map(
            lambda p: token[: p[0]] + p[1] + token[p[0] + 1 :]
        ),
        st.integers(0, len(token)).map(lambda n: token[:n]),
        TEXT.map(lambda extra: token + extra),
    )


@given(TEXT)
def test_parse_only_raises_credential_malformed(text):
    try:
        cred = tokens.parse(text)
    except CredentialMalformed:
        return
    assert tokens.TOKEN_REGEX.fullmatch(cred.token)


@given(st.sampled_from(list(KeyKind)), BASE62)
def test_mint_parse_roundtrip(kind, key_id):
    minted = tokens.mint(kind, key_id)
    parsed = tokens.parse(minted.token)
    assert (parsed.kind, parsed.key_id, parsed.token) == (kind, key_id, minted.token)
    hint = tokens.hint(minted.token)
    assert minted.token[20:-4] not in hint and minted.token not in repr(parsed)


@given(st.data())
def test_any_change_near_a_valid_token_is_caught_offline(data):
    token = tokens.mint(KeyKind.SERVER).token
    changed = data.draw(_near_miss(token))
    if changed == token:
        return
    with pytest.raises(CredentialMalformed):
        tokens.parse(changed)


@given(TEXT)
def test_origin_normalisation_never_raises_and_is_idempotent(text):
    origin = normalize_origin(text)
    if origin is not None:
        assert normalize_origin(origin) == origin


@given(TEXT, TEXT)
def test_page_token_decoding_never_raises(workspace, token):
    decoded = decode_page_token(token, workspace)
    assert decoded is None or tokens.is_key_id(decoded[1])


@given(TEXT)
def test_redaction_never_leaves_a_credential(text):
    token = tokens.mint(KeyKind.SERVER).token
    assert tokens.TOKEN_REGEX.search(logs.redact(text + token + text)) is None


@given(st.binary(max_size=600))
def test_fuzz_targets_hold_on_random_bytes(data):
    targets.one_input(data)


def test_page_token_roundtrip():
    from datetime import UTC, datetime
    from types import SimpleNamespace

    last = SimpleNamespace(create_time=datetime(2026, 1, 2, tzinfo=UTC), key_id="AAAAAAAAAAAA")
    assert decode_page_token(encode_page_token(last, "ws"), "ws") == (last.create_time, "AAAAAAAAAAAA")
    assert decode_page_token(encode_page_token(last, "ws"), "other") is None


# -- every request message through a real server --------------------------------------------------


def _scalar(field: d.FieldDescriptor, valid_tokens: list[str]):
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return st.one_of(TEXT, st.sampled_from(valid_tokens), st.sampled_from(valid_tokens).flatmap(_near_miss))
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)
    if t in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32, d.FieldDescriptor.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    if t in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64, d.FieldDescriptor.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if t in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=100)
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if t == d.FieldDescriptor.TYPE_FLOAT else 64)
    raise AssertionError(f"no strategy for field type {t}")


def messages(desc: d.Descriptor, valid_tokens: list[str], depth: int = 0):
    """Random instances of any message type, every field optional, built from its descriptor."""
    cls = message_factory.GetMessageClass(desc)
    fields = {}
    for field in desc.fields:
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            if depth > 2:
                continue
            value = messages(field.message_type, valid_tokens, depth + 1)
        else:
            value = _scalar(field, valid_tokens)
        if field.is_repeated:
            value = st.lists(value, max_size=40)
        fields[field.name] = value

    def build(values):
        msg = cls()
        for name, value in values.items():
            field = desc.fields_by_name[name]
            if field.is_repeated:
                if field.type == d.FieldDescriptor.TYPE_MESSAGE:
                    for item in value:
                        getattr(msg, name).add().CopyFrom(item)
                else:
                    getattr(msg, name).extend(value)
            elif field.type == d.FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    from auth_service.domain.crypto import Keyring, Pepper

    url = f"sqlite:///{tmp_path_factory.mktemp('props') / 'auth.db'}"
    srv = start_live_server(url, Pepper(Keyring.parse(new_pepper_text())), throttle_caller="1000000/1000")
    from auth_service.domain.keys.rules import IssueSpec

    srv.valid_tokens = [
        srv.admin_secret,
        srv.manager.issue_key("t", IssueSpec("ws", KeyKind.SERVER, scopes=("conversations:read",))).secret,
        srv.manager.issue_key("t", IssueSpec("ws", KeyKind.WIDGET, allowed_origins=("https://a.example",))).secret,
    ]
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


SERVICE = pb.DESCRIPTOR.services_by_name["AuthService"]
PROPS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_random_requests_never_get_unknown_or_internal(fuzz_server, method):
    desc = SERVICE.methods_by_name[method].input_type
    call = getattr(fuzz_server.stub, method)

    @PROPS
    @given(messages(desc, fuzz_server.valid_tokens), st.booleans())
    def check(request, as_admin):
        try:
            call(request, metadata=fuzz_server.admin_md if as_admin else None, timeout=10)
        except grpc.RpcError as err:
            assert err.code() not in NEVER, f"{method}: {err.code().name} {err.details()}"

    check()


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_random_bytes_never_get_unknown_or_internal(fuzz_server, method):
    raw = fuzz_server.channel.unary_unary(f"/woes.auth.v1.AuthService/{method}")

    @PROPS
    @given(st.binary(max_size=2000))
    def check(payload):
        try:
            raw(payload, metadata=fuzz_server.admin_md, timeout=10)
        except grpc.RpcError as err:
            assert err.code() not in NEVER, f"{method}: {err.code().name} {err.details()}"

    check()


def test_server_still_serving_after_the_fuzzing(fuzz_server):
    got = health_pb2_grpc.HealthStub(fuzz_server.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert got.status == health_pb2.HealthCheckResponse.SERVING
    fuzz_server.stub.Authenticate(pb.AuthenticateRequest(credential=fuzz_server.valid_tokens[1]), timeout=10)
