"""conversation secrets, test credentials, exposures, workspace settings, KEK derivations, audit indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 01:51:11.305074
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_revocations",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("revoke_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "conversation_id", name=op.f("pk_conversation_revocations")),
    )
    op.create_table(
        "conversation_signing_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("pepper_id", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("create_us", sa.BigInteger(), nullable=False),
        sa.Column("retire_us", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_conversation_signing_keys")),
    )
    with op.batch_alter_table("conversation_signing_keys", schema=None) as batch_op:
        batch_op.create_index("ix_conv_keys_workspace", ["workspace_id", "create_us"], unique=False)

    op.create_table(
        "kek_derivations",
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("memory_kib", sa.Integer(), nullable=False),
        sa.Column("time_cost", sa.Integer(), nullable=False),
        sa.Column("parallelism", sa.Integer(), nullable=False),
        sa.Column("create_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kek_id", name=op.f("pk_kek_derivations")),
    )
    op.create_table(
        "key_exposures",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("last_us", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.String(length=64), nullable=False),
        sa.Column("auto_revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_key_exposures")),
    )
    op.create_table(
        "test_credentials",
        sa.Column("credential_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target_base_url", sa.Text(), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("create_us", sa.BigInteger(), nullable=False),
        sa.Column("update_us", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("reveal_count", sa.BigInteger(), nullable=False),
        sa.Column("last_reveal_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_test_credentials")),
        sa.UniqueConstraint("workspace_id", "name", name="uq_test_credentials_workspace_name"),
    )
    with op.batch_alter_table("test_credentials", schema=None) as batch_op:
        batch_op.create_index("ix_test_credentials_kek", ["kek_id"], unique=False)

    op.create_table(
        "workspace_settings",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("auto_revoke_exposed", sa.Boolean(), nullable=False),
        sa.Column("update_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_workspace_settings")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_action", ["action", "id"], unique=False)
        batch_op.create_index("ix_audit_time", ["time_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_time")
        batch_op.drop_index("ix_audit_action")

    op.drop_table("workspace_settings")
    with op.batch_alter_table("test_credentials", schema=None) as batch_op:
        batch_op.drop_index("ix_test_credentials_kek")

    op.drop_table("test_credentials")
    op.drop_table("key_exposures")
    op.drop_table("kek_derivations")
    with op.batch_alter_table("conversation_signing_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_conv_keys_workspace")

    op.drop_table("conversation_signing_keys")
    op.drop_table("conversation_revocations")
