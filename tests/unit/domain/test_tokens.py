"""The credential string format: prefix, key id, secret, checksum, the published regex, parsing."""

from __future__ import annotations

import math
import random
import re
import zlib

import pytest

from auth_service.domain import tokens
from auth_service.domain.errors import CredentialMalformed
from auth_service.domain.tokens import ALPHABET, KeyKind

ALL_KINDS = list(KeyKind)


def _with_checksum(body: str) -> str:
    return body + tokens.checksum(body)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_minted_token_layout(kind):
    cred = tokens.mint(kind)
    token = cred.token
    prefix = tokens.PREFIXES[kind]
    assert token.startswith(prefix)
    assert len(token) == tokens.TOKEN_LEN
    rest = token[len(prefix) :]
    key_id, sep, tail = rest.partition("_")
    assert sep == "_"
    assert key_id == cred.key_id
    assert len(key_id) == tokens.KEY_ID_LEN
    assert len(tail) == tokens.SECRET_LEN + tokens.CHECKSUM_LEN
    secret, check = tail[: tokens.SECRET_LEN], tail[tokens.SECRET_LEN :]
    assert len(secret) == 43
    assert set(secret) <= set(ALPHABET)
    assert check == tokens.checksum(token[: -tokens.CHECKSUM_LEN])
    assert cred.kind is kind


def test_prefixes_are_distinct_per_kind():
    assert tokens.PREFIXES[KeyKind.SERVER] == "woes_sk_"
    assert tokens.PREFIXES[KeyKind.WIDGET] == "woes_pk_"
    assert len(set(tokens.PREFIXES.values())) == len(KeyKind)
    assert set(tokens.PREFIXES) == set(KeyKind)


def test_secret_has_at_least_256_bits():
    assert tokens.SECRET_LEN * math.log2(len(ALPHABET)) >= 256
    assert len(set(ALPHABET)) == 62


def test_checksum_is_base62_crc32_zero_padded():
    body = "woes_sk_000000000000_" + "a" * 43
    crc = zlib.crc32(body.encode())
    check = tokens.checksum(body)
    assert len(check) == tokens.CHECKSUM_LEN
    value = 0
    for ch in check:
        value = value * 62 + ALPHABET.index(ch)
    assert value == crc
    # 62**6 > 2**32: every CRC32 fits, so nothing is lost to truncation
    assert 62**tokens.CHECKSUM_LEN > 2**32


def test_mint_is_random():
    minted = {tokens.mint(KeyKind.SERVER).token for _ in range(200)}
    assert len(minted) == 200
    key_ids = {tokens.mint(KeyKind.SERVER).key_id for _ in range(200)}
    assert len(key_ids) == 200


def test_mint_with_given_key_id():
    cred = tokens.mint(KeyKind.WIDGET, "ABCDEFabcdef")
    assert cred.key_id == "ABCDEFabcdef"
    assert tokens.parse(cred.token).key_id == "ABCDEFabcdef"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_regex_matches_minted_tokens(kind):
    for _ in range(50):
        token = tokens.mint(kind).token
        match = tokens.TOKEN_REGEX.fullmatch(token)
        assert match is not None
        assert match.group(2) == token[8:20]
        # The published pattern also finds a token inside surrounding text (secret scanners).
        assert re.search(tokens.TOKEN_PATTERN, f"config: KEY={token}\n").group(0) == token


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_parse_roundtrip(kind):
    cred = tokens.mint(kind)
    parsed = tokens.parse(cred.token)
    assert parsed == cred
    assert parsed.kind is kind


def _assert_refused(value: str, expected_words: str = ""):
    with pytest.raises(CredentialMalformed) as info:
        tokens.parse(value)
    assert info.value.reason == "CREDENTIAL_MALFORMED"
    # The message never repeats the input.
    if value:
        assert value not in info.value.message
        assert value[8:] not in info.value.message or len(value) <= 8
    if expected_words:
        assert expected_words in info.value.message
    return info.value


def test_parse_refuses_empty():
    _assert_refused("", "empty")


def test_parse_refuses_one_megabyte():
    _assert_refused("a" * (1 << 20))
    token = tokens.mint(KeyKind.SERVER).token
    _assert_refused(token + "a" * (1 << 20))


def test_parse_refuses_wrong_prefix():
    token = tokens.mint(KeyKind.SERVER).token
    for prefix in ("woes_xk_", "WOES_SK_", "wees_sk_", "ghp_abcd"):
        forged = _with_checksum(prefix + token[8 : -tokens.CHECKSUM_LEN])
        assert len(forged) == tokens.TOKEN_LEN
        _assert_refused(forged)


