"""No working download link at rest: scrub the presigned URLs stored with export requests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Export links are signed when their owner asks (portability/exports/downloads.py). Rows
written before kept presigned URLs in `export_url`, `metadata.parts[].url` and
`metadata.manifest_url`, each a working download for up to seven days to anyone holding a copy
of the database. What a link is made of was stored beside them (`parts[].key`,
`manifest_key`, `link_credential`), so this revision drops the URLs and leaves `export_url`
as the unsigned gateway URL the worker now writes: a reference the gateway refuses.

Data only: the schema does not change. Downgrade leaves the rows as they are; a signature
cannot be put back, and older code then shows no download link for these exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


_requests = sa.table(
    "portability_requests",
    sa.column("id", sa.Uuid()),
    sa.column("export_url", sa.Text()),
    sa.column("metadata", _json()),
)


def scrubbed(meta: Any) -> Any:
    """`metadata` without any stored link (what the worker writes today)."""
    if not isinstance(meta, dict):
        return meta
    clean = {k: v for k, v in meta.items() if k != "manifest_url"}
    parts = meta.get("parts")
    if isinstance(parts, list):
        clean["parts"] = [
            {k: v for k, v in p.items() if k != "url"} if isinstance(p, dict) else p for p in parts
        ]
    return clean


def upgrade() -> None:
    bind = op.get_bind()
    # Every export that had links had its first one in export_url.
    ids = list(
        bind.execute(
            sa.select(_requests.c.id).where(_requests.c.export_url.like("%X-Amz-Signature%"))
        ).scalars()
    )
    for start in range(0, len(ids), _BATCH):
        rows = bind.execute(
            sa.select(_requests.c.id, _requests.c.export_url, _requests.c.metadata).where(
                _requests.c.id.in_(ids[start : start + _BATCH])
            )
        ).all()
        for row_id, url, meta in rows:
            bind.execute(
                _requests.update()
                .where(_requests.c.id == row_id)
                .values(export_url=str(url).split("?", 1)[0], metadata=scrubbed(meta))
            )


def downgrade() -> None:
    pass  # nothing to undo: see the module's docstring
