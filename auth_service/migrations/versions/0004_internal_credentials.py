"""internal permissions move off admin keys (they belong to internal credentials, woes_ik_)

Revision ID: 0004
Revises: 0002
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

import json
import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

ACTOR = "system:migration-0004"
ACTION = "admin.permissions_removed"

_keys = sa.table("keys", sa.column("key_id"), sa.column("kind"), sa.column("scopes"))
_changes = sa.table("key_changes", sa.column("key_id"), sa.column("change"), sa.column("time_us"))
_audit = sa.table(
    "audit_events",
    sa.column("time_us"),
    sa.column("actor"),
    sa.column("action"),
    sa.column("outcome"),
    sa.column("key_id"),
    sa.column("workspace_id"),
    sa.column("request_id"),
    sa.column("detail"),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_keys.c.key_id, _keys.c.scopes).where(_keys.c.kind == "admin", _keys.c.scopes != "[]")
    ).all()
    now_us = time.time_ns() // 1000
    for key_id, scopes in rows:
        held = " ".join(json.loads(scopes))
        conn.execute(sa.update(_keys).where(_keys.c.key_id == key_id).values(scopes="[]"))
        conn.execute(sa.insert(_changes).values(key_id=key_id, change="permissions", time_us=now_us))
        conn.execute(
            sa.insert(_audit).values(
                time_us=now_us,
                actor=ACTOR,
                action=ACTION,
                outcome="ok",
                key_id=key_id,
                workspace_id="",
                request_id="",
                detail=f"permissions={held}; internal permissions belong to internal credentials "
                "(woes-auth bootstrap-internal)",
            )
        )


def downgrade() -> None:
    pass
