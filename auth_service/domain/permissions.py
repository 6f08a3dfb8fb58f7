"""Internal permissions: the one power each internal service needs, held by an internal credential.

An internal credential (``woes_ik_...``, :attr:`auth_service.domain.tokens.KeyKind.INTERNAL`)
carries one or more of the permissions below in its stored ``scopes`` and calls
exactly the RPCs they name: it is no admin credential (admin RPCs refuse it) and no
API credential (``Authenticate`` refuses it). Admin credentials carry no
permission at all, so a plain admin credential reveals nothing and issues no
conversation secret.

Internal credentials are made only by ``woes-auth bootstrap-internal``, a command
that needs direct access to the database and the pepper, and rotated only by
``woes-auth service-keys rotate`` with the same access. No RPC creates or rotates
one, so no caller of the API can give itself a power it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable

REVEAL_TEST_CREDENTIALS = "lab:test_credentials:reveal"
ISSUE_CONVERSATION_SECRETS = "widget:conversation_secrets:issue"

RPC_OF: dict[str, str] = {
    REVEAL_TEST_CREDENTIALS: "RevealTestCredential",
    ISSUE_CONVERSATION_SECRETS: "IssueConversationSecret",
}
"""Each internal permission and the one RPC it lets its holder call."""

INTERNAL_PERMISSIONS: frozenset[str] = frozenset(RPC_OF)


def unknown(permissions: Iterable[str]) -> list[str]:
    """The entries of ``permissions`` that are not internal permissions, in order."""
    return [p for p in permissions if p not in INTERNAL_PERMISSIONS]
