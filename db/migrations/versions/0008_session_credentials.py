"""Session credentials minted through STS: kind 'session' and the parent that minted them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("parent_access_key_id", sa.String(20), nullable=True))
        batch.create_foreign_key(
            op.f("fk_credentials_parent_id_credentials"),
            "credentials",
            ["parent_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_credentials_parent_id"), ["parent_id"])
        batch.drop_constraint(op.f("ck_credentials_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_credentials_kind"), "kind IN ('user', 'export', 'session')"
        )


def downgrade() -> None:
    op.execute("DELETE FROM credentials WHERE kind = 'session'")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_constraint(op.f("ck_credentials_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_credentials_kind"), "kind IN ('user', 'export')")
        batch.drop_index(op.f("ix_credentials_parent_id"))
        batch.drop_constraint(op.f("fk_credentials_parent_id_credentials"), type_="foreignkey")
        batch.drop_column("parent_access_key_id")
        batch.drop_column("parent_id")
