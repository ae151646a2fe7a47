"""What a copy found already at the target key: transfer_items.conflict.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("transfer_items") as batch:
        batch.add_column(sa.Column("conflict", sa.String(16), nullable=True))
        batch.create_check_constraint(
            op.f("ck_transfer_items_conflict"), "conflict IN ('replaced', 'kept')"
        )


def downgrade() -> None:
    with op.batch_alter_table("transfer_items") as batch:
        batch.drop_constraint(op.f("ck_transfer_items_conflict"), type_="check")
        batch.drop_column("conflict")
