"""An export's lease in columns: the export_jobs table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Exports kept their lease inside `metadata.lease` as {"worker", "until" (ISO text)}; now it
sits in `export_jobs.lease_owner` and `lease_expires_at`, columns like the transfer jobs' and
items', so one claim statement and one heartbeat (db/leases.py) serve both workers. A
running export keeps its lease: the holder and the time are copied into its job row, and
`metadata.lease` is dropped from every row. Downgrade writes them back into `metadata.lease`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


_requests = sa.table(
    "portability_requests",
    sa.column("id", sa.Uuid()),
    sa.column("request_type", sa.String()),
    sa.column("status", sa.String()),
    sa.column("metadata", _json()),
)
_jobs = sa.table(
    "export_jobs",
    sa.column("request_id", sa.Uuid()),
    sa.column("lease_owner", sa.String()),
    sa.column("lease_expires_at", sa.DateTime(timezone=True)),
)


def _stamp(value: datetime, dialect: str) -> datetime:
    # What db.types.UTCDateTime writes: naive UTC text on SQLite, aware on PostgreSQL.
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None) if dialect == "sqlite" else value


def moved_lease(meta: Any) -> tuple[str | None, datetime | None]:
    """The holder and end of a lease kept in `metadata.lease`, or (None, None)."""
    lease = meta.get("lease") if isinstance(meta, dict) else None
    if not isinstance(lease, dict) or not lease.get("worker") or not lease.get("until"):
        return None, None
    try:
        until = datetime.fromisoformat(str(lease["until"]).replace("Z", "+00:00"))
    except ValueError:
        return None, None  # unreadable: the export is claimed again at once
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return str(lease["worker"]), until


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["portability_requests.id"],
            name=op.f("fk_export_jobs_request_id_portability_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_export_jobs")),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_requests.c.id, _requests.c.status, _requests.c.metadata).where(
            _requests.c.request_type == "export",
            sa.cast(_requests.c.metadata, sa.Text).like('%"lease"%'),
        )
    ).all()
    for row_id, status, meta in rows:
        if not isinstance(meta, dict) or "lease" not in meta:
            continue
        bind.execute(
            _requests.update()
            .where(_requests.c.id == row_id)
            .values(metadata={k: v for k, v in meta.items() if k != "lease"})
        )
        owner, until = moved_lease(meta) if status == "processing" else (None, None)
        if owner is not None and until is not None:
            bind.execute(
                _jobs.insert().values(
                    request_id=row_id,
                    lease_owner=owner,
                    lease_expires_at=_stamp(until, bind.dialect.name),
                )
            )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            _requests.c.id, _requests.c.metadata, _jobs.c.lease_owner, _jobs.c.lease_expires_at
        )
        .join(_jobs, _jobs.c.request_id == _requests.c.id)
        .where(_requests.c.status == "processing", _jobs.c.lease_owner.is_not(None))
    ).all()
    for row_id, meta, owner, until in rows:
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        lease = {"worker": owner, "until": until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None}
        bind.execute(
            _requests.update()
            .where(_requests.c.id == row_id)
            .values(metadata={**(meta or {}), "lease": lease})
        )
    op.drop_table("export_jobs")
