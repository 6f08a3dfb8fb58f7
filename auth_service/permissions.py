"""Internal permissions: extra powers an admin credential may carry.

An admin credential calls the admin RPCs. A few operations need more than
that: revealing a stored API test credential hands out a customer's secret, so
it needs the internal permission :data:`REVEAL_TEST_CREDENTIALS` on top. The
permissions of an admin key are stored in its ``scopes`` (admin keys have no
workspace scopes) and are granted only when the key is created by
``woes-auth bootstrap-admin --permission ...``, a command that needs direct
access to the database and the pepper. No RPC grants them, so a stolen plain
admin credential cannot widen itself.
"""

from __future__ import annotations

from collections.abc import Iterable

REVEAL_TEST_CREDENTIALS = "lab:test_credentials:reveal"

INTERNAL_PERMISSIONS: frozenset[str] = frozenset({REVEAL_TEST_CREDENTIALS})


def unknown(permissions: Iterable[str]) -> list[str]:
    """The entries of ``permissions`` that are not internal permissions, in order."""
    return [p for p in permissions if p not in INTERNAL_PERMISSIONS]
