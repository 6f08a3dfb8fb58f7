"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30 01:33:37.115866
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_key", ["key_id", "id"], unique=False)
        batch_op.create_index("ix_audit_workspace", ["workspace_id", "id"], unique=False)

    op.create_table(
        "key_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_key_changes")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("allowed_origins", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("pepper_id", sa.String(length=32), nullable=False),
        sa.Column("hint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("create_us", sa.BigInteger(), nullable=False),
        sa.Column("expire_us", sa.BigInteger(), nullable=True),
        sa.Column("revoke_us", sa.BigInteger(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=200), nullable=False),
        sa.Column("rotated_to", sa.String(length=32), nullable=False),
        sa.Column("rotated_from", sa.String(length=32), nullable=False),
        sa.Column("grace_expire_us", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("last_used_us", sa.BigInteger(), nullable=True),
        sa.Column("use_count", sa.BigInteger(), nullable=False),
        sa.Column("last_caller", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_keys")),
        sa.UniqueConstraint("request_id", name=op.f("uq_keys_request_id")),
    )
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.create_index("ix_keys_create", ["create_us", "key_id"], unique=False)
        batch_op.create_index("ix_keys_workspace_create", ["workspace_id", "create_us", "key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.drop_index("ix_keys_workspace_create")
        batch_op.drop_index("ix_keys_create")

    op.drop_table("keys")
    op.drop_table("key_changes")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_workspace")
        batch_op.drop_index("ix_audit_key")

    op.drop_table("audit_events")
