"""Housekeeping: expire old exports, clear what cancelled or failed ones left, and mail.

One pass (`Sweeper.run`) does, for recent requests:

- a ready (or completed) export past `expires_at`: its objects are deleted, its credentials
  revoked, and it becomes `expired`;
- a cancelled or failed export, or one whose links were revoked: whatever it had stored is
  deleted (once);
- a ready export within `expiring_notice_seconds` of expiry: the "expiring" mail;
- any notification that did not go out yet: another try, with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Bucket, PortabilityRequest
from db.outbox import request_event
from portability.exports.links import bucket_name, request_prefix
from portability.exports.notify import Notifier, pending, want
from portability.exports.service import lock_request, revoke_request_credentials
from portability.exports.settings import ExportSettings
from portability.requests import CANCELLED, COMPLETED, EXPIRED, FAILED, READY, iso, update_meta
from storage.base import Storage

log = logging.getLogger("ferry.exports.sweeper")

_RECENT = timedelta(days=8)
_RETRY_BASE = 30.0  # seconds; doubled per failed attempt


async def purge_objects(storage: Storage, bucket: Bucket, request_id: uuid.UUID) -> int:
    """Delete every stored object of one request; returns how many."""
    prefix = bucket.backend_prefix + request_prefix(request_id)
    deleted = 0
    while True:
        page = await storage.list(bucket.backend_bucket, prefix=prefix, max_keys=1000)
        for info in page.objects:
            await storage.delete(bucket.backend_bucket, info.key)
            deleted += 1
        if not page.objects or not page.is_truncated:
            return deleted


class Sweeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        settings: ExportSettings,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.settings = settings
        self.notifier = notifier
        self.clock = clock

    async def run(self) -> int:
        """One pass; returns how many things it did."""
        now = self.clock()
        async with self.sessions() as session:
            rows = await session.scalars(
                select(PortabilityRequest).where(
                    PortabilityRequest.status != EXPIRED,
                    or_(
                        and_(
                            PortabilityRequest.request_type == "export",
                            PortabilityRequest.status.in_((READY, COMPLETED)),
                        ),
                        PortabilityRequest.completed_at >= now - _RECENT,
                    ),
                )
            )
            requests = list(rows.all())
        done = 0
        for request in requests:
            try:
                done += await self._one(request, now)
            except Exception:
                log.exception("sweeping request %s failed", request.id)
        return done

    async def _one(self, request: PortabilityRequest, now: datetime) -> int:
        meta = request.meta or {}
        is_export = request.request_type == "export"
        if is_export and request.status in (READY, COMPLETED):
            if request.expires_at is not None and request.expires_at <= now:
                await self._expire(request, now)
                return 1
            # Revoked links: nothing can be downloaded, so no files to keep, no "expiring" mail.
            revoked = bool(meta.get("links_revoked_at"))
            if revoked and not meta.get("purged_at"):
                await self._purge(request, now)
                return 1
            notice = timedelta(seconds=self.settings.expiring_notice_seconds)
            notes = meta.get("notifications") or {}
            if (
                not revoked
                and request.status == READY
                and request.expires_at is not None
                and request.expires_at - notice <= now
                and "export_expiring" not in notes
            ):
                async with self.sessions.begin() as session:
                    locked = await lock_request(session, request.id)
                    if locked is not None:
                        want(locked, "export_expiring")
                await self._send(request, "export_expiring")
                return 1
        if is_export and request.status in (CANCELLED, FAILED) and not meta.get("purged_at"):
            await self._purge(request, now)
            return 1
        sent = 0
        for kind, note in (meta.get("notifications") or {}).items():
            if not pending(request, kind):
                continue
            last = note.get("last_attempt_at")
            wait = _RETRY_BASE * 2 ** int(note.get("attempts", 0))
            if (
                last
                and datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(seconds=wait)
                > now
            ):
                continue
            await self._send(request, kind)
            sent += 1
        return sent

    async def _send(self, request: PortabilityRequest, kind: str) -> None:
        if self.notifier is not None:
            await self.notifier.send(request.id, kind)

    async def _bucket(self, session: AsyncSession, request: PortabilityRequest) -> Bucket | None:
        return await session.scalar(
            select(Bucket).where(Bucket.name == bucket_name(request.user_id))
        )

    async def _delete_objects(self, request: PortabilityRequest) -> None:
        async with self.sessions() as session:
            bucket = await self._bucket(session, request)
        if bucket is not None:
            await purge_objects(self.storage, bucket, request.id)

    async def _purge(self, request: PortabilityRequest, now: datetime) -> None:
        await self._delete_objects(request)
        async with self.sessions.begin() as session:
            locked = await lock_request(session, request.id)
            if locked is not None:
                update_meta(locked, purged_at=iso(now))

    async def _expire(self, request: PortabilityRequest, now: datetime) -> None:
        await self._delete_objects(request)
        async with self.sessions.begin() as session:
            locked = await lock_request(session, request.id)
            if locked is None or locked.status not in (READY, COMPLETED):
                return
            with contextlib.suppress(Exception):
                await revoke_request_credentials(session, locked, now=now)
            locked.status = EXPIRED
            update_meta(locked, purged_at=iso(now))
            request_event(session, "request.expired", locked)
        log.info("export %s expired; its objects are deleted", request.id)
