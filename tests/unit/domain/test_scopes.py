"""The scope registry: categories x read/write, write implies read, unknown scopes, normalisation."""

from __future__ import annotations

import pytest

from auth_service.domain import scopes

DESIGN_CATEGORIES = {
    "workspace_settings",
    "conversations",
    "messages",
    "customers",
    "api_context_sources",
    "agent_lab",
    "channels",
    "webhooks",
}


def test_registry_is_every_category_read_and_write():
    assert set(scopes.CATEGORIES) == DESIGN_CATEGORIES
    assert scopes.ALL_SCOPES == {f"{c}:{a}" for c in DESIGN_CATEGORIES for a in ("read", "write")}
    assert len(scopes.ALL_SCOPES) == 16


@pytest.mark.parametrize("scope", sorted(f"{c}:{a}" for c in DESIGN_CATEGORIES for a in ("read", "write")))
def test_every_registered_scope_is_known(scope):
    assert scopes.is_known(scope)
    assert scopes.unknown([scope]) == []


@pytest.mark.parametrize(
    "scope",
    [
        "",
        "conversations",
        "conversations:",
        ":read",
        "conversations:admin",
        "conversations:Read",
        "Conversations:read",
        " conversations:read",
        "conversations:read ",
        "conversations:*",
        "*",
        "billing:read",
        "conversations:read,messages:read",
        "conversations\u200b:read",
    ],
)
def test_unknown_scopes_are_not_known(scope):
    assert not scopes.is_known(scope)
    assert scopes.unknown([scope]) == [scope]


def test_unknown_keeps_request_order_and_only_unknown():
    asked = ["messages:read", "zeta:read", "conversations:write", "alpha:write", "zeta:read"]
    assert scopes.unknown(asked) == ["zeta:read", "alpha:write", "zeta:read"]


def test_write_implies_read_and_not_the_reverse():
    granted = scopes.effective(["conversations:write", "messages:read"])
    assert granted == {"conversations:write", "conversations:read", "messages:read"}
    assert "messages:write" not in granted
    assert scopes.missing(["conversations:read"], granted) == []
    assert scopes.missing(["messages:write"], granted) == ["messages:write"]


@pytest.mark.parametrize("category", sorted(DESIGN_CATEGORIES))
def test_write_implies_read_for_every_category(category):
    granted = scopes.effective([f"{category}:write"])
    assert scopes.missing([f"{category}:read", f"{category}:write"], granted) == []
    read_only = scopes.effective([f"{category}:read"])
    assert scopes.missing([f"{category}:write"], read_only) == [f"{category}:write"]


def test_write_does_not_leak_across_categories():
    granted = scopes.effective(["conversations:write"])
    others = [f"{c}:read" for c in DESIGN_CATEGORIES if c != "conversations"]
    assert scopes.missing(others, granted) == others


def test_missing_is_deduplicated_in_request_order():
    granted = scopes.effective(["messages:read"])
    assert scopes.missing(["webhooks:read", "channels:write", "webhooks:read"], granted) == [
        "webhooks:read",
        "channels:write",
    ]
    assert scopes.missing([], granted) == []


def test_effective_of_nothing_grants_nothing():
    assert scopes.effective([]) == frozenset()
    assert scopes.missing(["messages:read"], scopes.effective([])) == ["messages:read"]


def test_normalize_dedupes_and_sorts():
    assert scopes.normalize(["messages:write", "conversations:read", "messages:write"]) == (
        "conversations:read",
        "messages:write",
    )
    assert scopes.normalize([]) == ()
    assert isinstance(scopes.normalize(iter(["a:read"])), tuple)


def test_a_scope_may_not_be_asked_more_than_the_per_key_cap():
    assert scopes.MAX_SCOPES_PER_KEY >= len(scopes.ALL_SCOPES)
