"""Portability requests: the seed table's rows, their states and their JSON resource.

States (stored in `status`):

    pending ─► processing ─► ready ─► completed      an export: ready = downloadable,
        │           │                                completed = fully fetched or pulled
        │           ├──────► completed                a transfer: every object copied
        │           └──────► failed                   with `metadata.error`
        └───────────┴──────► cancelled                by the user (open uploads aborted)
                    ready ─► expired                  the sweeper deleted the export objects

`metadata` (the `meta` attribute) holds:

    progress     {bytes_done, bytes_total, objects_done, objects_total, bytes_per_second,
                  eta_seconds}
    parts        [{name, key, size, sha256}] an export's files; answers add `url`
    manifest_key the manifest's object key; answers add `manifest_url`
    link_credential  access key id of the internal credential behind the links
    links_revoked_at when the owner revoked the links (revoke-links)
    report       the final report of a transfer or export
    error        a one-line reason when failed
    due_at       Article 12(3): one month after the request
    options      what was asked for (archive_format, include, source bucket/prefix, …)
    credentials  for format "s3": the credential's description (never its secret)

No working download link is stored: `export_url` holds the first file's unsigned gateway
URL (a reference the gateway refuses), and links are signed when the owner reads the
request (`portability.exports.downloads`).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PortabilityRequest, User
from sts.sealing import seal_text, unseal_text

PENDING = "pending"
PROCESSING = "processing"
READY = "ready"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"

ACTIVE = (PENDING, PROCESSING)
FINAL = (COMPLETED, FAILED, CANCELLED, EXPIRED)
ARTICLE_12_DAYS = 30  # "within one month of receipt"


def empty_progress() -> dict[str, Any]:
    return {
        "bytes_done": 0,
        "bytes_total": 0,
        "objects_done": 0,
        "objects_total": 0,
        "bytes_per_second": 0,
        "eta_seconds": None,
    }


def new_request(
    user_id: uuid.UUID,
    *,
    request_type: str,
    format: str | None,
    options: dict[str, Any],
    now: datetime,
    transfer_destination: str | None = None,
) -> PortabilityRequest:
    return PortabilityRequest(
        id=uuid.uuid4(),
        user_id=user_id,
        request_type=request_type,
        status=PENDING,
        format=format,
        transfer_destination=transfer_destination,
        created_at=now,
        meta={
            "progress": empty_progress(),
            "options": options,
            "due_at": iso(now + timedelta(days=ARTICLE_12_DAYS)),
        },
    )


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def seal_fields(
    master_key: bytes, purpose: str, request_id: uuid.UUID, secrets: Mapping[str, str | None]
) -> dict[str, str | None]:
    """`<name>_sealed` for each secret: sealed to this request and name, in base64 (or None).

    The other end of a request's stored endpoint (an import's source, a transfer's
    destination): a database dump shows none of its secrets.
    """
    return {
        f"{name}_sealed": (
            base64.b64encode(seal_text(master_key, purpose, f"{request_id}/{name}", value)).decode()
            if value
            else None
        )
        for name, value in secrets.items()
    }


def open_fields(
    master_key: bytes,
    purpose: str,
    request_id: uuid.UUID,
    stored: Mapping[str, Any],
    names: Iterable[str],
) -> dict[str, str | None]:
    """The secrets that :func:`seal_fields` stored, in the clear (None where there was none)."""
    return {
        name: (
            unseal_text(master_key, purpose, f"{request_id}/{name}", base64.b64decode(value))
            if (value := stored.get(f"{name}_sealed"))
            else None
        )
        for name in names
    }


def update_meta(request: PortabilityRequest, **changes: Any) -> None:
    """Replace top-level metadata keys (a new dict, so the ORM sees the change)."""
    request.meta = {**(request.meta or {}), **changes}


def to_json(
    request: PortabilityRequest, *, destination: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The request resource. `destination` is the public view (no secrets) of a transfer's."""
    return {
        "id": str(request.id),
        "user_id": str(request.user_id),
        "request_type": request.request_type,
        "status": request.status,
        "format": request.format,
        "export_url": request.export_url,
        "expires_at": iso(request.expires_at),
        "transfer_destination": destination,
        "created_at": iso(request.created_at),
        "completed_at": iso(request.completed_at),
        "metadata": request.meta or {},
    }


async def get_for_user(
    session: AsyncSession, request_id: str, user_id: uuid.UUID | None
) -> PortabilityRequest | None:
    """The request, if it exists and (unless user_id is None) belongs to the user."""
    try:
        rid = uuid.UUID(request_id)
    except ValueError:
        return None
    request = await session.get(PortabilityRequest, rid)
    if request is None or (user_id is not None and request.user_id != user_id):
        return None
    return request


async def list_for_user(session: AsyncSession, user_id: uuid.UUID) -> list[PortabilityRequest]:
    rows = await session.scalars(
        select(PortabilityRequest)
        .where(PortabilityRequest.user_id == user_id)
        .order_by(PortabilityRequest.created_at.desc())
    )
    return list(rows.all())


@dataclass(frozen=True)
class Overdue:
    request: PortabilityRequest
    due_at: datetime
    owner: User | None


async def overdue_requests(session: AsyncSession, now: datetime) -> list[Overdue]:
    """Article 12(3): requests still unanswered (or failed) after their due date, oldest
    first."""
    rows = await session.scalars(
        select(PortabilityRequest)
        .where(PortabilityRequest.status.in_((*ACTIVE, FAILED)))
        .order_by(PortabilityRequest.created_at)
    )
    late = []
    for row in rows.all():
        due = (row.meta or {}).get("due_at")
        if not due:
            continue
        due_at = datetime.fromisoformat(str(due).replace("Z", "+00:00"))
        due_at = due_at if due_at.tzinfo else due_at.replace(tzinfo=UTC)
        if due_at <= now:
            late.append(Overdue(row, due_at, await session.get(User, row.user_id)))
    return late