def test_parse_refuses_wrong_length():
    token = tokens.mint(KeyKind.SERVER).token
    body = token[: -tokens.CHECKSUM_LEN]
    _assert_refused(_with_checksum(body[:-1]))  # one short, valid checksum
    _assert_refused(_with_checksum(body + "a"))  # one long, valid checksum
    _assert_refused(token[:-1])
    _assert_refused(token + "a")
    # Key id of the wrong length (total length kept): the separator moves.
    shifted = _with_checksum("woes_sk_" + body[8:19] + "_a" + body[21:])
    assert len(shifted) == tokens.TOKEN_LEN
    _assert_refused(shifted)


def test_parse_refuses_bad_checksum():
    token = tokens.mint(KeyKind.SERVER).token
    err = _assert_refused(token[:-1] + ("A" if token[-1] != "A" else "B"), "checksum")
    assert err.reason == "CREDENTIAL_MALFORMED"
    # A typo in the secret is caught by the checksum too.
    pos = 30
    typo = token[:pos] + ("A" if token[pos] != "A" else "B") + token[pos + 1 :]
    _assert_refused(typo, "checksum")


@pytest.mark.parametrize("bad_char", ["é", "\u0661", "\uff21", "\x00", " ", "-", "\U0001f600"])
def test_parse_refuses_non_ascii_and_odd_characters(bad_char):
    token = tokens.mint(KeyKind.SERVER).token
    # Same length, one character replaced, in the key id and in the secret.
    for pos in (10, 40):
        forged = token[:pos] + bad_char + token[pos + 1 :]
        _assert_refused(forged)


def test_parse_refuses_non_str_like_garbage():
    _assert_refused("_" * tokens.TOKEN_LEN)
    _assert_refused("woes_sk_" + "_" * (tokens.TOKEN_LEN - 8))


def test_credential_repr_and_str_never_show_the_secret():
    cred = tokens.mint(KeyKind.SERVER)
    secret = cred.token[8 + tokens.KEY_ID_LEN + 1 : -tokens.CHECKSUM_LEN]
    for text in (repr(cred), str(cred), f"{cred}", f"{cred!r}", repr([cred]), repr({"c": cred})):
        assert cred.token not in text
        assert secret not in text
        assert secret[:8] not in text
        assert cred.key_id in text


def test_hint_shows_prefix_key_id_and_last_four():
    cred = tokens.mint(KeyKind.WIDGET)
    hint = tokens.hint(cred.token)
    assert hint == f"woes_pk_{cred.key_id}_...{cred.token[-4:]}"
    secret = cred.token[21 : -tokens.CHECKSUM_LEN]
    assert secret not in hint
    assert len(hint) < len(cred.token) // 2


@pytest.mark.parametrize("value", ["", "garbage", "woes_sk_short", "x" * 10_000])
def test_hint_of_malformed_input_reveals_nothing(value):
    assert tokens.hint(value) == "<malformed>"


def test_is_key_id():
    assert tokens.is_key_id(tokens.new_key_id())
    assert not tokens.is_key_id("")
    assert not tokens.is_key_id("a" * 11)
    assert not tokens.is_key_id("a" * 13)
    assert not tokens.is_key_id("abcdef-ghijk")
    assert not tokens.is_key_id("abcdefghijk\u00e9")
    assert not tokens.is_key_id("abcdefghijk\n")


def test_is_key_id_is_the_key_id_pattern():
    """Without a regular expression, the same answer as ``[0-9A-Za-z]{12}`` for any text."""
    pattern = re.compile(r"[0-9A-Za-z]{%d}" % tokens.KEY_ID_LEN)
    rng = random.Random(11)
    pool = ALPHABET + "_-+/=. \t\n\x00\u00e9\u0660\u00b2\uff10\u2167\U0001d7ce"
    values = [c * tokens.KEY_ID_LEN for c in map(chr, range(0x3000))]
    values += ["".join(rng.choice(pool) for _ in range(rng.choice([11, 12, 12, 12, 13]))) for _ in range(20_000)]
    for value in values:
        assert tokens.is_key_id(value) is (pattern.fullmatch(value) is not None), repr(value)


def test_the_checksum_check_agrees_with_the_checksum_written_out():
    """parse reads the six checksum symbols as a number; it must accept exactly what checksum() writes."""
    rng = random.Random(7)
    for n in range(3000):
        token = tokens.mint(rng.choice(list(KeyKind))).token
        if n % 2:  # change one symbol of the checksum or of the body
            i = rng.choice([rng.randrange(8, tokens.TOKEN_LEN), tokens.TOKEN_LEN - 1 - rng.randrange(6)])
            if token[i] != "_":
                token = token[:i] + rng.choice(ALPHABET.replace(token[i], "")) + token[i + 1 :]
        written_out = tokens.checksum(token[: -tokens.CHECKSUM_LEN]) == token[-tokens.CHECKSUM_LEN :]
        assert tokens._checksum_matches(token) is written_out
        assert (tokens.problem(token) is None) is written_out
    assert tokens._checksum_matches(
        "woes_sk_" + "0" * 12 + "_" + "0" * 43 + tokens.checksum("woes_sk_" + "0" * 12 + "_" + "0" * 43)
    )
