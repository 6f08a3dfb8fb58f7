"""internal permissions move off admin keys (they belong to internal credentials, woes_ik_)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:00:00.000000

An admin key made by ``bootstrap-admin --permission ...`` held internal permissions in its
``scopes``. Admin keys hold none now: this revision empties those scopes, writes one audit
event per key (``admin.permissions_removed``, the permissions it held in the detail) and one
change-feed row per key, so that running servers drop the key's cached entry. The admin key
itself keeps working for the admin RPCs. The internal service that used it gets an internal
credential from ``woes-auth bootstrap-internal`` (README, "Internal credentials").

The downgrade changes nothing: the permissions are not given back to admin keys.
"""

from __future__ import annotations

import time

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTOR = "system:migration-0004"
ACTION = "admin.permissions_removed"
_HOLDING = "kind = 'admin' AND scopes <> '[]'"


def upgrade() -> None:
    # Set-based statements, so that 'woes-auth db upgrade --sql' prints them too. What is put into
    # them is this module's constants and an integer, never input (hence the noqa of S608).
    now_us = time.time_ns() // 1000
    op.execute(
        "INSERT INTO audit_events (time_us, actor, action, outcome, key_id, workspace_id, request_id, detail) "  # noqa: S608
        f"SELECT {now_us}, '{ACTOR}', '{ACTION}', 'ok', key_id, '', '', "
        "'permissions=' || scopes || '; internal permissions belong to internal credentials "
        f"(woes-auth bootstrap-internal)' FROM keys WHERE {_HOLDING}"
    )
    op.execute(
        f"INSERT INTO key_changes (key_id, change, time_us) SELECT key_id, 'permissions', {now_us} "  # noqa: S608
        f"FROM keys WHERE {_HOLDING}"
    )
    op.execute(f"UPDATE keys SET scopes = '[]' WHERE {_HOLDING}")  # noqa: S608


def downgrade() -> None:
    pass
