"""How and when each user last signed in to the dashboard (API key or OpenID Connect), and
the ID token of an OpenID Connect session (the provider's sign-out wants it back as a hint).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Types are spelled out rather than imported from ``db`` so this revision stays as it is when
the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_sign_in_method", sa.String(16), nullable=True))
        batch.add_column(sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.add_column(sa.Column("id_token_hint", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.drop_column("id_token_hint")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_sign_in_at")
        batch.drop_column("last_sign_in_method")
