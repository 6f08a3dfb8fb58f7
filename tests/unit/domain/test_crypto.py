"""Keyrings from configuration and peppered digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth_service.domain import crypto, tokens
from auth_service.domain.crypto import Keyring, KeyringError, Pepper
from auth_service.domain.tokens import KeyKind
from tests.conftest import OTHER_SECRETS


def _material() -> tuple[bytes, str]:
    raw = secrets.token_bytes(32)
    b64 = base64.b64encode(raw).decode()
    OTHER_SECRETS.add(b64)
    return raw, b64


# -- Keyring.parse ------------------------------------------------------------------


def test_parse_one_entry():
    raw, b64 = _material()
    ring = Keyring.parse(f"p1:{b64}")
    assert ring.primary_id == "p1"
    assert ring.get("p1") == raw
    assert ring.get("p2") is None


def test_parse_several_entries_first_is_primary_commas_newlines_and_blanks():
    (r1, b1), (r2, b2), (r3, b3) = _material(), _material(), _material()
    ring = Keyring.parse(f" new:{b1} ,\nmid:{b2}\n\n,old.v-1_x:{b3},")
    assert ring.primary_id == "new"
    assert ring.get("new") == r1
    assert [k for k, _ in ring.keys] == ["new", "mid", "old.v-1_x"]
    assert ring.get("mid") == r2
    assert ring.get("old.v-1_x") == r3


def _refused(text: str, *, material: str = "") -> str:
    with pytest.raises(KeyringError) as info:
        Keyring.parse(text, what="pepper")
    message = str(info.value)
    if material:
        assert material not in message
        assert material[:8] not in message
    return message


def test_parse_refuses_empty():
    assert "no key" in _refused("")
    assert "no key" in _refused(" , \n ,")


def test_parse_refuses_missing_id_or_separator_without_echoing_material():
    _, b64 = _material()
    message = _refused(b64, material=b64)
    assert "entry 1" in message
    _refused(f":{b64}", material=b64)


def test_parse_refuses_bad_id():
    _, b64 = _material()
    _refused(f"bad id:{b64}", material=b64)
    _refused(f"{'x' * 33}:{b64}", material=b64)
    _refused(f"p\u00e9:{b64}", material=b64)


def test_parse_refuses_bad_base64_without_echoing_it():
    _, b64 = _material()
    garbled = b64[:10] + "!!" + b64[12:]
    message = _refused(f"p1:{garbled}", material=garbled)
    assert "base64" in message
    assert "p1" in message  # the id helps the operator find the entry; it is not secret
    _refused(f"p1:{b64[:-1]}", material=b64[:-1])  # broken padding
    _refused("p1:\u00e9\u00e9\u00e9\u00e9")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_parse_refuses_wrong_length(size):
    b64 = base64.b64encode(secrets.token_bytes(size)).decode()
    if b64:
        OTHER_SECRETS.add(b64)
    message = _refused(f"p1:{b64}", material=b64 if len(b64) >= 8 else "")
    assert "32 bytes" in message


def test_parse_refuses_duplicate_ids():
    (_, b1), (_, b2) = _material(), _material()
    message = _refused(f"p1:{b1},p1:{b2}", material=b1)
    assert b2 not in message
    assert "twice" in message


def test_second_entry_error_names_its_position():
    (_, b1), (_, b2) = _material(), _material()
    assert "entry 2" in _refused(f"p1:{b1},p2:{b2[:20]}", material=b2[:20])


def test_keyring_repr_shows_ids_only():
    raw, b64 = _material()
    ring = Keyring.parse(f"p1:{b64}")
    for text in (repr(ring), str(ring)):
        assert "p1" in text
        assert b64 not in text
        assert repr(raw) not in text
        assert raw.hex() not in text


def test_new_keyring_entry_parses_and_is_random():
    a, b = crypto.new_keyring_entry("k1"), crypto.new_keyring_entry("k1")
    assert a != b
    assert Keyring.parse(a).primary_id == "k1"
    assert len(Keyring.parse(a).get("k1")) == 32


# -- Pepper -------------------------------------------------------------------------


def test_digest_is_hmac_sha256_under_the_primary():
    (r1, b1), (_, b2) = _material(), _material()
    pepper = Pepper(Keyring.parse(f"p2:{b1},p1:{b2}"))
    token = tokens.mint(KeyKind.SERVER).token
    assert pepper.primary_id == "p2"
    assert pepper.digest(token) == hmac.new(r1, token.encode(), hashlib.sha256).digest()
    assert len(pepper.digest(token)) == 32
    assert pepper.digest(token) != hashlib.sha256(token.encode()).digest()


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), message=st.binary(max_size=300))
def test_keyed_sha256_is_hmac_sha256_for_any_key_and_message(key, message):
    # Keys shorter than, equal to and longer than the 64-byte block; empty and multi-block messages.
    assert crypto.KeyedSha256(key).digest(message) == hmac.digest(key, message, "sha256")


def test_keyed_sha256_prepared_states_are_never_consumed():
    mac = crypto.KeyedSha256(b"k" * 32)
    first = mac.digest(b"one")
    mac.digest(b"two" * 100)
    assert mac.digest(b"one") == first == hmac.digest(b"k" * 32, b"one", "sha256")


def test_every_pepper_of_the_ring_digests_as_hmac_sha256():
    (r1, b1), (r2, b2) = _material(), _material()
    pepper = Pepper(Keyring.parse(f"new:{b1},old:{b2}"))
    token = tokens.mint(KeyKind.SERVER).token
    assert pepper.digest_with("new", token) == hmac.digest(r1, token.encode(), "sha256") == pepper.digest(token)
    assert pepper.digest_with("old", token) == hmac.digest(r2, token.encode(), "sha256")
    assert pepper.digest_with("gone", token) is None


def test_digest_depends_on_pepper_and_token():
    (_, b1), (_, b2) = _material(), _material()
    p1, p2 = Pepper(Keyring.parse(f"a:{b1}")), Pepper(Keyring.parse(f"a:{b2}"))
    t1, t2 = tokens.mint(KeyKind.SERVER).token, tokens.mint(KeyKind.SERVER).token
    assert p1.digest(t1) != p2.digest(t1)
    assert p1.digest(t1) != p1.digest(t2)
    assert p1.digest(t1) == p1.digest(t1)


def test_verify_under_primary_with_and_without_precomputed_digest():
    _, b1 = _material()
    pepper = Pepper(Keyring.parse(f"p1:{b1}"))
    token = tokens.mint(KeyKind.SERVER).token
    stored = pepper.digest(token)
    assert pepper.verify("p1", token, stored)
    assert pepper.verify("p1", token, stored, primary_digest=stored)
    other = tokens.mint(KeyKind.SERVER).token
    assert not pepper.verify("p1", other, stored)
    assert not pepper.verify("p1", other, stored, primary_digest=pepper.digest(other))


def test_older_pepper_still_verifies_after_a_new_primary():
    (_, old_b64), (_, new_b64) = _material(), _material()
    old = Pepper(Keyring.parse(f"old:{old_b64}"))
    token = tokens.mint(KeyKind.SERVER).token
    stored = old.digest(token)
    rotated = Pepper(Keyring.parse(f"new:{new_b64},old:{old_b64}"))
    assert rotated.primary_id == "new"
    # The primary digest (used as the cache key) differs, but the stored one still verifies.
    assert rotated.digest(token) != stored
    assert rotated.verify("old", token, stored, primary_digest=rotated.digest(token))
    assert not rotated.verify("new", token, stored, primary_digest=rotated.digest(token))
    assert rotated.digest_with("old", token) == stored


def test_unknown_pepper_id_fails():
    (_, old_b64), (_, new_b64) = _material(), _material()
    token = tokens.mint(KeyKind.SERVER).token
    stored = Pepper(Keyring.parse(f"old:{old_b64}")).digest(token)
    dropped = Pepper(Keyring.parse(f"new:{new_b64}"))
    assert dropped.digest_with("old", token) is None
    assert not dropped.verify("old", token, stored)
    assert not dropped.verify("old", token, stored, primary_digest=dropped.digest(token))


def test_verify_uses_constant_time_compare(monkeypatch):
    (_, b1), (_, b2) = _material(), _material()
    pepper = Pepper(Keyring.parse(f"p1:{b1},p0:{b2}"))
    token = tokens.mint(KeyKind.SERVER).token
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(crypto.hmac, "compare_digest", spy)
    stored = pepper.digest(token)
    assert pepper.verify("p1", token, stored, primary_digest=stored)
    older = pepper.digest_with("p0", token)
    assert pepper.verify("p0", token, older)
    assert not pepper.verify("p1", token, b"\x00" * 32)
    assert len(calls) == 3
    assert calls[0] == (stored, stored)


def test_pepper_repr_has_no_material():
    raw, b64 = _material()
    pepper = Pepper(Keyring.parse(f"p1:{b64}"))
    assert "p1" in repr(pepper)
    assert b64 not in repr(pepper)
    assert raw.hex() not in repr(pepper)
