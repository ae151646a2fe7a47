"""Transfer work tables: jobs (planning cursor, lease, counters), items, parts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Types are spelled out rather than imported from ``db`` so this revision stays as it is when
the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _id() -> sa.types.TypeEngine[int]:
    # SQLite auto-increments only a column typed exactly INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def _counter(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))


def upgrade() -> None:
    op.create_table(
        "transfer_jobs",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="planning"),
        sa.Column("plan_cursor", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        _ts("lease_expires_at"),
        sa.Column("checksum", sa.String(16), nullable=True),
        sa.Column("target_empty", sa.Boolean(), nullable=False, server_default=sa.false()),
        _counter("objects_total"),
        _counter("bytes_total"),
        _counter("objects_copied"),
        _counter("bytes_copied"),
        _counter("objects_skipped"),
        _counter("bytes_skipped"),
        _counter("objects_failed"),
        _counter("bytes_done"),
        _counter("retries"),
        _ts("started_at", nullable=False, now=True),
        _ts("planned_at"),
        _ts("finished_at"),
        sa.CheckConstraint(
            "state IN ('planning', 'copying', 'finished')", name=op.f("ck_transfer_jobs_state")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["portability_requests.id"],
            name=op.f("fk_transfer_jobs_request_id_portability_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_transfer_jobs")),
    )

    op.create_table(
        "transfer_items",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("target_key", sa.Text(), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("attributes", _json(), nullable=True),
        sa.Column("upload_id", sa.Text(), nullable=True),
        sa.Column("part_size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(16), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        _ts("lease_expires_at"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("verified", sa.String(64), nullable=True),
        sa.Column("target_etag", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("finished_at"),
        sa.CheckConstraint(
            "state IN ('pending', 'copying', 'done', 'skipped', 'failed')",
            name=op.f("ck_transfer_items_state"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["portability_requests.id"],
            name=op.f("fk_transfer_items_request_id_portability_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_items")),
        sa.UniqueConstraint("request_id", "key", name=op.f("uq_transfer_items_request_id_key")),
    )
    op.create_index(
        op.f("ix_transfer_items_request_id_state"), "transfer_items", ["request_id", "state"]
    )
    op.create_index(
        op.f("ix_transfer_items_target_target_key"), "transfer_items", ["target", "target_key"]
    )

    op.create_table(
        "transfer_parts",
        sa.Column("item_id", _id(), nullable=False),
        sa.Column("part_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("checksum", sa.String(128), nullable=True),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["transfer_items.id"],
            name=op.f("fk_transfer_parts_item_id_transfer_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "part_number", name=op.f("pk_transfer_parts")),
    )


def downgrade() -> None:
    for table in ("transfer_parts", "transfer_items", "transfer_jobs"):
        op.drop_table(table)
