"""Replays the hostile-input corpus (tests/corpus/) through the parsers and through a real server."""

from __future__ import annotations

import grpc
import pytest
from woes.auth.v1 import auth_service_pb2 as pb
from woes.auth.v1 import resources_pb2 as res

from fuzz import targets
from tests.conftest import new_pepper_text, start_live_server
from tests.support.paths import TESTS

CORPUS = sorted((TESTS / "corpus").iterdir())
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
METHOD_OF = {m.input_type.name: m.name for m in pb.DESCRIPTOR.services_by_name["AuthService"].methods}


def test_corpus_is_there():
    names = {p.name.split("--")[0] for p in CORPUS}
    assert {"token", "origin", "page_token", "redact"} <= names
    assert {f"decode_{cls.__name__}" for cls in targets.REQUEST_TYPES} <= names
    assert len(CORPUS) >= 100


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_parsers_survive_the_corpus(path):
    targets.one_input(path.read_bytes())


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    from auth_service.domain.crypto import Keyring, Pepper

    url = f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'auth.db'}"
    srv = start_live_server(url, Pepper(Keyring.parse(new_pepper_text())), throttle_caller="100000/1000")
    yield srv
    srv.channel.close()
    srv.runtime.stop(0.5)


def _status(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _calls(srv, target: str, payload: bytes):
    text = payload.decode("utf-8", "replace")
    md = srv.admin_md
    s = srv.stub
    if target.startswith("decode_"):
        method = METHOD_OF[target.removeprefix("decode_")]
        raw = srv.channel.unary_unary(f"/woes.auth.v1.AuthService/{method}")
        yield method, lambda: raw(payload, metadata=md, timeout=10)
    elif target == "token":
        yield "Authenticate", lambda: s.Authenticate(pb.AuthenticateRequest(credential=text), timeout=10)
        yield "VerifyWidgetKey", lambda: s.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key=text), timeout=10)
        if text.isprintable() and text.isascii():
            yield (
                "GetKey",
                lambda: s.GetKey(
                    pb.GetKeyRequest(key_id="AAAAAAAAAAAA"), metadata=(("authorization", f"Bearer {text}"),), timeout=10
                ),
            )
    elif target == "origin":
        yield (
            "VerifyWidgetKey",
            lambda: s.VerifyWidgetKey(pb.VerifyWidgetKeyRequest(public_key="woes_pk_x", origin=text), timeout=10),
        )
        yield (
            "IssueKey",
            lambda: s.IssueKey(
                pb.IssueKeyRequest(workspace_id="ws", kind=res.KEY_KIND_WIDGET, allowed_origins=[text]),
                metadata=md,
                timeout=10,
            ),
        )
    elif target == "page_token":
        workspace, _, token = text.partition("\n")
        yield (
            "ListKeys",
            lambda: s.ListKeys(pb.ListKeysRequest(workspace_id=workspace, page_token=token), metadata=md, timeout=10),
        )


@pytest.mark.parametrize("path", [p for p in CORPUS if not p.name.startswith("redact--")], ids=lambda p: p.name)
def test_server_survives_the_corpus(corpus_server, path):
    target = path.name.split("--")[0]
    calls = list(_calls(corpus_server, target, path.read_bytes()[1:]))
    assert calls, f"no way to send {target} inputs"
    for method, call in calls:
        code = _status(call)
        assert code not in NEVER, f"{method} answered {code.name}"
