"""the primary key-encryption key agreed by the deployment (one row, empty until agreed)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "kek_primary",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("update_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kek_primary")),
    )
    # The row exists from the start, so the first agreement and every later change lock the same row.
    op.bulk_insert(table, [{"id": 1, "kek_id": "", "update_us": 0}])


def downgrade() -> None:
    op.drop_table("kek_primary")
