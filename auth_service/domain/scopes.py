"""The scope registry: the one place that names resource categories.

A scope is ``<category>:read`` or ``<category>:write``; ``write`` implies
``read``. Category names are not final, so they live here alone: change
:data:`CATEGORIES` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

CATEGORIES: tuple[str, ...] = (
    "workspace_settings",
    "conversations",
    "messages",
    "customers",
    "api_context_sources",
    "agent_lab",
    "channels",
    "webhooks",
)

ACCESS_LEVELS: tuple[str, ...] = ("read", "write")

ALL_SCOPES: frozenset[str] = frozenset(f"{c}:{a}" for c in CATEGORIES for a in ACCESS_LEVELS)

MAX_SCOPES_PER_KEY = 32


def is_known(scope: str) -> bool:
    return scope in ALL_SCOPES


def unknown(scopes: Iterable[str]) -> list[str]:
    """The scopes of ``scopes`` that are not in the registry, in order."""
    return [s for s in scopes if s not in ALL_SCOPES]


def normalize(scopes: Iterable[str]) -> tuple[str, ...]:
    """Known scopes, deduplicated and sorted (callers validate first)."""
    return tuple(sorted(set(scopes)))


def effective(granted: Iterable[str]) -> frozenset[str]:
    """Every scope a grant satisfies: a ``write`` grant also satisfies ``read``."""
    out: set[str] = set()
    for scope in granted:
        out.add(scope)
        category, _, access = scope.partition(":")
        if access == "write":
            out.add(f"{category}:read")
    return frozenset(out)


def missing(required: Iterable[str], effective_granted: frozenset[str]) -> list[str]:
    """Required scopes not satisfied by ``effective_granted``, in request order."""
    return [s for s in dict.fromkeys(required) if s not in effective_granted]
