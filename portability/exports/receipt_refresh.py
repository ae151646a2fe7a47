"""Keeping ready exports' receipts current, and completing those fetched in full.

The export worker runs :meth:`ReceiptRefresher.refresh_all` every `receipt_interval`
seconds; the receipt itself is built in receipt.py from the gateway's audit trail.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Bucket, Credential, PortabilityRequest
from db.outbox import request_event
from portability.exports.links import bucket_name
from portability.exports.manifest import read_entries
from portability.exports.receipt import build_receipt
from portability.exports.service import lock_request
from portability.exports.state import ExportState, StoredFile
from portability.requests import COMPLETED, READY
from storage.base import Storage

log = logging.getLogger("ferry.exports.receipts")

PR = PortabilityRequest

Wanted = AsyncIterator[tuple[str, str, int]]  # bucket name, key, size


class ReceiptRefresher:
    """Updates `metadata.receipt` of ready exports from what their links served."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._clock = clock

    async def refresh_all(self) -> int:
        """Refresh every ready export's receipt; how many there were."""
        async with self._sessions() as session:
            ready = list(
                (
                    await session.scalars(
                        select(PR.id).where(PR.request_type == "export", PR.status == READY)
                    )
                ).all()
            )
        for request_id in ready:
            try:
                await self.refresh(request_id)
            except Exception:
                log.exception("receipt of export %s failed", request_id)
        return len(ready)

    async def refresh(self, request_id: uuid.UUID) -> dict[str, Any] | None:
        """The export's receipt, stored; it becomes `completed` once fetched in full."""
        now = self._clock()
        async with self._sessions() as session:
            request = await session.get(PR, request_id)
            if request is None or request.status != READY:
                return None
            state = ExportState.load(request.meta)
            # Revoked links serve nothing more, and their files are gone: the receipt stands.
            if state.links_revoked_at is not None:
                return None
            target = await session.scalar(
                select(Bucket).where(Bucket.name == bucket_name(request.user_id))
            )
            if request.format == "s3":
                keys = list(state.pull_credentials)
                wanted = self._manifest_objects(target, state.manifest_key)
            else:
                keys = [state.link_credential] if state.link_credential else []
                wanted = _parts(target, state.parts)
            ids = list(
                (
                    await session.scalars(
                        select(Credential.id).where(Credential.access_key_id.in_(keys))
                    )
                ).all()
            )
            receipt = await build_receipt(session, ids, wanted, now=now)
        async with self._sessions.begin() as session:
            locked = await lock_request(session, request_id)
            if locked is None or locked.status != READY:
                return receipt
            state = ExportState.load(locked.meta)
            state.receipt = receipt
            state.store(locked)
            if receipt["complete"]:
                locked.status = COMPLETED
                request_event(session, "request.completed", locked)
        return receipt

    async def _manifest_objects(self, target: Bucket | None, key: str | None) -> Wanted:
        if target is None or not key:
            return
        async for entry in read_entries(
            self._storage, target.backend_bucket, target.backend_prefix + key
        ):
            if not entry.get("error"):
                yield entry["bucket"], entry["key"], int(entry["size"])


async def _parts(target: Bucket | None, parts: list[StoredFile]) -> Wanted:
    if target is None:
        return
    for part in parts:
        yield target.name, part.key, part.size
