"""What `ferry demo` leaves in alice's request history, so a first look is not an empty page.

One JSON export of her personal data, built by the real export worker (its download link
works), and one transfer of her photos to a backup bucket elsewhere, finished a week ago:
a record of the past, as the demo's usage and invoices are, since no second S3 service
runs beside a fresh `ferry demo`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import User
from portability.contract.transfers import Destination
from portability.credentials import GatewayAddress
from portability.exports.service import create_export, parse_export
from portability.exports.settings import ExportSettings
from portability.exports.worker import ExportWorker
from portability.requests import COMPLETED, iso, new_request
from portability.transfers import seal_destination
from storage.base import Storage

BACKUP: dict[str, Any] = {  # a demo row: no secret to seal
    "endpoint_url": "https://s3.eu-central-1.example.net",
    "region": "eu-central-1",
    "bucket": "alice-backup",
    "prefix": "from-ferry/",
    "access_key_id": "AKIADEMOBACKUP000001",
    "addressing_style": "path",
    "checksum": "auto",
    "secret_access_key": None,
    "session_token": None,
}


async def finished_export(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    master_key: bytes,
    settings: ExportSettings,
    user_id: uuid.UUID,
) -> None:
    """A JSON export of the user's personal data, built now and left `ready`."""
    async with sessions.begin() as db:
        user = await db.get(User, user_id)
        assert user is not None
        await create_export(
            db,
            master_key,
            user,
            parse_export({"request_type": "export", "format": "json"}),
            settings=settings,
            endpoint=GatewayAddress(settings.gateway_url, settings.region),
            now=datetime.now(UTC),
        )
    worker = ExportWorker(
        sessions=sessions, storage=storage, master_key=master_key, settings=settings
    )
    # The oldest waiting export is claimed: on a database shared with other pending work it
    # may be another one, and the demo's is then built by the next `ferry serve`'s worker.
    claimed = await worker.claim()
    if claimed is not None:
        await worker.process(claimed)


def finished_transfer(
    master_key: bytes, user: User, bucket: str, photos: list[int], now: datetime
) -> object:
    """A transfer of the user's photos/ (sizes in `photos`) that finished a week ago."""
    started = now - timedelta(days=7, hours=2)
    seconds = max(1.0, sum(photos) / (40 * 1024 * 1024))  # at some 40 MiB/s
    finished = started + timedelta(seconds=seconds)
    request = new_request(
        user.id,
        request_type="transfer",
        format=None,
        options={"source": {"bucket": bucket, "prefix": "photos/"}},
        now=started,
    )
    request.transfer_destination = seal_destination(
        master_key, request.id, Destination.model_construct(**BACKUP)
    )
    request.status = COMPLETED
    request.completed_at = finished
    total = sum(photos)
    request.meta = {
        **(request.meta or {}),
        "progress": {
            "bytes_done": total,
            "bytes_total": total,
            "objects_done": len(photos),
            "objects_total": len(photos),
            "bytes_per_second": round(total / seconds),
            "eta_seconds": 0,
        },
        "report": {
            "status": COMPLETED,
            "started_at": iso(started),
            "finished_at": iso(finished),
            "duration_seconds": round(seconds, 3),
            "objects": {
                "total": len(photos),
                "copied": len(photos),
                "skipped": 0,
                "failed": 0,
                "not_copied": 0,
            },
            "bytes": {"total": total, "copied": total, "skipped": 0},
            "bytes_per_second": round(total / seconds),
            "verify": "etag",
            "checksum": "auto",
            "verified": {"md5": len(photos)},
            "retries": 0,
            "failures": [],
            "failures_truncated": False,
        },
    }
    return request
